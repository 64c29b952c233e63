"""The CLI and the DAG are two drivers of one engine: for the same source they choose the same
strategy (strategy.py's `auto`) and write equal databases. One upgrade case, and one fallback
case whose upgraded copy fails verification (0.4.24's stale full-text rows, kept by 1.x's own
upgrade), which both must transplant instead."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from chroma_migrate_testkit.fixtures import receipt_spec
from tests.airflow_harness.harness import run_dag_test
from tests.conftest import dump_records, run_cli
from tests.dags.conftest import SEED_VERSION, SMALL_SPEC
from tests.dags.test_migration_dag import assert_published
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"
STALE_TEXT_SPEC = receipt_spec(records=300, dim=16, big_dim=None, missing_documents=False)


def manifest_of_seed(system) -> dict:
    return system.s3("words").read_manifest(system.layout("words").version_prefix(SEED_VERSION))


@pytest.mark.parametrize(("version", "spec", "strategy"), [
    pytest.param("1.0.20", SMALL_SPEC, "upgrade", id="upgrade"),
    # Both drivers upgrade, fail and transplant: 70-140 s, so `make test-slow` (CI's budget); the DAG's
    # transplant steps run in CI in tests/transplant/test_run_steps.py.
    pytest.param("0.4.24", STALE_TEXT_SPEC, "transplant", id="verification-fallback", marks=pytest.mark.slow),
])
def test_the_cli_and_the_dag_choose_the_same_strategy_and_write_equal_databases(system, tmp_path, version, spec,
                                                                                strategy):
    seed_db = system.seed("words", version=version, spec=spec)
    cli = json.loads(run_cli("migrate", str(seed_db), str(tmp_path / "cli"), "--target", "1.5.9", "--json",
                             check=True).stdout)
    requests_before = len(system.moto.log_path.read_text().splitlines())
    result = run_dag_test(system.env, DAG, conf={"env": "dev"}, timeout_s=900)
    assert result.state == "success", result.summary()
    live = system.s3("words").read_pointer()
    manifest = system.s3("words").read_manifest(system.layout("words").version_prefix(live))
    assert cli["strategy"] == manifest["strategy"] == strategy
    if strategy == "transplant":
        assert [a["strategy"] for a in cli["attempts"]] == ["upgrade", "transplant"]
        assert "full-text rows" in cli["attempts"][0]["reason"]
        assert "full-text rows" in result.log and "transplanted from the source instead" in result.log
        assert result.task_states["export_batch[0]"] == "success"  # one batch: the plan step wrote it
    if strategy == "upgrade":  # what a dev run publishes (this is the suite's dev upgrade run too)
        assert_published(system, result, seed_db, strategy="upgrade")
        assert result.task_states["approve"] == "skipped"  # dev needs no approval
        assert result.task_states["export_batch[0]"] == "success"
        assert "verified while planning" in result.log  # the plan's verification stands: the copy is unchanged
        assert any(k.endswith("verification.md") for k in system.s3("words").list_objects("words/snapshot/migrations/"))
        # Issue 16: the upgrade's unchanged HNSW files were copied inside S3 and on EFS, not sent again.
        reports = system.s3("words").list_objects("words/snapshot/migrations/")
        key = next(k for k in reports if k.endswith("publish.json"))
        moved = json.loads(system.moto.client("s3").get_object(Bucket="chroma-test-dev", Key=key)["Body"].read())
        assert moved["s3_transfer"]["copied_files"] > 0 and moved["s3_transfer"]["uploaded_files"] > 0
        assert moved["efs_transfer"]["from_previous_files"] == moved["s3_transfer"]["copied_files"]
        assert "bytes copied inside S3" in result.log
        # The source is downloaded once per run (resolve_source, into the shared staging folder every later
        # task reads): the moto server's own request log shows one GET of each of its objects.
        prefix = f"/chroma-test-dev/{system.layout('words').version_prefix(SEED_VERSION)}"
        served = system.moto.log_path.read_text().splitlines()[requests_before:]
        gets = Counter(line.split('"GET ', 1)[1].split(" ", 1)[0] for line in served if f'"GET {prefix}' in line)
        files = {f"{prefix}{name}" for name in manifest_of_seed(system)["files"]}
        assert {path: gets[path] for path in files} == dict.fromkeys(files, 1)
    dag_db = system.layout("words").efs_version_dir(live)
    written = dump_records("1.5.9", tmp_path / "cli")
    assert_same_records(written, dump_records("1.5.9", dag_db), spaces_of(written))
    same = run_cli("verify", str(tmp_path / "cli"), str(dag_db), "--json")
    assert same.returncode == 0, same.stdout[-3000:]
