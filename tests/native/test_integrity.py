"""Damaged databases (written by real versions, then damaged here) are refused with the file and the problem.

Each case damages a copy, reads it, and checks the error's kind, that its message names
the file, that it carries a fix, and that the reader itself changed nothing.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

from chroma_migrate.native import (
    CorruptDatabaseError,
    NativeReadError,
    UnsafePickleError,
    UnsupportedFormatError,
    check_integrity,
    open_database,
)
from chroma_migrate.native.hnsw_files import DELETED_MARK, read_header
from tests.conftest import tree_digest

pytestmark = pytest.mark.integration


def vector_folder(db: Path, collection: str) -> Path:
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        segment = conn.execute("SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection "
                               "WHERE c.name = ? AND s.scope = 'VECTOR'", (collection,)).fetchone()[0]
    return db / segment


def refused(db: Path, kind: str, error: type[NativeReadError] = CorruptDatabaseError) -> NativeReadError:
    """check_integrity and a full read both refuse the damage, naming the file, and write nothing."""
    before = tree_digest(db)
    with pytest.raises(error) as caught:
        check_integrity(db)
    assert caught.value.kind == kind, caught.value
    assert caught.value.file in caught.value.problem and caught.value.fix
    with pytest.raises(error), open_database(db) as native:
        for collection in native.collections():
            for _ in collection.iter_batches(1000):
                pass
    assert tree_digest(db) == before
    return caught.value


def test_missing_segment_folder_of_a_flushed_index(copy_of):
    db = copy_of("1.3.7")
    shutil.rmtree(vector_folder(db, "words"))
    error = refused(db, "missing_segment_folder")
    assert "'words'" in error.problem and "copy the whole folder" in error.fix


def test_missing_pickle_of_a_flushed_index(copy_of):
    db = copy_of("0.6.3")
    (vector_folder(db, "lines") / "index_metadata.pickle").unlink()
    assert "'lines'" in refused(db, "missing_index_metadata").problem


def test_data_level0_not_a_whole_number_of_elements(copy_of):
    db = copy_of("1.5.9")
    with open(vector_folder(db, "words") / "data_level0.bin", "ab") as handle:
        handle.write(b"\0\0\0")
    assert "not a whole number" in refused(db, "data_level0_size").problem


def test_data_level0_shorter_than_the_header_says(copy_of):
    db = copy_of("1.5.9")
    folder = vector_folder(db, "lines")
    header = read_header(folder)
    os.truncate(folder / "data_level0.bin", (header.element_count - 5) * header.element_size)
    assert f"header.bin says {header.element_count}" in refused(db, "data_level0_truncated").problem


def test_cut_header_and_cut_norms(copy_of):
    db = copy_of("1.0.20")
    os.truncate(vector_folder(db, "lines") / "header.bin", 40)
    refused(db, "bad_header")
    db = copy_of("0.5.23")
    os.truncate(vector_folder(db, "words") / "length.bin", 40)
    refused(db, "length_truncated")


def _flip_deleted_mark(folder: Path, deleted: bool) -> None:
    """Set or clear hnswlib's deleted mark on the first element that has the other state."""
    header = read_header(folder)
    path = folder / "data_level0.bin"
    data = bytearray(path.read_bytes())
    for element in range(header.element_count):
        offset = element * header.element_size
        word = int.from_bytes(data[offset:offset + 4], "little")
        if bool(word & DELETED_MARK) != deleted:
            data[offset:offset + 4] = (word ^ DELETED_MARK).to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
    raise AssertionError("no element to flip")


def test_a_label_the_pickle_maps_but_the_index_lost(copy_of):
    db = copy_of("1.5.9")
    _flip_deleted_mark(vector_folder(db, "words"), deleted=True)
    assert "different flushes" in refused(db, "label_not_in_index").problem


def test_a_live_label_the_pickle_does_not_map(copy_of):
    db = copy_of("0.6.3")
    _flip_deleted_mark(vector_folder(db, "words"), deleted=False)
    refused(db, "label_not_in_pickle")


def test_an_unreadable_pickle(copy_of):
    db = copy_of("0.4.24")
    path = vector_folder(db, "words") / "index_metadata.pickle"
    path.write_bytes(path.read_bytes()[:200])
    refused(db, "pickle_unreadable")


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_another_global_is_refused_unexecuted(copy_of, tmp_path):
    db = copy_of("0.6.3")
    marker = tmp_path / "the-pickle-ran"
    (vector_folder(db, "words") / "index_metadata.pickle").write_bytes(
        pickle.dumps({"id_to_label": _RunsACommand(marker), "label_to_id": {}}))
    error = refused(db, "pickle_forbidden_global", UnsafePickleError)
    assert "system" in error.problem
    assert not marker.exists(), "the pickle's payload ran"


def test_a_corrupt_sqlite_page(copy_of):
    db = copy_of("1.0.20")
    path = db / "chroma.sqlite3"
    data = bytearray(path.read_bytes())
    data[3 * 4096 + 8:3 * 4096 + 400] = b"\xa5" * 392
    path.write_bytes(bytes(data))
    before = tree_digest(db)
    with pytest.raises(CorruptDatabaseError) as caught:
        check_integrity(db)
    assert caught.value.kind == "sqlite_corrupt" and "chroma.sqlite3" in caught.value.problem
    assert tree_digest(db) == before


def test_a_record_with_no_vector_anywhere(copy_of):
    """1.x records beyond the last flush have their vector only in the log; drop those log rows."""
    db = copy_of("1.5.9")
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        collection, vector_segment = conn.execute(
            "SELECT c.id, s.id FROM collections c JOIN segments s ON s.collection = c.id "
            "WHERE c.name = 'lines' AND s.scope = 'VECTOR'").fetchone()
        watermark = conn.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (vector_segment,)).fetchone()[0]
        conn.execute("DELETE FROM embeddings_queue WHERE seq_id > ? AND topic LIKE ?", (watermark, f"%{collection}"))
    error = refused(db, "vector_missing")
    assert "'lines'" in error.problem and "neither does the write log" in error.problem


def test_a_newer_schema_is_refused_with_what_was_found(copy_of):
    db = copy_of("1.5.9")
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        conn.execute("INSERT INTO migrations (dir, version, filename, sql, hash) "
                     "VALUES ('sysdb', 11, '00011-future.sqlite.sql', '', 'x')")
    error = refused(db, "unknown_migration", UnsupportedFormatError)
    assert "sysdb migration 11 (00011-future.sqlite.sql" in error.problem
