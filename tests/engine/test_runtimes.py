"""Each runtime is a real chromadb of its version, and the facts in its file hold."""

from __future__ import annotations

import json

import pytest

from chroma_migrate.runtimes import list_runtimes
from chroma_migrate.versions import shipped_versions
from chroma_migrate.worker_client import run_worker
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", shipped_versions(), ids=lambda v: v.version)
def test_runtime_facts_match_its_file(version):
    facts = run_worker(version.version, "facts", {}).data
    assert facts["version"] == version.version
    assert facts["signature"] == version.signature
    assert facts["max_batch_size"] == version.max_batch_size
    assert {(d, int(n)): (name, md5) for d, n, name, md5 in facts["migration_files"]} == version.migration_files


def test_runtime_list_and_ensure_are_idempotent():
    listed = json.loads(run_cli("runtime", "list", "--json", check=True).stdout)["runtimes"]
    assert [r["version"] for r in listed] == [r["version"] for r in list_runtimes()]
    assert all(r["built"] for r in listed)
    ensured = json.loads(run_cli("runtime", "ensure", "1.0.20", "--json", check=True).stdout)
    assert ensured["runtimes"][0]["python"].endswith("chromadb-1.0.20/bin/python")


def test_a_rust_panic_in_the_child_is_a_reported_failure(copy_of):
    """1.0.20 panics on a 1.5.9 database (docs/DESIGN.md); the caller gets the panic as an error."""
    from chroma_migrate.errors import WorkerFailedError

    db = copy_of("1.5.9")
    with pytest.raises(WorkerFailedError) as caught:
        run_worker("1.0.20", "describe", {"path": str(db)})
    assert "chromadb 1.0.20 failed during describe" in caught.value.problem
    assert "Panic" in caught.value.problem or "out of range" in caught.value.problem


def test_a_killed_child_reports_its_signal(tmp_path):
    from chroma_migrate.errors import WorkerFailedError

    with pytest.raises(WorkerFailedError) as caught:
        run_worker("1.5.9", "facts", {}, timeout_s=0.2)
    assert caught.value.signal_name == "SIGKILL"
    assert "killed by SIGKILL" in caught.value.problem


def test_a_worker_dies_with_its_killed_caller(tmp_path):
    """A SIGKILLed Airflow task must not leave its chromadb worker writing beside the retry's."""
    import shutil
    import subprocess
    import sys
    import time
    from pathlib import Path

    caller = (
        "import os, signal, threading, time\n"
        "from chroma_migrate.worker_client import run_worker\n"
        "def kill_me_once_the_worker_runs():\n"
        "    me = os.getpid()\n"
        "    while True:\n"
        "        for kid in open(f'/proc/{me}/task/{me}/children').read().split():\n"
        "            argv = open(f'/proc/{kid}/cmdline').read().split(chr(0))\n"
        "            if 'chroma_migrate.worker' in argv:\n"
        "                print(argv[4], kid, flush=True)\n"
        "                os.kill(me, signal.SIGKILL)\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=kill_me_once_the_worker_runs, daemon=True).start()\n"
        "run_worker('1.5.9', 'facts', {})\n"
    )
    done = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    response_path, worker_pid = done.stdout.split()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not Path(f"/proc/{worker_pid}").exists(), "the worker outlived its caller"
        assert not Path(response_path).exists(), "the worker went on and answered a caller that was gone"
    finally:
        shutil.rmtree(Path(response_path).parent, ignore_errors=True)
