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
from pathlib import Path
from typing import Any

import chroma_migrate.migrate as engine
from chroma_migrate.errors import MigrationError, VerificationFailedError
from chroma_migrate.phases import PhaseLog

PHASE_LOGS: list[PhaseLog] = []


class RecordingPhaseLog(PhaseLog):
    """The engine's PhaseLog, remembered so its phases survive a failed migrate()."""

    def __init__(self, log=None) -> None:
        super().__init__(log)
        PHASE_LOGS.append(self)


def main(request_path: str, answer_path: str) -> int:
    args = json.loads(Path(request_path).read_text())
    request = engine.MigrationRequest(source=Path(args["source"]), out=Path(args["out"]), target=args["target"],
                                      strategy=args["strategy"], batch_size=args["batch_size"],
                                      workers=args["workers"])
    engine.PhaseLog = RecordingPhaseLog  # observe only: same class, one extra list append
    started = time.perf_counter()
    answer: dict[str, Any]
    try:
        result = engine.migrate(request, log=lambda message: print(f"    {args['strategy']}: {message}", flush=True))
        answer = {"ok": True, "seconds": time.perf_counter() - started, "result": result}
    except MigrationError as exc:
        answer = {"ok": False, "seconds": time.perf_counter() - started, "error_type": type(exc).__name__,
                  "error": exc.problem, "fix": exc.fix,
                  "phases": PHASE_LOGS[-1].to_list() if PHASE_LOGS else [],
                  "verification": exc.report if isinstance(exc, VerificationFailedError) else None}
    Path(answer_path).write_text(json.dumps(answer, default=str))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
