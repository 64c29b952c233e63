"""The proof (transplant/proof.py) refuses exactly what it guards: each check on a damaged
answer, and one on a really damaged database read back by the target version itself."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from chroma_migrate.collection_spec import target_collection_spec
from chroma_migrate.errors import TransplantFailedError
from chroma_migrate.inspection import describe_database
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.target_collections import create_target_collections
from chroma_migrate.transplant.database_writer import WrittenCollection, write_database
from chroma_migrate.transplant.id_maps import write_id_maps
from chroma_migrate.transplant.probe_record import PROBE_DOCUMENT
from chroma_migrate.transplant.proof import _readable_problems, _reopened_problems, prove_transplant

WRITTEN = WrittenCollection("words", "carried", "sound", 3, 0, {"digest": "ab", "records": 3}, ["a", "b"])
READABLE = {"count": 3, "fingerprint": {"digest": "ab", "records": 3}, "with_embedding": 3, "dimension": 16,
            "own_hits": {"a": True}, "count_after_writes": 3}
REOPENED = {"count": 3, "probe_document": PROBE_DOCUMENT, "deleted_still_there": False, "probe_found_by_query": True}


def test_a_correct_answer_passes_every_check():
    assert _readable_problems(WRITTEN, READABLE, 16) == []
    assert _reopened_problems("words", 3, REOPENED) == []


@pytest.mark.parametrize(("damage", "named"), [
    ({"count": 2}, "count() is 2"),
    ({"fingerprint": {"digest": "cd", "records": 3}}, "documents and metadata differ"),
    ({"with_embedding": 2}, "2 embeddings"),
    ({"dimension": 8}, "of dimension 8"),
    ({"count_after_writes": 4}, "after one add and one delete"),
])
def test_each_read_back_check_fails_on_what_it_guards(damage, named):
    [problem] = _readable_problems(WRITTEN, {**READABLE, **damage}, 16)
    assert named in problem


@pytest.mark.parametrize(("damage", "named"), [
    ({"count": 4}, "count() is 4"),
    ({"probe_document": "added after the transplant"}, "upserted probe"),
    ({"deleted_still_there": True}, "still returned"),
    ({"probe_found_by_query": False}, "does not return it"),
])
def test_each_reopen_check_fails_on_what_it_guards(damage, named):
    [problem] = _reopened_problems("words", 3, {**REOPENED, **damage})
    assert named in problem


@pytest.mark.integration
def test_a_metadata_row_lost_after_writing_is_refused_by_the_target_itself(copy_of, tmp_path):
    source = copy_of("1.5.9")
    target, info = resolve_version("0.6.3"), describe_database(source)
    out = tmp_path / "target"
    names = ["lines"]
    create_target_collections(target.version, out, [target_collection_spec(info.collection(n), target) for n in names],
                              info.databases)
    written, jobs = write_database(Path(source), out, names, target, 100)
    write_id_maps(target, jobs)
    with closing(sqlite3.connect(out / "chroma.sqlite3")) as conn, conn:
        conn.execute("DELETE FROM embedding_metadata WHERE rowid = (SELECT MIN(rowid) FROM embedding_metadata "
                     "WHERE key != 'chroma:document')")
    with pytest.raises(TransplantFailedError, match="documents and metadata differ"):
        prove_transplant(target.version, out, written, {"lines": info.collection("lines").dimension}, tmp_path, 100)
