"""Copies taken while a writer was at work: refused with their own kind, or read consistently where safe.

- A hot `chroma.sqlite3-journal` (the folder copied mid-transaction, with pages of the
  unfinished write already in the file): refused, `hot_journal`, naming the journal. A journal
  that is empty or zeroed (left after a commit) holds nothing to undo: read as it is.
- Index files newer than chroma.sqlite3 (the folders copied after a flush the SQLite copy
  missed): refused, `index_ahead_of_sqlite`, in every version; 0.x's pickle says which log
  row the index holds, 1.x is caught by ids the index maps and the database never had.
- Index files older than chroma.sqlite3: 0.4 is read consistently (its watermark lives in the
  pickle and its log is never purged, so replaying the log from the index's own watermark
  gives exactly what the newer database holds); 0.5+ purge the log, and the records the old
  index lacks are refused as `vector_missing`.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate import cli
from chroma_migrate.native import CorruptDatabaseError, check_integrity
from chroma_migrate_testkit.fuzz.case import native_read
from chroma_migrate_testkit.fuzz.torn import combine, copy_mid_transaction, grown
from tests.conftest import database_copy, tree_digest

pytestmark = pytest.mark.integration


def refused(db, kind: str, file_suffix: str) -> CorruptDatabaseError:
    before = tree_digest(db)
    with pytest.raises(CorruptDatabaseError) as caught:
        check_integrity(db)
    assert caught.value.kind == kind, caught.value
    assert caught.value.file.endswith(file_suffix) and caught.value.problem.startswith(caught.value.file)
    assert tree_digest(db) == before, "the reader changed a file"
    return caught.value


def test_a_copy_with_a_hot_journal_is_refused_naming_the_journal(tmp_path, capsys):
    source = database_copy("1.5.9", tmp_path)
    untouched, records = tree_digest(source), native_read(source)[0]
    torn = copy_mid_transaction(source, tmp_path / "torn")
    assert native_read(source)[0] == records, "the writer rolled back: the source holds what it held"
    assert tree_digest(torn)["chroma.sqlite3"] != untouched["chroma.sqlite3"], "the copy holds half a write"
    error = refused(torn, "hot_journal", "chroma.sqlite3-journal")
    assert "copied while a chromadb process was writing" in error.problem and "Copy the database again" in error.fix
    assert cli.main(["inspect", "--json", str(torn)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "hot_journal" and document["file"].endswith("chroma.sqlite3-journal")


@pytest.mark.parametrize("journal", [b"", bytes(512)], ids=["empty", "zeroed-header"])
def test_a_journal_with_nothing_to_undo_is_read_as_it_is(tmp_path, journal):
    db = database_copy("0.6.3", tmp_path)
    expected = native_read(db)[0]
    (db / "chroma.sqlite3-journal").write_bytes(journal)
    before = tree_digest(db)
    assert native_read(db)[0] == expected
    assert tree_digest(db) == before


GROWN_VERSIONS = [pytest.param("0.4.24"), pytest.param("1.5.9"), pytest.param("0.5.23", marks=pytest.mark.slow),
                  pytest.param("0.6.3", marks=pytest.mark.slow), pytest.param("1.0.20", marks=pytest.mark.slow),
                  pytest.param("1.3.7", marks=pytest.mark.slow)]


@pytest.mark.parametrize("version", GROWN_VERSIONS)
def test_index_files_newer_or_older_than_the_sqlite_file(tmp_path, version):
    earlier = database_copy(version, tmp_path)
    later = grown(earlier, tmp_path / "later", version)
    assert check_integrity(later)["words"] == check_integrity(earlier)["words"] + 260

    newer = combine(earlier, later, tmp_path / "index-newer")
    error = refused(newer, "index_ahead_of_sqlite", "index_metadata.pickle")
    assert "written after this chroma.sqlite3" in error.problem

    older = combine(later, earlier, tmp_path / "index-older")
    if version == "0.4.24":  # replayed from the pickle's own watermark: exactly the later database
        before = tree_digest(older)
        assert native_read(older)[0]["digests"] == native_read(later)[0]["digests"]
        assert tree_digest(older) == before
    else:
        error = refused(older, "vector_missing", "")
        assert "older than chroma.sqlite3" in error.problem
