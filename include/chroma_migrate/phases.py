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

from chroma_migrate.progress import Advance, PhaseDisplay


def own_peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    detail: dict = field(default_factory=dict)


class PhaseLog:
    def __init__(self, log=None, display: PhaseDisplay | None = None) -> None:
        self.phases: list[Phase] = []
        self._log = log or (lambda _message: None)
        self._current: Phase | None = None
        self._display = display

    @contextmanager
    def phase(self, name: str, *, total: int | None = None, unit: str = "records", **detail) -> Iterator[Phase]:
        """`total` and `unit` only size the display's bar; `detail` goes into the report."""
        current = Phase(name, detail=dict(detail))
        self._current = current
        self._log(f"[{name}] started")
        if self._display is not None:
            self._display.start(name, total, unit)
        started = time.perf_counter()
        try:
            yield current
        finally:
            if self._display is not None:
                self._display.finish()
            current.seconds = round(time.perf_counter() - started, 3)
            current.peak_rss_bytes = max(current.peak_rss_bytes, own_peak_rss_bytes())
            self.phases.append(current)
            self._current = None
            self._log(f"[{name}] {current.seconds:.2f}s, peak RSS {current.peak_rss_bytes / 2**20:.0f} MiB")

    @property
    def progress(self) -> Advance | None:
        """Where the current phase's work reports what it finished; None when nothing shows it
        (then no worker writes a progress file)."""
        return self._display.advance if self._display is not None else None

    def child_peak(self, rss_bytes: int) -> None:
        if self._current is not None:
            self._current.peak_rss_bytes = max(self._current.peak_rss_bytes, rss_bytes)

    def to_list(self) -> list[dict]:
        return [asdict(p) for p in self.phases]

    @property
    def total_seconds(self) -> float:
        return round(sum(p.seconds for p in self.phases), 3)
