"""Spike tests proving the Airflow harness end to end on real Airflow 3.3 (`dags test`, api-server, HITL REST).

One AIRFLOW_HOME (one `airflow db migrate`) and one api-server serve the whole module. Timings are written to
``<AIRFLOW_HOME>/timings.json`` and printed at the end of the module (visible with ``-s``).
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.airflow_harness.harness import (
    ApiServer,
    airflow_home,
    api_request,
    api_server,
    check_dag_imports,
    get_token,
    run_dag_test,
    run_dag_test_with_hitl,
    wait_for_hitl,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

BASIC_DAG = '''
"""Setup/teardown pair around a PythonOperator, a pooled task and a mapped task with map_index_template."""
import pendulum

from harness_probe_pkg import PROBE  # an include/-style package found through extra_pythonpath

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, get_current_context, setup, task, teardown


def hello(**context):
    print("hello from", context["run_id"], "conf", context["dag_run"].conf)
    return {"conf": context["dag_run"].conf, "probe": PROBE}


with DAG("spike_basic", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):

    @setup
    def acquire():
        return "lock-1"

    @teardown
    def release(lock):
        print("released", lock)

    @task(map_index_template="{{ item_label }}")
    def square(x):
        get_current_context()["item_label"] = f"item-{x}"
        return x * x

    lock = acquire()
    work = PythonOperator(task_id="hello", python_callable=hello)
    pooled = PythonOperator(task_id="pooled", python_callable=lambda: "ran", pool="no_such_pool", pool_slots=4)
    squares = square.expand(x=[1, 2, 3])
    lock >> [work, pooled, squares] >> release(lock)
'''

FAILING_DAG = '''
import pendulum

from airflow.sdk import DAG, setup, task, teardown

with DAG("spike_failure", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):

    @setup
    def acquire():
        return "lock-1"

    @task(retries=0)
    def boom():
        raise RuntimeError("boom on purpose")

    @task
    def after_boom():
        return "never"

    @teardown
    def release(lock):
        print("released", lock)

    lock = acquire()
    lock >> boom() >> after_boom() >> release(lock)
'''

HITL_DAG = '''
import pendulum

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, setup, task, teardown

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False,
         params={{"collection": "receipts"}}):

    @setup
    def acquire():
        return "lock-1"

    @task
    def prepare():
        return {{"records": 42}}

    approval = ApprovalOperator(
        task_id="approve",
        subject="Swap {{{{ params.collection }}}}?",
        body="Verified {{{{ ti.xcom_pull(task_ids='prepare')['records'] }}}} records.",
    )

    @task
    def swap():
        return "swapped"

    @task
    def report(result):
        return f"reported {{result}}"

    @teardown
    def release(lock):
        print("released", lock)

    lock = acquire()
    swapped = swap()
    lock >> prepare() >> approval >> swapped
    report(swapped) >> release(lock)
'''

BROKEN_DAG = '''
from airflow.sdk import DAG
import module_that_does_not_exist  # noqa: F401
'''

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    dags = tmp_path_factory.mktemp("spike_dags")
    (dags / "spike_basic.py").write_text(textwrap.dedent(BASIC_DAG))
    (dags / "spike_failure.py").write_text(textwrap.dedent(FAILING_DAG))
    (dags / "spike_hitl.py").write_text(HITL_DAG.format(dag_id="spike_hitl"))
    (dags / "spike_hitl_stuck.py").write_text(HITL_DAG.format(dag_id="spike_hitl_stuck"))
    include = tmp_path_factory.mktemp("spike_include")
    (include / "harness_probe_pkg").mkdir()
    (include / "harness_probe_pkg" / "__init__.py").write_text('PROBE = "imported from include"\n')
    started = time.monotonic()
    env = airflow_home(tmp_path_factory, dags_folder=dags, extra_pythonpath=[REPO / "include", include])
    TIMINGS["airflow_home (db migrate)"] = time.monotonic() - started
    yield env
    Path(env["AIRFLOW_HOME"], "timings.json").write_text(json.dumps(TIMINGS, indent=2))
    print("\nAirflow harness timings (s):\n" + "\n".join(f"  {k}: {v:.1f}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def api(airflow_env) -> Iterator[ApiServer]:
    with api_server(airflow_env) as server:
        TIMINGS["api-server start"] = server.startup_s
        yield server


def timed(name: str, result):
    TIMINGS[name] = result.duration_s
    return result


def test_dag_imports_cleanly_with_3_3_dagbag(airflow_env, tmp_path):
    started = time.monotonic()
    report = check_dag_imports(airflow_env)
    TIMINGS["DagBag import check"] = time.monotonic() - started
    assert report.import_errors == {}
    assert report.dag_ids == ["spike_basic", "spike_failure", "spike_hitl", "spike_hitl_stuck"]
    assert report.task_counts["spike_hitl"] == 6

    (tmp_path / "broken.py").write_text(BROKEN_DAG)
    broken = check_dag_imports(airflow_env, tmp_path)
    assert broken.dag_ids == []
    assert "module_that_does_not_exist" in broken.import_errors[str(tmp_path / "broken.py")]


@pytest.mark.slow  # CI's budget: every DAG test runs setup, work and teardown through this harness
def test_dag_test_runs_setup_work_teardown_and_reads_states_back(airflow_env):
    result = timed("dags test spike_basic", run_dag_test(airflow_env, "spike_basic", conf={"x": 1}, timeout_s=240))
    assert result.returncode == 0 and result.state == "success", result.summary()
    assert result.task_states == {
        "acquire": "success",
        "hello": "success",
        "pooled": "success",  # dags test ignores pools: "no_such_pool" does not exist and nothing complains
        "square[0]": "success",
        "square[1]": "success",
        "square[2]": "success",
        "release": "success",
    }, result.summary()
    assert [ti.rendered_map_index for ti in result.mapped("square")] == ["item-1", "item-2", "item-3"]
    assert result.xcom_return_values["hello"] == {"conf": {"x": 1}, "probe": "imported from include"}
    assert result.xcom_return_values["square[2]"] == 9
    assert result.run_id and result.run_id.startswith("manual__")


@pytest.mark.slow  # the harness's own spike test
def test_failed_task_still_runs_teardown_and_fails_the_run(airflow_env):
    logical_date = "2024-06-01T00:00:00+00:00"  # rerunning the same logical date replaces the earlier run
    result = timed("dags test spike_failure", run_dag_test(airflow_env, "spike_failure", None, logical_date, 240))
    assert result.returncode == 1 and result.state == "failed", result.summary()
    assert result.task_states == {
        "acquire": "success",
        "boom": "failed",
        "after_boom": "upstream_failed",
        "release": "success",
    }, result.summary()
    assert "boom on purpose" in result.log


def test_timeout_kills_the_run_and_finds_no_new_run(airflow_env):
    result = run_dag_test(airflow_env, "spike_basic", timeout_s=2)
    assert result.timed_out and result.returncode is not None and result.returncode < 0, result.summary()
    assert result.run_id is None and result.task_instances == []  # older runs of spike_basic are not mistaken
    with pytest.raises(ProcessLookupError):
        os.killpg(result.pid, 0)


def test_rest_api_needs_no_token_with_all_admins(api):
    status, body = api_request(api.base_url, "GET", "/api/v2/dags?limit=100")
    assert status == 200, body
    assert isinstance(body["dags"], list) and body["total_entries"] >= 0  # which DAGs are listed depends on what ran
    status, _ = api_request(api.base_url, "GET", "/api/v2/dags?limit=1", token=get_token(api.base_url))
    assert status == 200
    status, _ = api_request(api.base_url, "GET", "/api/v2/dags?limit=1", token="not-a-jwt")
    assert status == 403  # a bad explicit token is not overridden by the all-admins middleware


@pytest.mark.slow  # the harness's own spike test; tests/dags/ answer approvals the same way
def test_approval_approve_runs_downstream(airflow_env, api):
    result, answers = run_dag_test_with_hitl(airflow_env, api.base_url, "spike_hitl", ["Approve"], timeout_s=240)
    timed("dags test spike_hitl (Approve)", result)
    assert result.state == "success" and result.returncode == 0, result.summary()
    (answer,) = answers
    assert (answer.subject, answer.body) == ("Swap receipts?", "Verified 42 records.")
    assert answer.run_id == result.run_id and answer.task_id == "approve" and answer.map_index == -1
    assert result.task_states == {
        "acquire": "success",
        "prepare": "success",
        "approve": "success",
        "swap": "success",
        "report": "success",
        "release": "success",
    }, result.summary()
    decision = result.xcom_return_values["approve"]
    assert decision["chosen_options"] == ["Approve"] and decision["params_input"] == {}
    print("\napprove XCom:", decision)
    assert result.xcom_return_values["report"] == "reported swapped"


@pytest.mark.slow  # the harness's own spike test; tests/dags/ answer approvals the same way
def test_approval_reject_skips_downstream_but_runs_teardown(airflow_env, api):
    result, answers = run_dag_test_with_hitl(airflow_env, api.base_url, "spike_hitl", ["Reject"], timeout_s=240)
    timed("dags test spike_hitl (Reject)", result)
    assert answers[0].chosen_options == ["Reject"]
    assert result.state == "success" and result.returncode == 0, result.summary()
    assert result.task_states == {
        "acquire": "success",
        "prepare": "success",
        "approve": "success",  # a rejection is a successful answer, not a failed task
        "swap": "skipped",  # direct downstream: skipped by the operator
        "report": "skipped",  # further downstream: skipped by trigger rule all_success
        "release": "success",  # teardowns are never skipped by the operator
    }, result.summary()
    # On Reject the operator skips downstream by raising DownstreamTasksSkipped: its return value (the answer)
    # is never pushed, so nothing downstream can xcom_pull the decision; read it from the HITL detail instead.
    assert "approve" not in result.xcom_return_values


@pytest.mark.slow  # the harness's own spike test; tests/dags/ answer approvals the same way
def test_unanswered_approval_blocks_until_the_run_is_killed(airflow_env, api):
    """A `dags test` parked on HITL never ends by itself; the harness kills its whole process group."""
    started = datetime.now(UTC)
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run_dag_test, airflow_env, "spike_hitl_stuck", None, None, 240, cancel=cancel)
        try:
            detail = wait_for_hitl(api.base_url, "spike_hitl_stuck", 180, created_after=started)
        finally:
            time.sleep(2)  # still parked 2 s later: it is waiting, not finishing
            cancel.set()
        result = future.result()
    assert detail["subject"] == "Swap receipts?"
    assert result.cancelled and result.returncode is not None and result.returncode < 0, result.summary()
    assert "Waiting for Human-in-the-loop input" in result.log
    assert result.state == "running"
    assert result.task_states["approve"] == "awaiting_input"
    assert result.task_states["release"] is None  # the teardown never ran: the lock stays taken
    with pytest.raises(ProcessLookupError):
        os.killpg(result.pid, 0)
    TIMINGS["SIGTERM ignored (returncode)"] = result.returncode
