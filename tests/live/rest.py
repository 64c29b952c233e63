"""What users and the UI do to a running Airflow, through its public REST API (/api/v2) and nothing else.

Every wait is bounded; while waiting, `alive` (the cluster's liveness check) runs so that a
crashed component fails the test at once with its log instead of at the timeout.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.airflow_harness.harness import HarnessError, api_request

FINISHED = ("success", "failed")


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


@dataclass
class AirflowApi:
    base_url: str
    alive: Callable[[], None] = lambda: None  # raises when a component died
    describe: Callable[[], str] = lambda: ""  # component logs for failure messages

    def call(self, method: str, path: str, body: Any = None, expect: Iterable[int] = (200,)) -> Any:
        status, answer = api_request(self.base_url, method, path, body, timeout_s=60)
        if status not in tuple(expect):
            raise HarnessError(f"{method} {path} -> {status}: {answer}")
        return answer

    def wait(self, what: str, probe: Callable[[], Any], timeout_s: float, poll_s: float = 2) -> Any:
        """Call probe until it returns something truthy; fail naming `what` with the component logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.alive()
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise HarnessError(f"Timed out after {timeout_s:.0f}s waiting for {what}.\n{self.describe()}")
            time.sleep(poll_s)

    # DAGs ---------------------------------------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v2/dags/{_q(dag_id)}")

    def wait_for_dags(self, dag_ids: Iterable[str], timeout_s: float = 300) -> None:
        """Until the dag-processor has parsed every DAG (they appear in the API) and there are no import errors."""
        wanted = set(dag_ids)

        def parsed() -> bool:
            errors = self.call("GET", "/api/v2/importErrors")
            if errors["total_entries"]:
                raise HarnessError(f"DAG import errors: {errors['import_errors']}")
            present = {d["dag_id"] for d in self.call("GET", "/api/v2/dags?limit=100")["dags"]}
            return wanted <= present

        self.wait(f"the DAGs {sorted(wanted)} to be parsed", parsed, timeout_s)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/api/v2/dags/{_q(dag_id)}", {"is_paused": paused})

    # DAG runs -----------------------------------------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """A manual run now, as the UI's Trigger button creates it; returns its run id."""
        run = self.call("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns?limit=100&order_by=logical_date")["dag_runs"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 900) -> dict[str, Any]:
        """Until the run has finished (success or failed); returns it."""
        def finished() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            return run if run["state"] in FINISHED else None

        return self.wait(f"{dag_id} run {run_id} to finish", finished, timeout_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances?limit=200"
        return list(self.call("GET", path)["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """`task_id` (or `task_id[map_index]`) -> state."""
        return {(ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"): ti["state"]
                for ti in self.task_instances(dag_id, run_id)}

    def summary(self, dag_id: str, run_id: str) -> str:
        """For assertion messages: the run's state and every task's state."""
        run = self.run(dag_id, run_id)
        states = "\n".join(f"  {k}: {v}" for k, v in sorted(self.task_states(dag_id, run_id).items()))
        return f"{dag_id} {run_id}: {run['state']} ({run['run_type']})\n{states}"

    # Human-in-the-loop -------------------------------------------------------------------------------------------

    def wait_for_approval(self, dag_id: str, run_id: str, timeout_s: float = 900) -> dict[str, Any]:
        """Until the run's `approve` task awaits input; returns its HITL detail (subject, body, options)."""
        path = (f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/hitlDetails"
                "?task_id=approve&response_received=false")

        def awaiting() -> dict[str, Any] | None:
            details = self.call("GET", path)["hitl_details"]
            return next((d for d in details if d["task_instance"]["state"] == "awaiting_input"), None)

        return self.wait(f"{dag_id} run {run_id} to await approval", awaiting, timeout_s)

    def answer_approval(self, dag_id: str, run_id: str, option: str) -> dict[str, Any]:
        """Answer the run's `approve` task as the UI's Approve/Reject buttons do."""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/approve/-1/hitlDetails"
        return self.call("PATCH", path, {"chosen_options": [option], "params_input": {}})

    # Backfills ----------------------------------------------------------------------------------------------------

    def create_backfill(self, dag_id: str, from_date: str, to_date: str, reprocess_behavior: str,
                        max_active_runs: int = 1) -> dict[str, Any]:
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date,
                "reprocess_behavior": reprocess_behavior, "max_active_runs": max_active_runs}
        return self.call("POST", "/api/v2/backfills", body)

    def wait_for_backfill(self, backfill_id: int, timeout_s: float = 1200) -> dict[str, Any]:
        def completed() -> dict[str, Any] | None:
            backfill = self.call("GET", f"/api/v2/backfills/{backfill_id}")
            return backfill if backfill["completed_at"] else None

        return self.wait(f"backfill {backfill_id} to complete", completed, timeout_s, poll_s=3)
