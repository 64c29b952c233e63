"""Time and peak memory of each phase, for the report and the benchmark.

Peak memory is the larger of this process's resident set and the peak of the runtime
child processes the phase started (each reaped with wait4 for its own figure).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field


def own_peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    detail: dict = field(default_factory=dict)


class PhaseLog:
    def __init__(self, log=None) -> None:
        self.phases: list[Phase] = []
        self._log = log or (lambda _message: None)
        self._current: Phase | None = None

    @contextmanager
    def phase(self, name: str, **detail) -> Iterator[Phase]:
        current = Phase(name, detail=dict(detail))
        self._current = current
        self._log(f"[{name}] started")
        started = time.perf_counter()
        try:
            yield current
        finally:
            current.seconds = round(time.perf_counter() - started, 3)
            current.peak_rss_bytes = max(current.peak_rss_bytes, own_peak_rss_bytes())
            self.phases.append(current)
            self._current = None
            self._log(f"[{name}] {current.seconds:.2f}s, peak RSS {current.peak_rss_bytes / 2**20:.0f} MiB")

    def child_peak(self, rss_bytes: int) -> None:
        if self._current is not None:
            self._current.peak_rss_bytes = max(self._current.peak_rss_bytes, rss_bytes)

    def to_list(self) -> list[dict]:
        return [asdict(p) for p in self.phases]

    @property
    def total_seconds(self) -> float:
        return round(sum(p.seconds for p in self.phases), 3)
