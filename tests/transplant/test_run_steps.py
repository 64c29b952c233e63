"""The DAG's steps (pipeline.py, what its tasks call) run a transplant the same way the CLI does:
the plan step writes and verifies it, the single batch reuses it, and the verify step keeps the
plan's report only while the written database is unchanged."""

from __future__ import annotations

import shutil

import pytest

from chroma_migrate.pipeline import RunPaths, export_batch, load_batch, plan_run, verify_run
from chroma_migrate.run_types import BatchKind
from tests.conftest import dump_records
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration


def test_a_downgrade_is_transplanted_by_the_plan_step_and_verified_once(copy_of, tmp_path):
    paths = RunPaths(tmp_path / "run")
    shutil.copytree(copy_of("1.5.9"), paths.source)
    plan = plan_run(paths, "1.0.20")
    assert plan["strategy"] == "transplant" and "verified" in plan["reason"]
    [batch] = plan["batches"]
    assert batch["kind"] == BatchKind.TRANSPLANT and batch["upgraded_in_plan"]

    exported = export_batch(paths, plan, batch)
    assert load_batch(paths, plan, batch, exported)["count"] == sum(plan["records"].values())
    report = verify_run(paths, plan)
    assert report["passed"] and report["verified_while_planning"] and report["strategy"] == "transplant"
    assert "## Transplant" in paths.report_md.read_text()
    expected = dump_records("1.5.9", paths.source)
    assert_same_records(expected, dump_records("1.0.20", paths.target), spaces_of(expected))


@pytest.mark.slow  # a second transplant (CI's budget)
def test_a_cleared_staging_area_has_the_batch_write_the_transplant_again(copy_of, tmp_path):
    paths = RunPaths(tmp_path / "run")
    shutil.copytree(copy_of("1.5.9"), paths.source)
    plan = plan_run(paths, "1.0.20")
    exported = export_batch(paths, plan, plan["batches"][0])
    shutil.rmtree(paths.target)
    again = export_batch(paths, plan, plan["batches"][0])
    assert again["count"] == exported["count"] and paths.target.is_dir()
