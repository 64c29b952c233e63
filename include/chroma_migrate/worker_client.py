"""Run one operation in a chromadb runtime as a child process, and survive whatever it does.

The interface is versioned and file-based: a request JSON in, a response JSON out, bulk
data as files. A Rust panic, a signal or an exception in the child comes back as a
`WorkerFailedError` with the signal name and the tail of stderr; the caller keeps running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.errors import WorkerFailedError
from chroma_migrate.progress import Advance, watched_progress_file
from chroma_migrate.runtimes import Runtime, ensure_runtime

PROTOCOL_VERSION = 1
INCLUDE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT_S = float(os.environ.get("CHROMA_MIGRATE_WORKER_TIMEOUT", 4 * 3600))


@dataclass
class WorkerResult:
    """What the child answered plus what it cost."""

    data: dict[str, Any]
    seconds: float
    peak_rss_bytes: int


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(INCLUDE_DIR)
    env["ANONYMIZED_TELEMETRY"] = "False"
    env["PYTHONUNBUFFERED"] = "1"
    # The default embedding function would try to download a model; keep any hub offline.
    env["HF_HUB_OFFLINE"] = "1"
    env["CHROMA_MIGRATE_PARENT_PID"] = str(os.getpid())  # the worker dies with us (worker/__main__.py)
    return env


def _describe_exit(status: int) -> tuple[int | None, str | None]:
    if os.WIFSIGNALED(status):
        return None, signal.Signals(os.WTERMSIG(status)).name
    return os.WEXITSTATUS(status), None


def run_worker(version: str, op: str, args: dict[str, Any], *, timeout_s: float | None = None,
               runtime: Runtime | None = None, progress: Advance | None = None) -> WorkerResult:
    """Run `op` with `args` in chromadb `version`'s runtime and return its answer.

    With `progress`, the op (one that takes `progress_file`: load, export) appends what it
    finishes to a file this process polls into `progress` while the child runs.
    """
    runtime = runtime or ensure_runtime(version, log=lambda _m: None)
    with (tempfile.TemporaryDirectory(prefix="chroma-migrate-worker-") as scratch,
          watched_progress_file(progress, Path(scratch)) as progress_file):
        request_path = Path(scratch) / "request.json"
        response_path = Path(scratch) / "response.json"
        stderr_path = Path(scratch) / "stderr.log"
        if progress_file:
            args = {**args, "progress_file": progress_file}
        request_path.write_text(json.dumps({"protocol": PROTOCOL_VERSION, "op": op, "args": args}))
        started = time.perf_counter()
        with open(stderr_path, "wb") as stderr_file:
            process = subprocess.Popen(
                [str(runtime.python), "-m", "chroma_migrate.worker", str(request_path), str(response_path)],
                stdin=subprocess.DEVNULL, stdout=stderr_file, stderr=stderr_file, env=_child_env(),
                start_new_session=True,
            )
            status, rusage = _wait_with_timeout(process, timeout_s or DEFAULT_TIMEOUT_S)
        seconds = time.perf_counter() - started
        returncode, signal_name = _describe_exit(status)
        stderr_tail = stderr_path.read_text(errors="replace")[-4000:]
        response = json.loads(response_path.read_text()) if response_path.is_file() else None
        if returncode == 0 and response and response.get("ok"):
            return WorkerResult(response["result"], seconds, rusage.ru_maxrss * 1024)
        raise _failure(version, op, returncode, signal_name, response, stderr_tail)


def _wait_with_timeout(process: subprocess.Popen, timeout_s: float):
    """Reap the child with wait4 (for its own peak RSS); kill its group on timeout."""
    timer = threading.Timer(timeout_s, lambda: _kill_group(process.pid))
    timer.start()
    try:
        _pid, status, rusage = os.wait4(process.pid, 0)
    except BaseException:
        # Interrupted (Ctrl-C, task killed): the child runs in its own session, so take it down too.
        _kill_group(process.pid)
        os.waitpid(process.pid, 0)
        raise
    finally:
        timer.cancel()
    process.returncode = status
    return status, rusage


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _failure(version: str, op: str, returncode: int | None, signal_name: str | None,
             response: dict | None, stderr_tail: str) -> WorkerFailedError:
    if response and not response.get("ok"):
        kind, message = response.get("error_type", "Error"), response.get("error", "")
        problem = f"chromadb {version} failed during {op}: {kind}: {message}"
    elif signal_name:
        problem = f"chromadb {version} was killed by {signal_name} during {op}."
    else:
        panic = next((line for line in stderr_tail.splitlines() if "panic" in line.lower()), "")
        last = panic or (stderr_tail.strip().splitlines() or ["no output"])[-1]
        problem = f"chromadb {version} exited with code {returncode} during {op}: {last.strip()}"
    return WorkerFailedError(
        problem,
        "The source was not modified. See the worker's stderr above for details.",
        signal_name=signal_name, returncode=returncode, stderr_tail=stderr_tail,
    )
