"""Ways a DAG run of the fault suite is interrupted: a killed process, a pause at a fault point.

A run is always `dag.test()` for a fixed time in a child process (tests/dags/rerun.py), so
running it again is the same run id: what a clear or a retry of the run does.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.faults import FAULT_DIR_ENV, FAULT_ENV, pause_files
from tests.airflow_harness.harness import DagTestResult, _python_json, _run_bounded, read_dag_run
from tests.conftest import REPO
from tests.dags.rerun import run_fixed

_FAIL_INTERRUPTED = r"""
import json, os, sys
from datetime import datetime, timezone
import sqlalchemy as sa

arg = json.loads(sys.argv[1])
engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
ti = sa.table("task_instance", sa.column("dag_id"), sa.column("run_id"), sa.column("task_id"),
              sa.column("map_index"), sa.column("state"), sa.column("end_date"))
unfinished = ("running", "queued", "scheduled", "restarting", "up_for_retry", "up_for_reschedule")
where = sa.and_(ti.c.dag_id == arg["dag_id"], ti.c.run_id == arg["run_id"], ti.c.state.in_(unfinished))
with engine.begin() as conn:
    rows = [f"{r.task_id}[{r.map_index}]" for r in conn.execute(sa.select(ti.c.task_id, ti.c.map_index).where(where))]
    conn.execute(sa.update(ti).where(where).values(state="failed", end_date=datetime.now(timezone.utc)))
print(json.dumps(rows))
"""


def fail_interrupted_tasks(env: Mapping[str, str], dag_id: str, run_id: str) -> list[str]:
    """What the scheduler does when a task's process died (its heartbeat timed out): mark it failed.

    `dag.test()` has no scheduler, and a killed `dag.test()` leaves its task `running`, which a
    clear would only turn into `restarting`. Returns the task instances that were unfinished.
    """
    return _python_json(env, _FAIL_INTERRUPTED, {"dag_id": dag_id, "run_id": run_id})


def run_killed(env: Mapping[str, str], dag_id: str, when: str, conf: dict[str, Any], fault: str,
               log_path: Path) -> DagTestResult:
    """Run until `fault` (a `point[:index]`) SIGKILLs the process running the task; then fail what it left running."""
    result = run_fixed({**env, FAULT_ENV: f"{fault}:kill"}, dag_id, when, conf, log_path)
    assert result.returncode == -9, f"the run was not killed at {fault}:\n{result.summary()}"
    assert fail_interrupted_tasks(env, dag_id, result.run_id), "the killed task was not left running"
    return result


def run_paused(env: Mapping[str, str], dag_id: str, when: str, conf: dict[str, Any], fault: str,
               folder: Path, while_paused: Callable[[], Any], timeout_s: float = 600) -> tuple[DagTestResult, Any]:
    """Run until `fault` (a `point[:index]`) pauses, call `while_paused()`, let the run go on; its result and
    what `while_paused` returned."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = f"{fault}:pause"
    reached, resume = pause_files(spec, folder)
    outcome: dict[str, DagTestResult] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_fixed(
        {**env, FAULT_ENV: spec, FAULT_DIR_ENV: str(folder)}, dag_id, when, conf, folder / f"{fault}.log",
        timeout_s)), daemon=True)
    runner.start()
    deadline = time.monotonic() + timeout_s
    while not reached.exists():
        if not runner.is_alive() or time.monotonic() > deadline:
            resume.touch()
            runner.join()
            raise AssertionError(f"the run never reached {spec}:\n{outcome['result'].summary()}")
        time.sleep(0.1)
    try:
        answer = while_paused()
    finally:
        resume.touch()
        runner.join()
    return outcome["result"], answer


_MANY = r"""
import json, runpy, sys
from datetime import datetime
arg = json.loads(sys.argv[1])
dags = runpy.run_path(arg["dag_file"])
for number, run in enumerate(arg["runs"]):
    print(f"=== run {number} ===", flush=True)
    when = datetime.fromisoformat(run["when"])
    try:
        dags[run["dag_id"]].test(run_after=when, logical_date=when, run_conf=run["conf"])
    except Exception as error:
        print(f"=== run {number} refused: {type(error).__name__}: {error}", flush=True)
print("=== end ===", flush=True)
"""


@dataclass
class ManyRun:
    dag_id: str
    run_id: str | None
    state: str | None
    task_states: dict[str, str | None]
    log: str  # this run's part of the shared log
    refused: str | None  # the exception dag.test raised before any task ran (e.g. a Param that fails validation)


def run_many(env: Mapping[str, str], runs: list[tuple[str, str, dict[str, Any]]], log_path: Path,
             timeout_s: float = 900) -> list[ManyRun]:
    """Several (dag_id, when, conf) runs one after the other in one child process: Airflow is imported once."""
    argument = {"dag_file": str(REPO / "dags" / "chroma_migration_dags.py"),
                "runs": [{"dag_id": d, "when": w, "conf": c} for d, w, c in runs]}
    finished = _run_bounded([sys.executable, "-c", _MANY, json.dumps(argument)], env, timeout_s, log_path)
    assert "=== end ===" in finished.log, f"the runs did not finish:\n{finished.log[-4000:]}"
    parts = re.split(r"^=== run \d+ ===$", finished.log.split("=== end ===")[0], flags=re.M)[1:]
    results = []
    for (dag_id, when, _conf), part in zip(runs, parts, strict=True):
        refused = re.search(r"^=== run \d+ refused: (.*)$", part, flags=re.M)
        run_id = f"manual__{when}"
        found_id, state, tis, _ = read_dag_run(env, dag_id, run_id=run_id)
        results.append(ManyRun(dag_id, found_id, state, {ti.key: ti.state for ti in tis}, part,
                               refused.group(1) if refused else None))
    return results
