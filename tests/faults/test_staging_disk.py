"""Scenario 7: the staging disk is too small, or fills up during the run (a size-limited tmpfs).

A disk smaller than the run needs is refused before anything is downloaded or locked. On a
disk large enough at the start, something else fills it while the upgrade copies the source:
the step fails naming the folder, its half-written copy is removed, and nothing live changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dags.conftest import config_text
from tests.dags.rerun import run_fixed
from tests.faults.conftest import FAULT_SPEC
from tests.faults.live_state import assert_live_intact, ledger_stages, live_bytes, lock_owner
from tests.faults.runs import run_paused

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"
CONF = {"env": "dev", "strategy": "upgrade"}


def _mount(options: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True)


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` at `folder`, unmounted afterwards (needs CAP_SYS_ADMIN, e.g. root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = _mount(f"size={megabytes}m", folder)
    if mounted.returncode != 0:
        message = f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run this scenario)")
        pytest.skip(message)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, megabytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(folder)], check=True)


def staging_on(system, disk: Path) -> dict[str, str]:
    """The run's environment with dev's staging_root on `disk` (everything else as the suite's config)."""
    config = json.loads(config_text(system.root))
    config["environments"]["dev"]["staging_root"] = str(disk)
    path = system.root / "small-staging.yaml"
    path.write_text(json.dumps(config))
    return {**system.env, "CHROMA_MIGRATION_CONFIG": str(path)}


def fill(disk: Path, leave_bytes: int) -> None:
    free = shutil.disk_usage(disk).free
    with open(disk / "someone-elses-file", "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(free - leave_bytes, 0))


def test_a_staging_disk_too_small_is_refused_and_one_that_fills_up_is_cleaned(system):
    system.seed("words", spec=FAULT_SPEC)
    before = live_bytes(system)
    with small_disk(system.root / "small-staging", 16) as disk:
        env = staging_on(system, disk)
        refused = run_fixed(env, DAG, "2026-09-01T00:00:00+00:00", CONF, system.root / "too-small.log")
        assert refused.state == "failed" and refused.task_states["resolve_source"] == "failed", refused.summary()
        assert f"The staging disk of {disk}/words/" in refused.log and "bytes free; this run needs about" in refused.log
        assert "point environments.dev.staging_root at a larger volume" in refused.log
        assert [p for p in disk.rglob("*") if p.is_file()] == [], "nothing may be downloaded"
        assert refused.task_states["acquire_lock"] in ("upstream_failed", None), refused.summary()
        assert ledger_stages(system) == {}

        resize(disk, 48)
        full, _ = run_paused(env, DAG, "2026-09-02T00:00:00+00:00", CONF, "export_batch:0",
                             system.root / "disk-full", lambda: fill(disk, leave_bytes=256 * 1024))
        assert full.state == "failed" and full.task_states["export_batch[0]"] == "failed", full.summary()
        assert f"The staging disk of {disk}/words/" in full.log and "filled up while copying the source" in full.log
        assert "Removed the partial target.upgrading" in full.log, full.summary()
        left = sorted(p.name for p in next(disk.glob("words/*")).iterdir())
        assert left == ["plan.json", "source", "source.json"], f"only the run's resumable state stays: {left}"
    assert_live_intact(system, before)
    assert lock_owner(system) is None
    assert "publish#00000" not in ledger_stages(system)
