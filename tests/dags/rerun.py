"""Run the same DAG run again, as a clear or a retry of a failed run does.

`airflow dags test` names each run after the time it starts, so a second call is a new
run. `dag.test(run_after=...)` with a fixed time gives the same run id again (Airflow
replaces the old run of that logical date), so the run's ledger entries, staging folder
and lock owner are those of the first attempt.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.airflow_harness.harness import DagTestResult, _run_bounded, read_dag_run
from tests.conftest import REPO

SCRIPT = r"""
import json, runpy, sys
from datetime import datetime
arg = json.loads(sys.argv[1])
dags = runpy.run_path(arg["dag_file"])
when = datetime.fromisoformat(arg["when"])
dags[arg["dag_id"]].test(run_after=when, logical_date=when, run_conf=arg["conf"])
"""


def run_fixed(env: Mapping[str, str], dag_id: str, when: str, conf: dict[str, Any], log_path: Path,
              timeout_s: float = 900) -> DagTestResult:
    """dag.test() for a fixed run time in a child process; the result as run_dag_test gives it."""
    argument = {"dag_file": str(REPO / "dags" / "chroma_migration_dags.py"), "dag_id": dag_id, "when": when,
                "conf": conf}
    finished = _run_bounded([sys.executable, "-c", SCRIPT, json.dumps(argument)], env, timeout_s, log_path)
    run_id, state, tis, xcoms = read_dag_run(env, dag_id)
    return DagTestResult(dag_id, run_id, state, tis, xcoms, finished.returncode, finished.pid, finished.timed_out,
                         finished.cancelled, finished.duration_s, log_path, finished.log)
