"""The migration DAG, run for real with `airflow dags test` against a moto server.

Every test asserts the live state users care about: the S3 objects and pointer, the EFS
pointer and folder, the lock item and the migrated records, not only task states.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate.snapshots.lock import DynamoLock, new_owner_id
from tests.airflow_harness.harness import run_dag_test
from tests.conftest import dump_records
from tests.dags.conftest import SEED_VERSION, SMALL_SPEC
from tests.dags.rerun import run_fixed
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"


def assert_published(system, result, seed_db, *, strategy: str) -> str:
    """The new version is live in S3 and EFS, complete, in 1.5.9's format, with every record."""
    assert result.state == "success", result.summary()
    s3, efs = system.s3("words"), system.efs("words")
    live = s3.read_pointer()
    assert live != SEED_VERSION
    assert efs.read_pointer() == live
    assert s3.version_exists(live) and s3.version_exists(SEED_VERSION), "old version must stay in place"
    manifest = s3.read_manifest(system.layout("words").version_prefix(live))
    assert manifest["strategy"] == strategy and manifest["chromadb_version"] == "1.5.9"
    assert manifest["migrated_from"] == SEED_VERSION
    new_db = system.layout("words").efs_version_dir(live)
    expected = dump_records("1.0.20", seed_db)
    assert_same_records(expected, dump_records("1.5.9", new_db), spaces_of(expected))
    assert system.lock_item("words") is None, "the lock must be released"
    backups = s3.list_objects("words/snapshot/backups/")
    assert any(key.endswith("chroma.sqlite3") for key in backups), "the live version was backed up"
    return live


# The dev run's upgrade and publish: tests/dags/test_one_engine.py (beside the CLI's run of the same source).


@pytest.mark.slow  # CI's budget: the live test runs a forced rebuild in mapped batches on two workers
def test_forced_rebuild_runs_mapped_batches(system):
    seed_db = system.seed("words")
    result = run_dag_test(system.env, DAG, conf={"env": "dev", "strategy": "rebuild", "batch_size": 200},
                          timeout_s=900)
    assert_published(system, result, seed_db, strategy="rebuild")
    exports = result.mapped("export_batch")
    assert len(exports) >= 4 and all(ti.state == "success" for ti in exports)
    assert len(result.mapped("load_batch")) == len(exports)


def test_noop_run_short_circuits_and_changes_nothing(system):
    system.seed("words", version="1.5.9")
    before = system.s3("words").list_objects("words/")
    result = run_dag_test(system.env, DAG, conf={"env": "dev"}, timeout_s=600)
    assert result.state == "success", result.summary()
    assert result.task_states["migration_needed"] == "success"
    for task in ("acquire_lock", "backup", "verify", "publish"):
        assert result.task_states[task] == "skipped", result.summary()
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.efs("words").read_pointer() == SEED_VERSION
    assert system.s3("words").list_objects("words/") == before, "nothing may be uploaded"
    assert system.lock_item("words") is None


@pytest.mark.slow  # CI's budget: tests/faults/test_lock_and_pointer.py takes a held lock from a run in CI
def test_lock_held_by_another_owner_fails_the_run_without_touching_anything(system):
    system.seed("words")
    holder = new_owner_id()
    DynamoLock(system.moto.client("dynamodb"), "locks-dev", "words", holder).acquire()
    result = run_dag_test(system.env, DAG, conf={"env": "dev"}, timeout_s=600)
    assert result.state == "failed", result.summary()
    assert result.task_states["acquire_lock"] == "failed"
    assert holder in result.log and "Gave up waiting" in result.log
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.efs("words").read_pointer() == SEED_VERSION
    assert system.lock_item("words")["owner"]["S"] == holder, "the other owner's lock stays"
    assert system.s3("words").list_versions() == [SEED_VERSION]


@pytest.mark.slow  # CI's budget: tests/faults/test_lock_and_pointer.py moves the pointer under a rerun in CI
def test_a_pointer_that_moved_during_the_run_aborts_the_swap(system):
    """Migrating an older version while a newer one is live is what a compactor publishing mid-run looks like."""
    system.seed("words", version_id="20250101_000000")
    system.seed("words", version_id=SEED_VERSION)  # the compactor published after our source
    result = run_dag_test(system.env, DAG, conf={"env": "dev", "source_version_id": "20250101_000000"},
                          timeout_s=600)
    assert result.state == "failed", result.summary()
    assert result.task_states["publish"] == "failed", result.summary()
    assert "moved from 20250101_000000 to 20260101_000000" in result.log
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.efs("words").read_pointer() == SEED_VERSION
    assert system.lock_item("words") is None


def test_a_failed_verification_changes_nothing_live_and_releases_the_lock(system):
    """A rerun whose staged target was damaged: the ledger skips the load, verify must catch it."""
    system.seed("words")
    when = "2026-03-01T00:00:00+00:00"
    first = run_fixed(system.env, DAG, when, {"env": "dev", "dry_run": True}, system.root / "first.log")
    assert first.state == "success", first.summary()
    assert first.task_states["publish"] == "skipped"  # a dry run changes nothing live
    assert system.s3("words").read_pointer() == SEED_VERSION
    target = next((system.root / "staging-dev" / "words").glob("*/target"))
    _delete_one_record(target, "lines")
    # The same run again, now for real: its ledger says export and load are done.
    second = run_fixed(system.env, DAG, when, {"env": "dev"}, system.root / "second.log")
    assert second.state == "failed", second.summary()
    assert second.task_states["verify"] == "failed"
    assert "records differ: 1 missing" in second.log
    assert second.task_states["publish"] in ("upstream_failed", "skipped")
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.efs("words").read_pointer() == SEED_VERSION
    assert system.s3("words").list_versions() == [SEED_VERSION]
    assert system.lock_item("words") is None


def _delete_one_record(database, collection: str) -> None:
    import subprocess

    from chroma_migrate.runtimes import runtime_for

    script = ("import chromadb, sys\nfrom chromadb.config import Settings\n"
              "c = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))\n"
              "col = c.get_collection(sys.argv[2], embedding_function=None)\n"
              "col.delete(ids=[col.get(limit=1)['ids'][0]])\n")
    subprocess.run([str(runtime_for("1.5.9").python), "-c", script, str(database), collection], check=True,
                   capture_output=True)


@pytest.mark.slow  # 65 s; runs with make test-slow
def test_a_rerun_after_a_failed_load_skips_the_finished_batches(system):
    seed_db = system.seed("words")
    when = "2026-04-01T00:00:00+00:00"
    conf = {"env": "dev", "strategy": "rebuild", "batch_size": 200}
    failing = dict(system.env, CHROMA_MIGRATE_FAULT="load_batch:3")
    first = run_fixed(failing, DAG, when, conf, system.root / "first.log")
    assert first.state == "failed", first.summary()
    assert first.task_states["load_batch[3]"] == "failed"
    assert system.s3("words").read_pointer() == SEED_VERSION
    assert system.lock_item("words") is None
    done_before = {(i["SK"]["S"]): i["updated"]["S"] for i in system.ledger_items()}
    second = run_fixed(system.env, DAG, when, conf, system.root / "second.log")
    assert second.run_id == first.run_id, (first.run_id, second.run_id)
    assert_published(system, second, seed_db, strategy="rebuild")
    done_after = {(i["SK"]["S"]): i["updated"]["S"] for i in system.ledger_items()}
    exports = [k for k in done_before if k.startswith("export#")]
    assert exports and all(done_after[k] == done_before[k] for k in exports), "finished exports were redone"
    for index in range(3):
        assert done_after[f"load#{index:05d}"] == done_before[f"load#{index:05d}"], "finished loads were redone"
    assert "load#00003" not in done_before and "load#00003" in done_after
    assert json.loads(json.dumps(SMALL_SPEC))  # the spec the seeds come from is plain data
