"""Entry point of a runtime child process: read a request, run one op, write a response."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

PROTOCOL_VERSION = 1
PARENT_ENV = "CHROMA_MIGRATE_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its caller dies.

    The worker runs in a session of its own (so a timeout can kill its group), which also
    means a SIGKILLed Airflow task would leave it writing to staging beside the retry's new
    worker. The parent-death signal closes that gap; the pid check covers a caller that died
    before the signal was armed.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the timeout remains the only bound
        return
    expected = os.environ.get(PARENT_ENV)
    if expected and os.getppid() != int(expected):
        os._exit(70)


def _operations():
    from chroma_migrate.worker import read_ops, reader_ops, text_ops, transplant_ops, write_ops

    return {
        "facts": read_ops.facts,
        "describe": read_ops.describe,
        "export": read_ops.export,
        "query": read_ops.query,
        "dump": read_ops.dump,
        "load": write_ops.load,
        "create_collections": write_ops.create_collections,
        "delete_collections": write_ops.delete_collections,
        "build_fixture": write_ops.build_fixture,
        "text_queries": text_ops.text_queries,
        "sample_queries": text_ops.sample_queries,
        "smoke_read": reader_ops.smoke_read,
        "seed_write_log": transplant_ops.seed_write_log,
        "write_index_metadata": transplant_ops.write_index_metadata,
        "prove_readable": transplant_ops.prove_readable,
        "prove_reopened": transplant_ops.prove_reopened,
    }


def main(request_path: str, response_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    try:
        if request.get("protocol") != PROTOCOL_VERSION:
            raise ValueError(f"worker speaks protocol {PROTOCOL_VERSION}, request has {request.get('protocol')}")
        operation = _operations()[request["op"]]
        response = {"ok": True, "result": operation(**request["args"])}
    except BaseException as exc:  # a pyo3 PanicException is a BaseException
        traceback.print_exc()
        response = {"ok": False, "error_type": type(exc).__name__, "error": str(exc)[:4000]}
    Path(response_path).write_text(json.dumps(response))
    return 0 if response["ok"] else 3


if __name__ == "__main__":
    die_with_parent()
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
