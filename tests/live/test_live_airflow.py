"""The DAGs on a running, production-shaped Airflow, driven only through its REST API, as users do.

PostgreSQL metadata, CeleryExecutor on Redis with two workers, api-server, scheduler, dag-processor
and triggerer (tests/live/cluster.py); S3 and DynamoDB on a moto server. The tests run in file
order on one cluster: the dev runs and their backfill first (while nothing else runs), then the
production migration with its approval, the rejected one, and the rollback of the first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from chroma_migrate.snapshots.lock import new_owner_id
from plugins.chroma_migration.run_state import lock_owner_for
from tests.conftest import dump_records
from tests.dags.conftest import SEED_VERSION
from tests.engine.records import assert_same_records, spaces_of
from tests.live.conftest import WORKERS
from tests.live.rest import FINISHED

pytestmark = [pytest.mark.live, pytest.mark.integration]

WORDS, LINES, ROLLBACK_WORDS = "chroma_migration__words", "chroma_migration__lines", "chroma_rollback__words"
MAPPED = ("export_batch", "load_batch")


def _answer(live, dag_id: str, run_id: str, option: str) -> dict:
    """Wait until the run's approval task awaits input, then answer it; returns what the approver saw."""
    detail = live.api.wait_for_approval(dag_id, run_id)
    live.api.answer_approval(dag_id, run_id, option)
    return detail


def _assert_live_records(live, collection: str, env: str, expected_db, seeded_by: str = "1.0.20") -> str:
    """S3 and EFS name the same live version, and it holds every record of expected_db in chromadb 1.5.9's format."""
    live_version = live.s3(collection, env).read_pointer()
    assert live.efs(collection, env).read_pointer() == live_version
    expected = dump_records(seeded_by, expected_db)
    migrated = dump_records("1.5.9", live.layout(collection, env).efs_version_dir(live_version))
    assert_same_records(expected, migrated, spaces_of(expected))
    return live_version


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _runs_by_date(live, dag_id: str) -> dict[str, dict]:
    return {run["logical_date"]: run for run in live.api.runs(dag_id)}


def _backfill(live, dag_id: str, first: datetime, last: datetime, reprocess: str) -> None:
    backfill = live.api.create_backfill(dag_id, first.isoformat(), last.isoformat(), reprocess)
    live.api.wait_for_backfill(backfill["id"])


@pytest.mark.slow  # over a minute: `make test-slow` (CI budget, README Tests)
def test_a_failed_scheduled_dev_run_is_rerun_alone_by_a_backfill(live):
    """Dev revalidates nightly. One night the compactor is still writing a new snapshot with the old
    chromadb and holds the lock: that night's run fails. A backfill of the whole range with reprocess
    'failed' reruns that night only, and it migrates the new snapshot."""
    api = live.api
    tonight = datetime.fromisoformat(api.dag(WORDS)["next_dagrun_logical_date"].replace("Z", "+00:00"))
    nights = [_iso(tonight - timedelta(days=n)) for n in (3, 2, 1, 0)]
    api.set_paused(WORDS, False)  # the scheduler creates tonight's run at once: dev is at the target, a noop
    scheduled = api.wait("the scheduler's nightly dev run", lambda: _finished_run_of_type(live, WORDS, "scheduled"),
                         600)
    assert scheduled["logical_date"] == nights[3] and scheduled["state"] == "success", scheduled
    noop = api.task_states(WORDS, scheduled["dag_run_id"])
    assert noop["migration_needed"] == "success" and noop["acquire_lock"] == "skipped", noop
    _backfill(live, WORDS, tonight - timedelta(days=3), tonight - timedelta(days=2), "none")  # two quiet nights

    compactor = live.lock("words", "dev", new_owner_id())
    compactor.acquire()
    written, written_db = live.publish_as_compactor("words", "dev", "1.0.20")
    _backfill(live, WORDS, tonight - timedelta(days=1), tonight - timedelta(days=1), "none")  # the night it fails
    before = _runs_by_date(live, WORDS)
    failed = before[nights[2]]
    assert failed["state"] == "failed", api.summary(WORDS, failed["dag_run_id"])
    assert api.task_states(WORDS, failed["dag_run_id"])["acquire_lock"] == "failed"
    assert live.lock_item("words", "dev")["owner"] == compactor.owner, "the other owner's lock must stay"
    assert live.s3("words", "dev").read_pointer() == written, "a failed run changes nothing live"
    compactor.release()

    _backfill(live, WORDS, tonight - timedelta(days=3), tonight, "failed")
    after = _runs_by_date(live, WORDS)
    assert sorted(after) == nights, f"a reprocess-failed backfill creates no new runs: {sorted(after)}"
    assert [after[n]["state"] for n in nights] == ["success"] * 4, [after[n] for n in nights]
    for night in (nights[0], nights[1], nights[3]):
        assert after[night]["end_date"] == before[night]["end_date"], f"the successful {night} run was rerun"
    assert after[nights[2]]["end_date"] != failed["end_date"], "the failed night did not rerun"
    migrated = _assert_live_records(live, "words", "dev", written_db)
    assert migrated != written
    assert live.lock_item("words", "dev") is None


def _finished_run_of_type(live, dag_id: str, run_type: str) -> dict | None:
    return next((r for r in live.api.runs(dag_id) if r["run_type"] == run_type and r["state"] in FINISHED), None)


def test_prod_migration_waits_for_approval_and_spreads_its_batches_over_both_workers(live):
    api = live.api
    api.set_paused(WORDS, False)
    run_id = api.trigger(WORDS, {"env": "prod", "strategy": "rebuild", "batch_size": 150})
    detail = _answer_after_checking_nothing_live_changed(live, run_id)
    assert "Verification PASSED" in detail["body"] and "| words | 292 | 292 |" in detail["body"], detail["body"]
    assert "s3://chroma-live-prod/words/snapshot/migrations/" in detail["body"]
    run = api.wait_for_run(WORDS, run_id)
    assert run["state"] == "success", api.summary(WORDS, run_id)
    live_version = _assert_live_records(live, "words", "prod", live.seeds[("prod", "words")])
    assert live_version != SEED_VERSION and live.s3("words", "prod").version_exists(SEED_VERSION)
    assert live.lock_item("words", "prod") is None

    mapped = [ti for ti in api.task_instances(WORDS, run_id) if ti["task_id"] in MAPPED]
    assert len([ti for ti in mapped if ti["task_id"] == "export_batch"]) >= 4
    assert all(ti["state"] == "success" for ti in mapped)
    hosts = {f"{ti['task_id']}[{ti['map_index']}]": ti["hostname"] for ti in mapped}
    assert set(hosts.values()) == set(WORKERS), f"batches did not run on both workers: {hosts}"


def _answer_after_checking_nothing_live_changed(live, run_id: str) -> dict:
    detail = live.api.wait_for_approval(WORDS, run_id)
    assert live.s3("words", "prod").read_pointer() == SEED_VERSION, "nothing goes live before the approval"
    assert live.lock_item("words", "prod")["owner"] == lock_owner_for(run_id), "the run holds the lock meanwhile"
    live.api.answer_approval(WORDS, run_id, "Approve")
    return detail


def test_prod_migration_rejected_changes_nothing_and_releases_the_lock(live):
    api = live.api
    api.set_paused(LINES, False)  # unpausing also starts dev's daily revalidation: dev lines is at the target
    run_id = api.trigger(LINES, {"env": "prod"})
    detail = _answer(live, LINES, run_id, "Reject")
    assert "Verification PASSED" in detail["body"]
    run = api.wait_for_run(LINES, run_id)
    states = api.task_states(LINES, run_id)
    assert states["publish"] == "skipped" and states["release_lock"] == "success", api.summary(LINES, run_id)
    assert run["state"] == "success", api.summary(LINES, run_id)
    assert live.s3("lines", "prod").read_pointer() == SEED_VERSION
    assert live.efs("lines", "prod").read_pointer() == SEED_VERSION
    assert live.s3("lines", "prod").list_versions() == [SEED_VERSION]
    assert live.lock_item("lines", "prod") is None

    nightly = api.wait("dev's nightly run of lines", lambda: _finished_run_of_type(live, LINES, "scheduled"), 600)
    assert nightly["state"] == "success", api.summary(LINES, nightly["dag_run_id"])
    revalidation = api.task_states(LINES, nightly["dag_run_id"])
    assert revalidation["migration_needed"] == "success" and revalidation["acquire_lock"] == "skipped", revalidation
    assert live.s3("lines", "dev").read_pointer() == SEED_VERSION


def test_rollback_points_prod_back_after_approval(live):
    api = live.api
    migrated = live.s3("words", "prod").read_pointer()
    assert migrated != SEED_VERSION, "needs the approved prod migration of the test above"
    api.set_paused(ROLLBACK_WORDS, False)
    run_id = api.trigger(ROLLBACK_WORDS, {"env": "prod"})
    detail = _answer(live, ROLLBACK_WORDS, run_id, "Approve")
    assert f"from {migrated} to {SEED_VERSION}" in detail["body"], detail["body"]
    run = api.wait_for_run(ROLLBACK_WORDS, run_id)
    assert run["state"] == "success", api.summary(ROLLBACK_WORDS, run_id)
    assert live.s3("words", "prod").read_pointer() == SEED_VERSION
    assert live.efs("words", "prod").read_pointer() == SEED_VERSION
    assert live.s3("words", "prod").version_exists(migrated), "the rolled-back version stays for a later retry"
    assert live.lock_item("words", "prod") is None
