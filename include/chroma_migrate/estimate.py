"""How long a migration will take, from the throughput the engine measured on earlier runs.

Every finished phase (a CLI migration's, a DAG batch's) appends one line to a throughput file
(`$CHROMA_MIGRATE_STATS`, default ~/.cache/chroma-migrate/throughput.jsonl; shared storage
such as EFS in a deployment, so prod's approval can show the dev run of the same collection).
Work is counted in record-dimensions (records × vector dimension): copying, reading and
indexing a record all grow with its vector. An estimate takes, per phase, the median rate of
the last runs of the same phase; until a phase has been measured it uses a conservative
default below what DESIGN.md measured on 2 cores, so a first estimate errs long, not short.
"""

from __future__ import annotations

import fcntl
import json
import os
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATS_ENV = "CHROMA_MIGRATE_STATS"
RECENT = 10  # runs of a phase the median is taken over
MIN_SECONDS = 0.05
# Runs smaller than this (50,000 × 384 is 19.2 million) are mostly process start-up and say
# nothing about a rate; a test suite's small databases must not skew the estimate of a real one.
MIN_UNITS = 1_000_000

# Record-dimensions per second, somewhat below what `make bench` measured at 50,000 × 384 on
# 2 cores (copy 270 M, open 6 M, export 6 M, load 290 k, verify 4–7 M), so that an estimate
# that has no measurement yet errs long; and seconds each phase costs whatever its size
# (child processes start, files open).
DEFAULT_RATES = {
    "upgrade: copy": 50_000_000.0,
    "upgrade: open with target": 10_000_000.0,
    "rebuild: export": 8_000_000.0,
    "rebuild: load": 250_000.0,
    "transplant: write": 3_000_000.0,
    "verify": 6_000_000.0,
    "readers": 5_000_000.0,
}
OVERHEAD_S = {"upgrade: copy": 0.2, "upgrade: open with target": 1.5, "rebuild: export": 1.0, "rebuild: load": 1.5,
              "transplant: write": 4.0, "verify": 1.0, "readers": 2.0}
PHASES_OF = {
    "upgrade": ("upgrade: copy", "upgrade: open with target", "verify"),
    "noop": ("upgrade: copy", "upgrade: open with target", "verify"),
    "rebuild": ("rebuild: export", "rebuild: load", "verify"),
    "transplant": ("transplant: write", "verify"),  # the target's proof runs beside verification
}


def stats_file() -> Path:
    return Path(os.environ.get(STATS_ENV) or Path.home() / ".cache" / "chroma-migrate" / "throughput.jsonl")


def work_units(collections: Iterable[Any]) -> int:
    """Record-dimensions of the collections (`records`, `dimension`; one without vectors counts
    its records)."""
    return sum(c.records * max(c.dimension or 1, 1) for c in collections)


@dataclass(frozen=True)
class PhaseMeasure:
    """One measured phase (or one DAG batch of it)."""

    phase: str
    units: int
    seconds: float
    strategy: str = ""
    collection: str = ""
    env: str = ""
    run_key: str = ""
    at: float = field(default_factory=time.time)


def record(measures: Iterable[PhaseMeasure], path: Path | None = None) -> None:
    """Append the measures; a lock keeps concurrent writers' lines whole (EFS included)."""
    lines = "".join(json.dumps(asdict(m)) + "\n" for m in measures if m.phase in DEFAULT_RATES)
    if not lines:
        return
    path = path or stats_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(lines)
    except OSError:  # an estimate is advice: a read-only home must not fail a migration
        return


def _measures(path: Path) -> list[PhaseMeasure]:
    if not path.is_file():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(PhaseMeasure(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line from another format or cut short: skip it, it is only advice
    return found


def rate_of(phase: str, measures: list[PhaseMeasure]) -> tuple[float, int]:
    """(record-dimensions per second, runs it is the median of); the default when none measured."""
    rates = [m.units / max(m.seconds - OVERHEAD_S[phase], MIN_SECONDS) for m in measures
             if m.phase == phase and m.units >= MIN_UNITS and m.seconds >= MIN_SECONDS]
    recent = rates[-RECENT:]
    return (statistics.median(recent), len(recent)) if recent else (DEFAULT_RATES[phase], 0)


def estimate(strategy: str, units: int, path: Path | None = None) -> dict[str, Any]:
    """Seconds per phase of a `strategy` run over `units` record-dimensions, and what each rests on."""
    measures = _measures(path or stats_file())
    phases = []
    for phase in PHASES_OF.get(strategy, ()):
        rate, runs = rate_of(phase, measures)
        phases.append({"phase": phase, "seconds": round(OVERHEAD_S[phase] + units / rate, 1),
                       "basis": f"median of {runs} measured" if runs else "conservative default"})
    return {"strategy": strategy, "units": units, "phases": phases,
            "total_seconds": round(sum(p["seconds"] for p in phases), 1)}


def last_run(collection: str, env: str, path: Path | None = None) -> dict[str, Any] | None:
    """The newest measured run of `collection` in `env` (a DAG run): its phases' actual seconds."""
    measures = [m for m in _measures(path or stats_file()) if m.collection == collection and m.env == env]
    if not measures:
        return None
    run_key = measures[-1].run_key
    totals: dict[str, float] = {}
    for m in measures:
        if m.run_key == run_key:
            totals[m.phase] = round(totals.get(m.phase, 0.0) + m.seconds, 1)
    return {"run_key": run_key, "env": env, "phases": totals}


def render_estimate(found: Mapping[str, Any]) -> str:
    parts = ", ".join(f"{p['phase']} {_duration(p['seconds'])}" for p in found["phases"])
    bases = {p["basis"] for p in found["phases"]}
    return f"estimated {_duration(found['total_seconds'])} ({parts}; {', '.join(sorted(bases))})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
