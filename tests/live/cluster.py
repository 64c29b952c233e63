"""Start and stop a real Airflow 3.3 the way production runs it, on 127.0.0.1, for one test.

api-server (REST API, UI and the execution API the workers call), scheduler, dag-processor,
triggerer and Celery workers, each a separate process in its own process group, on a
PostgreSQL metadata database with Redis as the Celery broker. Everything is stopped by
process id (its group, and any child that left the group, such as a chromadb runtime),
and `stop()` reports every process that survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.airflow_harness.harness import PYTHON, HarnessError, _tail, api_request, free_port
from tests.live.identity import HOSTNAME_ENV

AIRFLOW = [PYTHON, "-m", "airflow"]
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log_path.read_text(errors="replace"), lines) if self.log_path.exists() else ""


def production_env(env: Mapping[str, str], database_url: str, broker_url: str, api_port: int) -> dict[str, str]:
    """The executor, metadata database, broker and execution API settings every component shares."""
    result_backend = "db+" + database_url.replace("+psycopg2", "")
    return {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # production's default: unpausing is a decision
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.live.identity.hostname",
    }


def _children(pid: int) -> list[int]:
    """Every live descendant of pid (read from /proc), including those that started a session of their own."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0] == "Z":
            return False  # a zombie has exited; its parent (gone too) just never reaped it
    return True


@dataclass
class Cluster:
    env: dict[str, str]
    api_port: int
    workers: Sequence[str]
    concurrency: int
    components: list[Component] = field(default_factory=list)
    seen_pids: set[int] = field(default_factory=set)
    survivors: list[int] = field(default_factory=list)  # filled by stop(): pids still alive afterwards

    @property
    def home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, args: Sequence[str], extra_env: Mapping[str, str] | None = None) -> Component:
        log_path = self.home / "components" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [*AIRFLOW, *args], env={**self.env, **(extra_env or {})}, cwd=self.home, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        component = Component(name, process, log_path)
        self.components.append(component)
        self.seen_pids.add(process.pid)
        return component

    def start(self, startup_timeout_s: float = 300) -> None:
        deadline = time.monotonic() + startup_timeout_s
        self._spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                   "--workers", "1", "--apps", "all"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("triggerer", ["triggerer", "--skip-serve-logs"])
        for name in self.workers:
            # Each worker its own Celery node name and, through the hostname callable, its own host name.
            self._spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                               str(self.concurrency), "--skip-serve-logs"], {HOSTNAME_ENV: name})
        self._wait(deadline, "the api-server to answer", self._api_answers)
        self._wait(deadline, "scheduler, triggerer and dag-processor heartbeats", self._jobs_healthy)
        self._wait(deadline, f"Celery workers {', '.join(self.workers)} to answer a ping", self._workers_answer)

    def _wait(self, deadline: float, what: str, ready) -> None:
        while not ready():
            self.assert_running()
            if time.monotonic() > deadline:
                raise HarnessError(f"Timed out waiting for {what}.\n{self.log_tails()}")
            time.sleep(1)

    def _api_answers(self) -> bool:
        with contextlib.suppress(OSError):
            return api_request(self.base_url, "GET", "/api/v2/version", timeout_s=5)[0] == 200
        return False

    def _jobs_healthy(self) -> bool:
        with contextlib.suppress(OSError):
            status, body = api_request(self.base_url, "GET", "/api/v2/monitor/health", timeout_s=10)
            if status == 200 and isinstance(body, dict):
                return all((body.get(job) or {}).get("status") == "healthy"
                           for job in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
        return False

    def _workers_answer(self) -> bool:
        script = (f"import json\nfrom {CELERY_APP.rsplit('.', 1)[0]} import app\n"
                  "print(json.dumps([name for reply in app.control.ping(timeout=3) for name in reply]))")
        try:
            proc = subprocess.run([PYTHON, "-c", script], env=self.env, cwd=self.home, capture_output=True,
                                  text=True, timeout=120)
            nodes = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            return False
        return all(any(node.startswith(f"{name}@") for node in nodes) for name in self.workers)

    def assert_running(self) -> None:
        """Fail with the component logs as soon as any component has exited."""
        dead = [c for c in self.components if not c.alive()]
        if dead:
            names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in dead)
            raise HarnessError(f"Airflow component(s) exited: {names}\n{self.log_tails()}")

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {c.name}: {c.log_path} ---\n{c.tail(lines)}" for c in self.components)

    def stop(self, term_grace_s: float = 20) -> list[int]:
        """Stop every component by process group, then any descendant left behind; return pids still alive."""
        descendants = {child for component in self.components for child in _children(component.process.pid)}
        self.seen_pids.update(descendants)
        for component in self.components:  # SIGTERM all first: warm shutdowns run side by side
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + term_grace_s
        for component in self.components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for component in self.components:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=10)
        for pid in descendants:  # e.g. a chromadb child, which runs in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        self.survivors = sorted(pid for pid in self.seen_pids if _pid_alive(pid))
        return self.survivors


@contextlib.contextmanager
def airflow_cluster(env: Mapping[str, str], database_url: str, broker_url: str, *,
                    workers: Sequence[str] = ("live-worker-a", "live-worker-b"), concurrency: int = 1,
                    startup_timeout_s: float = 300) -> Iterator[Cluster]:
    """Migrate the metadata database, start every component, yield; stop everything by pid on the way out.

    The caller checks `cluster.survivors` afterwards (raising here would hide the test's own failure).
    """
    api_port = free_port()
    cluster = Cluster(production_env(env, database_url, broker_url, api_port), api_port, workers, concurrency)
    migrate = subprocess.run([*AIRFLOW, "db", "migrate"], env=cluster.env, cwd=cluster.home, capture_output=True,
                             text=True, timeout=600)
    if migrate.returncode != 0:
        raise HarnessError(f"airflow db migrate failed:\n{_tail(migrate.stdout + migrate.stderr)}")
    try:
        cluster.start(startup_timeout_s)
        yield cluster
    finally:
        cluster.stop()
