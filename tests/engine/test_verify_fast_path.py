"""Verification's fast path (tables' pages, or stored rows compared inside SQLite; vectors with numpy) misses nothing.

The target is a byte copy of a database chromadb 0.6.3 wrote, so before any tampering every
id range takes the fast path; then one stored value is changed the way a faulty writer or
a damaged file would, and the comparison must count that one record as different and name
the field.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from chroma_migrate.batches import plan_collections
from chroma_migrate.native import open_database
from chroma_migrate.native.stored_compare import StoredRowsComparer
from chroma_migrate.verification.compare import compare_native_ranges
from chroma_migrate_testkit.fixtures import receipt_spec

pytestmark = pytest.mark.integration

COLLECTION = "lines"  # l2: its vectors are stored as given, so one flipped byte is one changed embedding


def _ranges(db: Path) -> list[tuple[str | None, str | None, None]]:
    plan = plan_collections(db, {COLLECTION: None}, 40)[COLLECTION]
    return [(batch.low, batch.high, None) for batch in plan.batches]


def _fast_path_takes_every_range(source: Path, target: Path) -> bool:
    with (open_database(source) as s, open_database(target) as t, StoredRowsComparer(source, target) as rows):
        assert rows.pages_alike  # a byte copy: the tables' pages prove the rows equal without a join
        left, right = s.collection(COLLECTION), t.collection(COLLECTION)
        for low, high, _ in _ranges(source):
            a, b = left.stored_range(low, high), right.stored_range(low, high)
            if a is None or b is None or a.ids != b.ids or a.vectors.tobytes() != b.vectors.tobytes():
                return False
            if not rows.same_rows(a.segment, b.segment, low, high):
                return False
    return True


def _victim(db: Path) -> tuple[str, int, str]:
    """A record with a document and an indexed vector: its id, its row id and its METADATA segment."""
    with open_database(db) as native:
        collection = native.collection(COLLECTION)
        segment = collection.facts.metadata_segment
        candidates = [i for i in collection.ids() if collection.vectors.sources.label_of(i) is not None]
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        for record_id in candidates[len(candidates) // 2:]:
            row = conn.execute("SELECT e.id FROM embeddings e JOIN embedding_metadata m ON m.id = e.id "
                               "WHERE e.segment_id = ? AND e.embedding_id = ? AND m.key = 'chroma:document'",
                               (segment, record_id)).fetchone()
            if row:
                return record_id, row[0], segment
    raise AssertionError("the fixture has no indexed record with a document")


def _flip_embedding_byte(db: Path, record_id: str) -> None:
    with open_database(db) as native:
        vectors = native.collection(COLLECTION).vectors
        position = int(vectors.files.positions_of(np.asarray([vectors.sources.label_of(record_id)], np.uint64))[0])
        offset = position * vectors.files.header.element_size + vectors.files.header.data_offset + 1
        data_path = vectors.files.data_path
    with open(data_path, "r+b") as data:
        data.seek(offset)
        byte = data.read(1)[0]
        data.seek(offset)
        data.write(bytes([byte ^ 0x01]))


def _tamper(db: Path, kind: str) -> str:
    record_id, row_id, _segment = _victim(db)
    if kind == "embedding":
        _flip_embedding_byte(db, record_id)
        return record_id
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        if kind == "metadata":  # the same number, now a float: 3 -> 3.0
            changed = conn.execute("UPDATE embedding_metadata SET float_value = int_value, int_value = NULL "
                                   "WHERE id = ? AND key = 'line_id'", (row_id,)).rowcount
        else:
            changed = conn.execute("UPDATE embedding_metadata SET string_value = string_value || '.' "
                                   "WHERE id = ? AND key = 'chroma:document'", (row_id,)).rowcount
    assert changed == 1
    return record_id


@pytest.mark.parametrize("kind", ["embedding", "metadata", "document"])
def test_fast_path_catches_and_names_one_changed_value(copy_of, tmp_path, kind):
    import shutil

    source = copy_of("0.6.3")
    target = tmp_path / "target"
    shutil.copytree(source, target)
    assert _fast_path_takes_every_range(source, target)
    untouched = compare_native_ranges(str(source), str(target), COLLECTION, "l2", _ranges(source), None, 10)
    assert untouched.comparison.records_match and untouched.comparison.to_dict()["digest_equal"]

    record_id = _tamper(target, kind)
    with StoredRowsComparer(source, target) as rows:  # a changed row changes a page: the rows are joined instead
        assert rows.pages_alike == (kind == "embedding")
        with open_database(source) as native:
            segment = native.collection(COLLECTION).facts.metadata_segment
        rows_differ = [low for low, high, _ in _ranges(source) if not rows.same_rows(segment, segment, low, high)]
        assert len(rows_differ) == (kind != "embedding")  # the join accepts every other range
    share = compare_native_ranges(str(source), str(target), COLLECTION, "l2", _ranges(source), None, 10)
    records = share.comparison.to_dict()
    assert (records["different"], records["missing"], records["extra"]) == (1, 0, 0)
    assert records["identical"] == untouched.comparison.identical - 1
    assert records["different_sample"] == [{"id": record_id, "fields": [kind]}]
    assert not records["digest_equal"]


def test_fast_path_catches_two_list_elements_swapped(copy_of, tmp_path):
    """1.5's list elements are compared by position: the same elements in another order differ."""
    import shutil

    source = copy_of("1.5.9", receipt_spec(with_lists=True, big_dim=None))
    target = tmp_path / "target"
    shutil.copytree(source, target)
    with sqlite3.connect(target / "chroma.sqlite3") as conn:
        row_id, key = conn.execute("SELECT id, key FROM embedding_metadata_array GROUP BY id, key "
                                   "HAVING count(DISTINCT string_value) > 1 LIMIT 1").fetchone()
        (first, a), (second, b) = conn.execute("SELECT rowid, string_value FROM embedding_metadata_array "
                                               "WHERE id = ? AND key = ? ORDER BY rowid LIMIT 2", (row_id, key))
        conn.execute("UPDATE embedding_metadata_array SET string_value = ? WHERE rowid = ?", (b, first))
        conn.execute("UPDATE embedding_metadata_array SET string_value = ? WHERE rowid = ?", (a, second))
        record_id, collection = conn.execute(
            "SELECT e.embedding_id, c.name FROM embeddings e JOIN segments s ON s.id = e.segment_id "
            "JOIN collections c ON c.id = s.collection WHERE e.id = ?", (row_id,)).fetchone()
    plan = plan_collections(source, {collection: None}, 40)[collection]
    ranges = [(batch.low, batch.high, None) for batch in plan.batches]
    records = compare_native_ranges(str(source), str(target), collection, "l2", ranges, None, 10).comparison
    assert (records.different, records.missing, records.extra) == (1, 0, 0)
    assert records.different_sample == [{"id": record_id, "fields": ["metadata"]}]
