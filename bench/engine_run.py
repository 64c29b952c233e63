"""Run one `chroma_migrate.migrate.migrate()` in a fresh engine interpreter for the benchmark.

A separate process per strategy keeps the measurements apart: the engine reports its own
peak RSS as this process's lifetime peak, which would otherwise carry over from one
strategy (and from the benchmark's own work) to the next. Wall time is measured around
migrate() only. The phase log is kept even when migrate() raises, so a migration that ran
to the end but failed verification still reports where its time went.
Usage: engine_run.py REQUEST.json ANSWER.json
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import chroma_migrate.batches
import chroma_migrate.migrate as engine
import chroma_migrate.verification.verify
from chroma_migrate.errors import MigrationError, VerificationFailedError
from chroma_migrate.phases import PhaseLog
from chroma_migrate.worker_client import WorkerResult, run_worker

PHASE_LOGS: list[PhaseLog] = []
WORKER_CALLS: list[dict[str, Any]] = []
CLOCK = {"start": time.perf_counter()}  # reset when migrate() starts: worker times are relative to it


class RecordingPhaseLog(PhaseLog):
    """The engine's PhaseLog, remembered so its phases survive a failed migrate()."""

    def __init__(self, log=None, **kwargs: Any) -> None:
        super().__init__(log, **kwargs)
        PHASE_LOGS.append(self)


def recording_run_worker(version: str, op: str, args: dict[str, Any], **kwargs: Any) -> WorkerResult:
    """run_worker, plus a note of which phase started which child and what it cost (observe only)."""
    current = getattr(PHASE_LOGS[-1], "_current", None) if PHASE_LOGS else None
    call = {"phase": current.name if current else None, "version": version, "op": op,
            "start": time.perf_counter() - CLOCK["start"]}
    try:
        result = run_worker(version, op, args, **kwargs)
    finally:
        call["end"] = time.perf_counter() - CLOCK["start"]
        WORKER_CALLS.append(call)
    call["peak_rss_bytes"] = result.peak_rss_bytes
    return result


def main(request_path: str, answer_path: str) -> int:
    args = json.loads(Path(request_path).read_text())
    request = engine.MigrationRequest(source=Path(args["source"]), out=Path(args["out"]), target=args["target"],
                                      strategy=args["strategy"], batch_size=args["batch_size"],
                                      workers=args["workers"])
    # Observe only: the same classes and functions, each with one extra note taken.
    engine.PhaseLog = RecordingPhaseLog
    for module in (engine, chroma_migrate.batches, chroma_migrate.verification.verify):
        module.run_worker = recording_run_worker
    started = CLOCK["start"] = time.perf_counter()
    answer: dict[str, Any]
    try:
        result = engine.migrate(request, log=lambda message: print(f"    {args['strategy']}: {message}", flush=True))
        answer = {"ok": True, "seconds": time.perf_counter() - started, "result": result}
    except MigrationError as exc:
        answer = {"ok": False, "seconds": time.perf_counter() - started, "error_type": type(exc).__name__,
                  "error": exc.problem, "fix": exc.fix,
                  "phases": PHASE_LOGS[-1].to_list() if PHASE_LOGS else [],
                  "verification": exc.report if isinstance(exc, VerificationFailedError) else None}
    except Exception as exc:  # an engine bug: report it like a failure instead of losing the phases
        traceback.print_exc()
        answer = {"ok": False, "seconds": time.perf_counter() - started, "error_type": type(exc).__name__,
                  "error": f"engine crashed: {type(exc).__name__}: {exc}",
                  "phases": PHASE_LOGS[-1].to_list() if PHASE_LOGS else [], "verification": None}
    answer["worker_calls"] = WORKER_CALLS
    Path(answer_path).write_text(json.dumps(answer, default=str))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
