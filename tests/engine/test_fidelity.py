"""The whole persistent directory moves: tenants, databases (empty ones too), collection ids,
typed collection metadata, index settings, embedding functions; or the run is refused by name.

Sources are written by the real versions (`fixtures.fidelity_spec`). After `migrate`, the
target version itself dumps OUT and the test compares it with the source version's own dump
(tests/engine/records.py) and reads tenants and databases with plain sqlite3, apart from
the engine; it then writes to and queries the migrated collections with the target version.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from chroma_migrate.runtimes import runtime_for
from chroma_migrate_testkit.fixtures import fidelity_spec
from tests.conftest import dump_records, run_cli, tree_digest
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration

# (source, target, strategy, the source holds a named embedding function, bool collection metadata)
PAIRS = [
    pytest.param("0.6.3", "1.5.9", "auto", False, True, marks=pytest.mark.slow),  # CI's budget
    pytest.param("1.0.20", "1.5.9", "rebuild", True, True, marks=pytest.mark.slow),  # CI's budget
    pytest.param("1.5.9", "1.5.9", "rebuild", True, True, marks=pytest.mark.slow),  # 18 s each, CI's budget
    ("1.5.9", "1.0.20", "transplant", True, True),  # the native writer, carrying every graph it can
    pytest.param("1.3.7", "0.6.3", "auto", False, True, marks=pytest.mark.slow),  # test_migrate downgrades it
    pytest.param("1.0.20", "0.5.23", "auto", False, True, marks=pytest.mark.slow),
    pytest.param("0.5.23", "0.4.24", "auto", False, False, marks=pytest.mark.slow),
    ("0.4.24", "1.5.9", "rebuild", False, False),
]


def databases_of(db: Path) -> set[tuple[str, str, str]]:
    """(tenant, database name, id) read straight from the file."""
    with closing(sqlite3.connect(f"file:{db / 'chroma.sqlite3'}?mode=ro", uri=True)) as conn:
        return set(conn.execute("SELECT tenant_id, name, id FROM databases"))


WRITE_AND_QUERY = """
import sys, chromadb
from chromadb.config import Settings
path, tenant, database, name = sys.argv[1:5]
client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False),
                                   tenant=tenant, database=database)
handle = client.get_collection(name, embedding_function=None)
first = handle.get(limit=1, include=["embeddings"])
vector = [float(x) for x in first["embeddings"][0]]
before = handle.count()
handle.add(ids=["written-after-migration"], embeddings=[vector], documents=["new"])
handle.delete(ids=[first["ids"][0]])
found = handle.query(query_embeddings=[vector], n_results=1)["ids"][0]
print(before, handle.count(), str(handle.id), found[0])
"""


TEXT_QUERIES = """
import json, sys, chromadb
from chromadb.config import Settings
path, tenant, database, name = sys.argv[1:5]
client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False),
                                   tenant=tenant, database=database)
handle = client.get_collection(name, embedding_function=None)
print(json.dumps({
    "contains": sorted(handle.get(where_document={"$contains": "TOTAL"}, include=[])["ids"]),
    "where": sorted(handle.get(where={"is_noise": True}, include=[])["ids"]),
}))
"""


def where_answers(version: str, db: Path, qualified: str) -> dict[str, list[str]]:
    """What the version itself answers on a copy (1.x writes to what it opens)."""
    import shutil
    import tempfile

    tenant, database, name = (qualified.split("/") if "/" in qualified
                              else ("default_tenant", "default_database", qualified))
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(db, copy)
        result = subprocess.run([str(runtime_for(version).python), "-c", TEXT_QUERIES, str(copy), tenant, database,
                                 name], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def expected_answers(dump: dict) -> dict[str, list[str]]:
    """The same two queries answered from the source's own dump: an ASCII substring every version
    finds alike, and a bool metadata filter."""
    records = dump["records"]
    return {"contains": sorted(i for i, r in records.items() if "TOTAL" in (r["document"] or "")),
            "where": sorted(i for i, r in records.items() if (r["metadata"] or {}).get("is_noise") is True)}


def write_and_query(version: str, db: Path, qualified: str) -> list[str]:
    tenant, database, name = (qualified.split("/") if "/" in qualified
                              else ("default_tenant", "default_database", qualified))
    result = subprocess.run([str(runtime_for(version).python), "-c", WRITE_AND_QUERY, str(db), tenant, database, name],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.parametrize(("source_version", "target_version", "strategy", "named_function", "bools"), PAIRS)
def test_everything_the_directory_holds_is_carried(copy_of, tmp_path, source_version, target_version, strategy,
                                                   named_function, bools):
    db = copy_of(source_version, fidelity_spec(embedding_function=named_function, bool_metadata=bools))
    before = tree_digest(db)
    out = tmp_path / "out"
    result = run_cli("migrate", str(db), str(out), "--target", target_version, "--strategy", strategy, "--json")
    if named_function and not target_version.startswith("1."):
        pytest.fail("the pairs never send a named embedding function into 0.x; see the refusal test")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verification"]["passed"], report["verification"]["problems"]
    assert tree_digest(db) == before, "the source database was modified"

    expected, got = dump_records(source_version, db), dump_records(target_version, out)
    assert_same_records(expected, got, spaces_of(expected))
    assert "tenant_two/db_two/words" in got and "dropped" not in got
    assert databases_of(out) >= databases_of(db), "a tenant or database (or its id) was not carried"
    assert ("tenant_two", "db_empty") in {(t, n) for t, n, _ in databases_of(out)}
    flag = got["words"]["metadata"].get("flag")
    assert flag is True if bools else flag is None
    if named_function:
        assert got["embedded"]["configuration"]["embedding_function"]["name"] == "huggingface"

    for qualified in ("words", "tenant_two/db_two/words", "churn"):
        assert where_answers(target_version, out, qualified) == expected_answers(expected[qualified]), qualified

    for qualified in ("words", "tenant_two/db_two/words"):
        before_count, after_count, collection_id, nearest = write_and_query(target_version, out, qualified)
        assert collection_id == expected[qualified]["id"]
        assert int(after_count) == int(before_count) and nearest in {"written-after-migration"} | set(
            got[qualified]["records"])


def test_a_bool_collection_flag_is_refused_by_a_version_that_stores_none(copy_of, tmp_path):
    db = copy_of("0.6.3", fidelity_spec())
    result = run_cli("migrate", str(db), str(tmp_path / "out"), "--target", "0.4.24", "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "collection 'words': collection metadata 'flag' is the bool True" in error["error"]
    assert "0.5 or newer" in error["fix"] and not (tmp_path / "out").exists()


def test_a_named_embedding_function_is_refused_by_0x(copy_of, tmp_path):
    db = copy_of("1.5.9", fidelity_spec(embedding_function=True))
    before = tree_digest(db)
    result = run_cli("migrate", str(db), str(tmp_path / "out"), "--target", "0.6.3", "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "collection 'embedded': its configuration names the embedding function 'huggingface'" in error["error"]
    assert "1.x" in error["fix"] and tree_digest(db) == before and not (tmp_path / "out").exists()


def test_verification_fails_on_a_changed_collection_id_or_flag_type(copy_of, tmp_path):
    """The settings check can fail: a target whose id or bool flag was changed afterwards is refused."""
    db = copy_of("1.5.9", fidelity_spec())
    out = tmp_path / "out"
    run_cli("migrate", str(db), str(out), "--target", "1.5.9", "--strategy", "rebuild", check=True)
    with closing(sqlite3.connect(out / "chroma.sqlite3")) as conn, conn:
        (words_id,) = conn.execute("SELECT id FROM collections WHERE name = 'twins'").fetchone()
        conn.execute("UPDATE collection_metadata SET bool_value = NULL, int_value = 1 WHERE key = 'flag'")
        for table, column in (("collections", "id"), ("collection_metadata", "collection_id"),
                              ("segments", "collection")):
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", ("0" * 8 + words_id[8:], words_id))
        conn.execute("UPDATE embeddings_queue SET topic = replace(topic, ?, ?)", (words_id, "0" * 8 + words_id[8:]))
    result = run_cli("verify", str(db), str(out), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert any(p.startswith("twins: collection id differs") for p in problems), problems
    assert any(p.startswith("words: collection metadata differs") and "'flag': 1" in p for p in problems), problems


def test_a_record_changed_between_export_and_load_is_caught(copy_of, tmp_path):
    """The CLI's rebuild is verified against the source read in place, not against its own export:
    an exported document changed before the load (paused there by the fault point) fails the run."""
    import os
    import time

    from chroma_migrate import exchange
    from chroma_migrate.faults import pause_files
    from tests.conftest import CLI, REPO

    db = copy_of("1.5.9", fidelity_spec())
    out = tmp_path / "out"
    spec = "rebuild_exported:pause"
    env = {**os.environ, "CHROMA_MIGRATE_FAULT": spec, "CHROMA_MIGRATE_FAULT_DIR": str(tmp_path)}
    run = subprocess.Popen([*CLI, "migrate", str(db), str(out), "--target", "1.5.9", "--strategy", "rebuild",
                            "--json"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reached, resume = pause_files(spec, tmp_path)
    deadline = time.monotonic() + 300
    while not reached.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reached.exists(), run.communicate()
    exported = next(tmp_path.glob(".out.chroma-migrate-*/export/twins/batch-00000.parquet"))
    batch = exchange.read_batch(exported)
    batch.documents[0] = "changed after the export"
    exchange.write_batch(batch, exported)
    resume.write_text("go")
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout[-2000:] + stderr[-2000:]
    problems = json.loads(stdout)["verification"]["problems"] if "verification" in stdout else stdout
    assert "twins" in str(problems) and not out.exists()
