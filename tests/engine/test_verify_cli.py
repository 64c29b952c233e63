"""verify proves equality, and names what differs when a real chromadb changed the target."""

from __future__ import annotations

import json

import pytest

from chroma_migrate.worker_client import run_worker
from tests.conftest import run_cli, tree_digest

pytestmark = pytest.mark.integration


@pytest.fixture
def migrated(copy_of, tmp_path):
    source = copy_of("1.0.20")
    out = tmp_path / "out"
    run_cli("migrate", str(source), str(out), "--target", "1.5.9", "--strategy", "rebuild", check=True)
    return source, out


@pytest.mark.parametrize("reader", ["native", "runtime"])
def test_verify_passes_on_a_migration_and_changes_neither_side(migrated, reader):
    source, out = migrated
    before = (tree_digest(source), tree_digest(out))
    result = run_cli("verify", str(source), str(out), "--json", "--read-with", reader)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["source_version"] == "1.0.20" and report["target_version"] == "1.5.9"
    assert report["reader"] == reader
    assert (tree_digest(source), tree_digest(out)) == before
    words = next(c for c in report["collections"] if c["collection"] == "words")
    assert words["records"]["missing"] == words["records"]["extra"] == words["records"]["different"] == 0
    assert words["recall"]["queries"] > 0


def test_verify_names_the_changed_and_deleted_records(migrated, tmp_path):
    source, out = migrated
    dump = tmp_path / "dump.json"
    run_worker("1.5.9", "dump", {"path": str(out), "out_file": str(dump)})
    ids = sorted(json.loads(dump.read_text())["lines"]["records"])
    changed, deleted = ids[5], ids[9]
    # Tamper with the target through chromadb 1.5.9 itself, as a buggy writer would.
    script = (
        "import chromadb, sys\n"
        "from chromadb.config import Settings\n"
        "c = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))\n"
        "col = c.get_collection('lines', embedding_function=None)\n"
        "col.update(ids=[sys.argv[2]], metadatas=[{'receipt_id': -1}])\n"
        "col.delete(ids=[sys.argv[3]])\n"
    )
    import subprocess

    from chroma_migrate.runtimes import runtime_for

    tamper = subprocess.run([str(runtime_for("1.5.9").python), "-c", script, str(out), changed, deleted],
                            capture_output=True, text=True)
    assert tamper.returncode == 0, tamper.stderr
    result = run_cli("verify", str(source), str(out), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    lines = next(c for c in report["collections"] if c["collection"] == "lines")
    assert lines["records"]["missing_sample"] == [deleted]
    assert lines["records"]["different_sample"] == [{"id": changed, "fields": ["metadata"]}]
    assert not lines["records"]["digest_equal"]
    assert any("lines" in p for p in report["problems"])
