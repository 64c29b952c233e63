"""Bad input: exit 2, a message naming the problem and the fix, PATH untouched, no OUT."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import run_cli, tree_digest

pytestmark = pytest.mark.integration


def refused(db, out, *extra, target="1.5.9"):
    before = tree_digest(db) if db.exists() else None
    result = run_cli("migrate", str(db), str(out), "--target", target, "--json", *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["error"] and document["fix"]
    if before is not None:
        assert tree_digest(db) == before, "PATH was modified"
    assert not out.exists() or not any(out.iterdir()), "OUT was written"
    assert not list(out.parent.glob(f".{out.name}.chroma-migrate-*")), "staging left behind"
    return document


def test_a_folder_that_is_not_a_database(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    document = refused(folder, tmp_path / "out")
    assert "has no chroma.sqlite3" in document["error"]
    assert "PersistentClient(path=...)" in document["fix"]


def test_a_missing_path(tmp_path):
    assert "does not exist" in refused(tmp_path / "nowhere", tmp_path / "out")["error"]


def test_a_truncated_sqlite_file(copy_of, tmp_path):
    db = copy_of("0.6.3")
    sqlite_file = db / "chroma.sqlite3"
    sqlite_file.write_bytes(sqlite_file.read_bytes()[:5000])
    document = refused(db, tmp_path / "out")
    assert str(sqlite_file) in document["error"]
    assert "truncated" in document["fix"] or "backup" in document["fix"]


def test_a_corrupted_page_in_sqlite(copy_of, tmp_path):
    db = copy_of("1.0.20")
    sqlite_file = db / "chroma.sqlite3"
    data = bytearray(sqlite_file.read_bytes())
    page = 4096
    for offset in range(3 * page + 8, 3 * page + 400):
        data[offset] = 0xA5
    sqlite_file.write_bytes(bytes(data))
    document = refused(db, tmp_path / "out")
    assert "chroma.sqlite3" in document["error"]


def test_a_missing_segment_folder(copy_of, tmp_path):
    db = copy_of("1.3.7")
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        segment = conn.execute(
            "SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection "
            "WHERE c.name = 'words' AND s.scope = 'VECTOR'").fetchone()[0]
    shutil.rmtree(db / segment)
    document = refused(db, tmp_path / "out")
    assert "'words'" in document["error"] and segment in document["error"]
    assert "copy the whole folder" in document["fix"]


def test_a_schema_newer_than_any_supported_version(copy_of, tmp_path):
    db = copy_of("1.5.9")
    with sqlite3.connect(db / "chroma.sqlite3") as conn:
        conn.execute("INSERT INTO migrations (dir, version, filename, sql, hash) "
                     "VALUES ('sysdb', 11, '00011-future.sqlite.sql', '', 'x')")
    document = refused(db, tmp_path / "out")
    assert "sysdb migration 11" in document["error"]


def test_an_unknown_target_version(copy_of, tmp_path):
    """No such release: resolving it on demand fails at the registry, naming it, before any work."""
    document = refused(copy_of("0.6.3"), tmp_path / "out", target="0.7.0")
    assert "chromadb 0.7.0's requirements cannot be resolved" in document["error"]
    assert "registry" in document["fix"]


def test_out_that_already_holds_data(copy_of, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run_cli("migrate", str(copy_of("0.6.3")), str(out), "--target", "1.5.9", "--json")
    assert result.returncode == 2
    assert "not empty" in json.loads(result.stdout)["error"]
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--workers", "0")])
def test_non_positive_sizes(copy_of, tmp_path, flag, value):
    assert flag in refused(copy_of("0.6.3"), tmp_path / "out", flag, value)["error"]


def test_unknown_collection(copy_of, tmp_path):
    document = refused(copy_of("0.6.3"), tmp_path / "out", "--collections", "words,receipts")
    assert "'receipts'" in document["error"] and "words" in document["fix"]


def test_list_metadata_into_a_version_without_lists(copy_of, tmp_path):
    db = copy_of("1.5.9", receipt_spec(with_lists=True, big_dim=None))
    document = refused(db, tmp_path / "out", target="1.3.7")
    assert "'words'" in document["error"] and "'labels'" in document["error"]
    assert "records" in document["error"]
