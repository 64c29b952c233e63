"""Test harness for running real Airflow 3.3 DAGs from pytest.

Everything Airflow runs in child processes that get an explicit environment, so the pytest process never
imports Airflow (importing it configures Airflow once per process from whatever AIRFLOW_HOME is set then,
and without one it creates ``~/airflow``).

Typical use::

    env = airflow_home(tmp_path_factory, dags_folder=dags)            # migrates a SQLite DB once
    result = run_dag_test(env, "my_dag", conf={"x": 1}, timeout_s=300)
    assert result.state == "success", result.summary()
    assert result.task_states["release_lock"] == "success"

    with api_server(env) as server:                                  # same metadata DB
        result, answers = run_dag_test_with_hitl(env, server.base_url, "my_dag", ["Approve"])

`airflow dags test` runs every task inside its own process, one after the other (no executor, no scheduler,
no triggerer; the execution API is served in-process). An ``ApprovalOperator``/``HITLOperator`` parks its task
in ``awaiting_input`` and the run waits forever (its ``response_timeout`` is enforced only by a scheduler)
until the answer is written through the REST API of an api-server sharing the metadata DB.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PYTHON = sys.executable  # the venv interpreter that runs pytest also runs Airflow
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class HarnessError(RuntimeError):
    """Something in the harness itself went wrong (not the DAG under test)."""


# --------------------------------------------------------------------------------------------------------------
# AIRFLOW_HOME
# --------------------------------------------------------------------------------------------------------------


def airflow_home(
    base: Any,
    dags_folder: Path,
    plugins_folder: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_pythonpath: Iterable[Path | str] = (),
    *,
    migrate: bool = True,
    migrate_timeout_s: float = 300,
) -> dict[str, str]:
    """Create a project-local AIRFLOW_HOME with a migrated SQLite metadata DB; return the child-process env.

    ``base`` is a directory (used as AIRFLOW_HOME, created if missing) or a pytest ``TempPathFactory``
    (a fresh ``airflow_home`` directory below its base temp is used). The returned dict is the full
    environment for child processes: ``os.environ`` without any inherited ``AIRFLOW*`` variables, plus the
    settings below, plus ``extra_env`` (which wins). Call it once per test session: ``airflow db migrate``
    costs 6-11 s and is skipped when this function already migrated the DB for the installed Airflow version
    (a marker file), so a fixed path can be reused across sessions.
    """
    home = Path(base.mktemp("airflow_home")) if hasattr(base, "mktemp") else Path(base)
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    dags_folder = Path(dags_folder).resolve()
    dags_folder.mkdir(parents=True, exist_ok=True)
    plugins = Path(plugins_folder).resolve() if plugins_folder is not None else home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)

    secrets_file = home / "harness-secrets.json"
    if secrets_file.exists():
        keys = json.loads(secrets_file.read_text())
    else:
        keys = {
            # Shared by every process on this home: JWTs from one api-server stay valid for another one,
            # and Fernet-encrypted connection passwords written by one process decrypt in the others.
            "jwt_secret": secrets.token_urlsafe(64),  # >= 64 bytes, else PyJWT warns for HS512
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        secrets_file.write_text(json.dumps(keys))

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    pythonpath = [str(Path(p).resolve()) for p in extra_pythonpath]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY", "")]))
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
    )
    if not env["PYTHONPATH"]:
        del env["PYTHONPATH"]
    env.update(extra_env or {})

    marker = home / ".harness-migrated"
    version = importlib.metadata.version("apache-airflow-core")
    if migrate and (not marker.exists() or marker.read_text() != version):
        proc = _run_bounded(
            [PYTHON, "-m", "airflow", "db", "migrate"], env, migrate_timeout_s, home / "db-migrate.log"
        )
        if proc.returncode != 0:
            raise HarnessError(f"airflow db migrate failed ({proc.returncode}):\n{_tail(proc.log)}")
        marker.write_text(version)
    return env


# --------------------------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Finished:
    pid: int
    returncode: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    log: str


def _kill_group(proc: subprocess.Popen, term_grace_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it (a `dags test` waiting on HITL ignores SIGTERM)."""
    for sig, grace in ((signal.SIGTERM, term_grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure no stray member of its group survives it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    raise HarnessError(f"process group {proc.pid} survived SIGKILL")


def _run_bounded(
    cmd: Sequence[str],
    env: Mapping[str, str],
    timeout_s: float,
    log_path: Path,
    *,
    cancel: threading.Event | None = None,
    term_grace_s: float = 3.0,
    cwd: Path | None = None,
) -> _Finished:
    """Run cmd in its own session (process group), output to log_path, killed by group on timeout/cancel."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    timed_out = cancelled = False
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=cwd or env.get("AIRFLOW_HOME"),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while proc.poll() is None:
                if time.monotonic() - started > timeout_s:
                    timed_out = True
                    break
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                _kill_group(proc, term_grace_s)
            else:
                # the leader exited on its own; reap anything it left in its group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
    return _Finished(
        pid=proc.pid,
        returncode=proc.returncode,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_s=time.monotonic() - started,
        log=log_path.read_text(errors="replace"),
    )


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _python_json(env: Mapping[str, str], script: str, arg: Any, timeout_s: float = 120) -> Any:
    """Run a small python script in a child with env; it prints one JSON document as its last stdout line."""
    proc = subprocess.run(
        [PYTHON, "-c", script, json.dumps(arg)],
        env=dict(env),
        cwd=env.get("AIRFLOW_HOME"),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HarnessError(f"helper script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------------
# airflow dags test
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TaskInstanceRow:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    rendered_map_index: str | None

    @property
    def key(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


@dataclass
class DagTestResult:
    """What one `airflow dags test` did, read back from the metadata DB after the child process ended."""

    dag_id: str
    run_id: str | None
    state: str | None  # the dag run's state in the DB ("success", "failed", "running" if it was killed)
    task_instances: list[TaskInstanceRow]
    xcom_return_values: dict[str, Any]  # TaskInstanceRow.key -> JSON-decoded "return_value" XCom
    returncode: int | None  # 0 success, 1 when the run failed ("DagRun failed"), -9 when killed
    pid: int  # of the `airflow dags test` process, also its process group id
    timed_out: bool
    cancelled: bool
    duration_s: float
    log_path: Path
    log: str = field(repr=False)

    @property
    def task_states(self) -> dict[str, str | None]:
        """``task_id`` (or ``task_id[map_index]`` for mapped instances) -> state."""
        return {ti.key: ti.state for ti in self.task_instances}

    def mapped(self, task_id: str) -> list[TaskInstanceRow]:
        return sorted((ti for ti in self.task_instances if ti.task_id == task_id), key=lambda ti: ti.map_index)

    def summary(self, log_lines: int = 80) -> str:
        """For assertion messages: states plus the tail of the log."""
        states = "\n".join(f"  {k}: {v}" for k, v in sorted(self.task_states.items()))
        return (
            f"dag {self.dag_id} run {self.run_id}: state={self.state} returncode={self.returncode} "
            f"timed_out={self.timed_out} cancelled={self.cancelled} duration={self.duration_s:.1f}s "
            f"log={self.log_path}\n{states}\n--- log tail ---\n{_tail(self.log, log_lines)}"
        )


_RUN_READER = r"""
import json, os, sys
from datetime import datetime, timedelta, timezone
import sqlalchemy as sa

arg = json.loads(sys.argv[1])
engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
dag_run = sa.table("dag_run", sa.column("id", sa.Integer), sa.column("dag_id", sa.String),
                   sa.column("run_id", sa.String), sa.column("state", sa.String),
                   sa.column("run_after", sa.DateTime))
ti = sa.table("task_instance", sa.column("dag_id", sa.String), sa.column("run_id", sa.String),
              sa.column("task_id", sa.String), sa.column("map_index", sa.Integer), sa.column("state", sa.String),
              sa.column("try_number", sa.Integer), sa.column("rendered_map_index", sa.String))
xcom = sa.table("xcom", sa.column("dag_id", sa.String), sa.column("run_id", sa.String),
                sa.column("task_id", sa.String), sa.column("map_index", sa.Integer), sa.column("key", sa.String),
                sa.column("value", sa.JSON))
out = {"run_id": None, "state": None, "tis": [], "xcoms": []}
with engine.connect() as conn:
    q = sa.select(dag_run.c.run_id, dag_run.c.state, dag_run.c.run_after).where(dag_run.c.dag_id == arg["dag_id"])
    if arg["run_id"]:
        row = conn.execute(q.where(dag_run.c.run_id == arg["run_id"])).first()
    else:
        row = conn.execute(q.order_by(dag_run.c.id.desc()).limit(1)).first()
        if row is not None:
            after = row.run_after if row.run_after.tzinfo else row.run_after.replace(tzinfo=timezone.utc)
            if after < datetime.fromisoformat(arg["since"]) - timedelta(seconds=5):
                row = None  # an older run: this dags test never created its run
    if row is not None:
        out["run_id"], out["state"] = row.run_id, row.state
        for r in conn.execute(sa.select(ti).where(ti.c.dag_id == arg["dag_id"], ti.c.run_id == row.run_id)):
            out["tis"].append([r.task_id, r.map_index, r.state, r.try_number, r.rendered_map_index])
        for r in conn.execute(sa.select(xcom.c.task_id, xcom.c.map_index, xcom.c.value).where(
                xcom.c.dag_id == arg["dag_id"], xcom.c.run_id == row.run_id, xcom.c.key == "return_value")):
            out["xcoms"].append([r.task_id, r.map_index, r.value])
print(json.dumps(out, default=str))
"""

# `dags test` logs: Created dag run. [...] dagrun=<DagRun my_dag @ 2026-01-01 00:00:00+00:00: manual__..., state:...
_CREATED_RUN = re.compile(r"Created dag run\..*?<DagRun (?P<dag_id>\S+) @ .*?\+\d\d:\d\d: (?P<run_id>[^,\s]+), state:")


_ASSET_EVENTS = r"""
import json, os, sys
import sqlalchemy as sa

engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
asset = sa.table("asset", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("uri", sa.String))
event = sa.table("asset_event", sa.column("id", sa.Integer), sa.column("asset_id", sa.Integer),
                 sa.column("extra", sa.JSON), sa.column("source_dag_id", sa.String),
                 sa.column("source_run_id", sa.String))
with engine.connect() as conn:
    rows = conn.execute(sa.select(asset.c.name, asset.c.uri, event.c.extra, event.c.source_dag_id,
                                  event.c.source_run_id).join(asset, asset.c.id == event.c.asset_id)
                        .order_by(event.c.id))
    print(json.dumps([dict(r._mapping) for r in rows], default=str))
"""


def asset_events(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every asset event in the metadata DB, oldest first: name, uri, extra, source dag and run."""
    events = _python_json(env, _ASSET_EVENTS, {})
    for item in events:
        if isinstance(item["extra"], str):
            item["extra"] = json.loads(item["extra"])
    return events


def read_dag_run(env: Mapping[str, str], dag_id: str, run_id: str | None = None, since: datetime | None = None):
    """(run_id, state, task instances, return-value XComs) of run_id, or of the newest run of dag_id."""
    since = since or datetime(1970, 1, 1, tzinfo=UTC)
    data = _python_json(env, _RUN_READER, {"dag_id": dag_id, "run_id": run_id, "since": since.isoformat()})
    tis = [TaskInstanceRow(t, m, s, n, r) for t, m, s, n, r in data["tis"]]
    xcoms = {(t if m < 0 else f"{t}[{m}]"): v for t, m, v in data["xcoms"]}
    return data["run_id"], data["state"], sorted(tis, key=lambda ti: (ti.task_id, ti.map_index)), xcoms


def run_dag_test(
    env: Mapping[str, str],
    dag_id: str,
    conf: Mapping[str, Any] | None = None,
    logical_date: str | None = None,
    timeout_s: float = 300,
    *,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
    cancel: threading.Event | None = None,
    term_grace_s: float = 3.0,
) -> DagTestResult:
    """Run ``airflow dags test dag_id [logical_date] --conf ...`` in its own process group, bounded by timeout_s.

    Never raises for a failed or stuck DAG: the result says what happened (``timed_out``/``cancelled`` when
    the harness killed it; ``state`` is then usually "running"). The run is identified from the log line
    "Created dag run." (fallback: the newest run of the DAG created after this call started).
    """
    home = Path(env["AIRFLOW_HOME"])
    started = datetime.now(UTC)
    if log_path is None:
        log_path = home / "dag-test-logs" / f"{dag_id}-{started:%Y%m%dT%H%M%S%f}.log"
    cmd = [PYTHON, "-m", "airflow", "dags", "test", dag_id]
    if logical_date:
        cmd.append(logical_date)
    if conf is not None:
        cmd += ["--conf", json.dumps(conf)]
    cmd += list(extra_args)
    finished = _run_bounded(cmd, env, timeout_s, log_path, cancel=cancel, term_grace_s=term_grace_s)
    match = next((m for m in _CREATED_RUN.finditer(finished.log) if m["dag_id"] == dag_id), None)
    run_id, state, tis, xcoms = read_dag_run(env, dag_id, run_id=match["run_id"] if match else None, since=started)
    return DagTestResult(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        task_instances=tis,
        xcom_return_values=xcoms,
        returncode=finished.returncode,
        pid=finished.pid,
        timed_out=finished.timed_out,
        cancelled=finished.cancelled,
        duration_s=finished.duration_s,
        log_path=log_path,
        log=finished.log,
    )


# --------------------------------------------------------------------------------------------------------------
# DAG import check
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DagImportReport:
    dag_ids: list[str]
    import_errors: dict[str, str]  # file -> traceback
    task_counts: dict[str, int]


_DAGBAG_READER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

arg = json.loads(sys.argv[1])
bag = DagBag(dag_folder=arg["dag_folder"], safe_mode=arg["safe_mode"])
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "task_counts": {d: len(bag.dags[d].tasks) for d in bag.dag_ids},
}))
"""


def check_dag_imports(env: Mapping[str, str], dag_folder: Path | None = None, safe_mode: bool = False):
    """Parse a folder with Airflow 3.3's ``airflow.dag_processing.dagbag.DagBag`` in a child process.

    3.3's DagBag has no ``include_examples`` argument (passing it raises TypeError) and never loads the
    example DAGs. ``safe_mode=False`` parses every .py file, not only those mentioning "airflow" and "dag".
    """
    folder = str(Path(dag_folder or env["AIRFLOW__CORE__DAGS_FOLDER"]).resolve())
    data = _python_json(env, _DAGBAG_READER, {"dag_folder": folder, "safe_mode": safe_mode})
    return DagImportReport(**data)


# --------------------------------------------------------------------------------------------------------------
# api-server and the REST API
# --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api_request(
    base_url: str, method: str, path: str, body: Any = None, token: str | None = None, timeout_s: float = 30
) -> tuple[int, Any]:
    """One REST call (never through a proxy). Returns (status, decoded JSON or text); HTTP errors don't raise.

    With ``simple_auth_manager_all_admins`` no token is needed: the api-server adds an admin token to every
    request itself. Sending a bad ``Authorization`` header makes it fail (403), so send none or a real one.
    """
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def get_token(base_url: str) -> str:
    """A JWT for the REST API (only needed by clients that insist on sending one; all-admins mode only)."""
    status, body = api_request(base_url, "GET", "/auth/token")
    if status not in (200, 201):
        raise HarnessError(f"GET /auth/token -> {status}: {body}")
    return body["access_token"]


@dataclass
class ApiServer:
    base_url: str
    port: int
    pid: int
    log_path: Path
    startup_s: float


@contextlib.contextmanager
def api_server(
    env: Mapping[str, str],
    port: int | None = None,
    *,
    apps: str = "core",
    startup_timeout_s: float = 180,
    log_path: Path | None = None,
) -> Iterator[ApiServer]:
    """Start ``airflow api-server`` on 127.0.0.1 with env, wait until it answers, stop it by process group.

    ``apps="core"`` serves the public REST API and the UI; `dags test` does not need the execution API
    (it runs tasks in-process), pass ``apps="all"`` when an executor must reach it.
    """
    port = port or free_port()
    home = Path(env["AIRFLOW_HOME"])
    log_path = log_path or home / f"api-server-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    cmd = [PYTHON, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--apps", apps]
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            if proc.poll() is not None:
                raise HarnessError(f"api-server exited with {proc.returncode}:\n{_tail(log_path.read_text())}")
            if time.monotonic() - started > startup_timeout_s:
                log = _tail(log_path.read_text())
                raise HarnessError(f"api-server not answering after {startup_timeout_s}s:\n{log}")
            with contextlib.suppress(OSError):
                status, _ = api_request(base_url, "GET", "/api/v2/version", timeout_s=2)
                if status == 200:
                    break
            time.sleep(0.25)
        yield ApiServer(base_url, port, proc.pid, log_path, time.monotonic() - started)
    finally:
        if proc.poll() is None:
            _kill_group(proc, term_grace_s=10)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class HitlAnswer:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    subject: str
    body: str | None
    options: list[str]
    chosen_options: list[str]
    detail: dict[str, Any] = field(repr=False)  # the HITL detail as the API returned it before the answer
    response: dict[str, Any] = field(repr=False)  # the PATCH response


def _q(segment: str) -> str:
    """Quote one URL path segment (run ids contain ':' and '+')."""
    return urllib.parse.quote(segment, safe="")


def _parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def wait_for_hitl(
    base_url: str,
    dag_id: str,
    timeout_s: float,
    *,
    run_id: str | None = None,
    task_id: str | None = None,
    created_after: datetime | None = None,
    token: str | None = None,
    poll_s: float = 0.5,
    alive: threading.Event | None = None,
) -> dict[str, Any]:
    """Poll the HITL details until a task of dag_id (and run_id/task_id) is ``awaiting_input`` without answer.

    ``created_after`` ignores requests left over by older runs (a killed `dags test` leaves its task in
    awaiting_input forever). The newest matching request wins. ``alive`` (if given) stops the wait as soon as it
    is cleared, e.g. when the `dags test` that should produce the request has already ended.
    """
    query = {"response_received": "false", "order_by": "-created_at", "limit": "100"}
    if task_id:
        query["task_id"] = task_id
    run = _q(run_id) if run_id else "~"
    path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{run}/hitlDetails?{urllib.parse.urlencode(query)}"
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if alive is not None and not alive.is_set():
            raise HarnessError(f"the run ended before a HITL request of {dag_id} appeared; last answer: {last}")
        with contextlib.suppress(OSError):
            status, last = api_request(base_url, "GET", path, token=token)
            if status != 200:
                raise HarnessError(f"GET {path} -> {status}: {last}")
            for detail in last["hitl_details"]:
                ti = detail["task_instance"]
                if ti["state"] != "awaiting_input":
                    continue  # the request row is written before the task parks; answer only a parked task
                if created_after and _parse_ts(detail["created_at"]) < created_after:
                    continue
                return detail
        time.sleep(poll_s)
    raise HarnessError(f"no HITL request awaiting input for {dag_id} within {timeout_s}s; last answer: {last}")


def answer_hitl(
    base_url: str,
    dag_id: str,
    chosen_option: str | Sequence[str],
    timeout_s: float = 120,
    *,
    run_id: str | None = None,
    task_id: str | None = None,
    params_input: Mapping[str, Any] | None = None,
    created_after: datetime | None = None,
    token: str | None = None,
    alive: threading.Event | None = None,
) -> HitlAnswer:
    """Wait for a HITL task of dag_id awaiting input, then answer it with chosen_option through the REST API."""
    detail = wait_for_hitl(
        base_url,
        dag_id,
        timeout_s,
        run_id=run_id,
        task_id=task_id,
        created_after=created_after,
        token=token,
        alive=alive,
    )
    ti = detail["task_instance"]
    chosen = [chosen_option] if isinstance(chosen_option, str) else list(chosen_option)
    path = (
        f"/api/v2/dags/{_q(ti['dag_id'])}/dagRuns/{_q(ti['dag_run_id'])}"
        f"/taskInstances/{_q(ti['task_id'])}/{ti['map_index']}/hitlDetails"
    )
    status, response = api_request(
        base_url, "PATCH", path, {"chosen_options": chosen, "params_input": dict(params_input or {})}, token=token
    )
    if status != 200:
        raise HarnessError(f"PATCH {path} -> {status}: {response}")
    return HitlAnswer(
        dag_id=ti["dag_id"],
        run_id=ti["dag_run_id"],
        task_id=ti["task_id"],
        map_index=ti["map_index"],
        subject=detail["subject"],
        body=detail.get("body"),
        options=detail["options"],
        chosen_options=response["chosen_options"],
        detail=detail,
        response=response,
    )


def run_dag_test_with_hitl(
    env: Mapping[str, str],
    base_url: str,
    dag_id: str,
    answers: Sequence[str | Sequence[str]],
    conf: Mapping[str, Any] | None = None,
    logical_date: str | None = None,
    timeout_s: float = 300,
    *,
    answer_timeout_s: float | None = None,
) -> tuple[DagTestResult, list[HitlAnswer]]:
    """Run `dags test` in a background thread and answer its HITL requests in order, through base_url.

    If an answer cannot be given (no request appears, the PATCH fails), the run is killed and the error is
    raised together with the run's summary.
    """
    cancel, alive = threading.Event(), threading.Event()
    alive.set()
    started = datetime.now(UTC)

    def run() -> DagTestResult:
        try:
            return run_dag_test(env, dag_id, conf, logical_date, timeout_s, cancel=cancel)
        finally:
            alive.clear()

    given: list[HitlAnswer] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dags-test-{dag_id}") as pool:
        future = pool.submit(run)
        try:
            for answer in answers:
                given.append(
                    answer_hitl(
                        base_url,
                        dag_id,
                        answer,
                        answer_timeout_s or timeout_s,
                        run_id=given[0].run_id if given else None,
                        created_after=started,
                        alive=alive,
                    )
                )
        except BaseException as err:
            cancel.set()
            result = future.result()
            raise HarnessError(f"{err}\n{result.summary()}") from err
        return future.result(), given
