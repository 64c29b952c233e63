"""Releases without a shipped runtime file: resolved on demand, then used like the shipped ones.

The plan's own path: an application on 1.3.2 moves to 1.3.4 (neither ships a file), and a
database written by 1.0.0 moves to the newest release. Each side is written and read back by
the real release; resolution is safe when several processes ask for the same release at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chroma_migrate import runtime_resolution
from chroma_migrate.errors import UnsupportedVersionError
from chroma_migrate.runtime_resolution import check_release, resolve_version
from chroma_migrate.versions import RUNTIME_FILES_ENV, get_version, latest_version, shipped_version_names
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import REPO, database_copy, dump_records, run_cli, tree_digest
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=200, big_dim=None)


def migrate_cli(source, out, target: str) -> dict:
    before = tree_digest(source)
    result = run_cli("migrate", str(source), str(out), "--target", target, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_digest(source) == before, "the source database was modified"
    return json.loads(result.stdout)


def test_a_1_3_2_database_moves_to_1_3_4_both_resolved_on_demand(tmp_path):
    assert not {"1.3.2", "1.3.4"} & set(shipped_version_names())
    source = database_copy("1.3.2", tmp_path, SPEC)  # written by the real 1.3.2, resolved for it
    report = migrate_cli(source, tmp_path / "out", "1.3.4")
    assert report["target_version"] == "1.3.4" and report["verification"]["passed"]
    resolved = get_version("1.3.4")
    assert resolved.resolved_on_demand and resolved.requirements.parent != get_version("1.5.9").requirements.parent
    assert "--hash=sha256:" in resolved.requirements.read_text()
    expected = dump_records("1.3.2", source)
    assert_same_records(expected, dump_records("1.3.4", tmp_path / "out"), spaces_of(expected))


def test_a_1_0_0_database_moves_to_the_newest_release(tmp_path):
    source = database_copy("1.0.0", tmp_path, SPEC)
    report = migrate_cli(source, tmp_path / "out", latest_version().version)
    assert report["verification"]["passed"]
    expected = dump_records("1.0.0", source)
    assert_same_records(expected, dump_records(latest_version().version, tmp_path / "out"), spaces_of(expected))


def test_a_resolved_runtime_reports_the_facts_its_file_records():
    version = resolve_version("1.3.4")
    facts = run_worker("1.3.4", "facts", {"round_trip": True}).data
    assert facts["version"] == "1.3.4" and facts["signature"] == version.signature
    assert facts["max_batch_size"] == version.max_batch_size
    assert {(d, int(n)): (name, md5) for d, n, name, md5 in facts["migration_files"]} == version.migration_files


def test_concurrent_resolution_of_one_release_builds_it_once(tmp_path):
    """Three processes ask for the same new release at once: one resolves, all get the same facts."""
    files, runtimes = tmp_path / "files", tmp_path / "runtimes"
    env = dict(os.environ, **{RUNTIME_FILES_ENV: str(files), "CHROMA_MIGRATE_RUNTIMES": str(runtimes)})
    script = ("import json, logging, sys\nlogging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
              "from chroma_migrate.runtime_resolution import resolve_version\n"
              "v = resolve_version('1.3.4')\n"
              "print(json.dumps({'signature': v.signature, 'batch': v.max_batch_size, 'file': str(v.requirements)}))\n")
    children = [subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [child.communicate(timeout=600) for child in children]
    assert all(child.returncode == 0 for child in children), [err for _out, err in outputs]
    answers = [json.loads(out) for out, _err in outputs]
    assert all(answer == answers[0] for answer in answers)
    assert sum("resolving chromadb 1.3.4" in err for _out, err in outputs) == 1
    assert sorted(p.name for p in files.iterdir() if not p.name.startswith(".")) == ["chromadb-1.3.4.txt"]
    assert sorted(p.name for p in runtimes.iterdir() if not p.name.startswith(".")) == ["chromadb-1.3.4"]


@pytest.mark.parametrize(("version", "named"), [
    ("1.3", "not a chromadb release number"),
    ("latest", "not a chromadb release number"),
    ("0.4.14", "older than 0.4.15"),
    ("0.3.29", "older than 0.4.15"),
])
def test_what_cannot_be_a_served_release_is_refused_before_any_work(version, named):
    with pytest.raises(UnsupportedVersionError, match=named) as caught:
        check_release(version)
    assert caught.value.fix


def test_a_release_the_registry_does_not_have_is_refused_and_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNTIME_FILES_ENV, str(tmp_path))
    with pytest.raises(UnsupportedVersionError, match=r"1\.99\.0's requirements cannot be resolved") as caught:
        resolve_version("1.99.0")
    assert "registry" in caught.value.fix
    assert not list(tmp_path.glob("chromadb-*.txt"))


def test_the_cli_refuses_an_unknown_target_by_name(copy_of, tmp_path):
    result = run_cli("migrate", str(copy_of("1.5.9")), str(tmp_path / "out"), "--target", "0.4.1", "--json")
    assert result.returncode == 2
    assert "older than 0.4.15" in json.loads(result.stdout)["error"]
    assert not (tmp_path / "out").exists()


def _facts_of(version: str) -> dict:
    return run_worker(version, "facts", {}).data


def test_a_release_with_a_migration_the_native_reader_does_not_know_is_refused_by_name():
    facts = _facts_of("1.5.9")
    newer = dict(facts, migration_files=[*facts["migration_files"],
                                         ["sysdb", 11, "00011-future.sqlite.sql", "0" * 32]])
    with pytest.raises(UnsupportedVersionError, match=r"sysdb migration 11 \(00011-future.sqlite.sql\)"):
        runtime_resolution._refuse_unknown_migrations("9.0.0", newer)
    changed = [list(row) for row in facts["migration_files"]]
    changed[0][3] = "f" * 32
    with pytest.raises(UnsupportedVersionError, match=f"{changed[0][0]} migration {changed[0][1]} as"):
        runtime_resolution._refuse_unknown_migrations("9.0.0", dict(facts, migration_files=changed))
    runtime_resolution._refuse_unknown_migrations("1.5.9", facts)  # the real facts pass
