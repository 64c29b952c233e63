"""Records done during a long step, carried from the process doing the work to whoever shows it.

The work runs in other interpreters (chromadb runtimes, which have no rich; native-reader pool
processes), so only numbers cross over, through a file: each finished piece of work appends
its record count as one line (append mode, so several processes can share a file), and a
thread of the parent reads what was appended since its last look, every half second, and
hands the sum to a callback. The file holds one short line per exchange file, and only the
new bytes are read, so memory stays bounded. Standard library only: the workers import it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

POLL_S = 0.5

Advance = Callable[[int], None]  # called with the records (or bytes) finished since the last call


class PhaseDisplay(Protocol):
    """What shows a phase's progress (the CLI's bars): one phase at a time, advanced from any thread."""

    def start(self, name: str, total: int | None, unit: str) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


def report_progress(progress_file: str | None, amount: int) -> None:
    """Worker side: note `amount` more records done. One write of a short line in append mode lands whole."""
    if progress_file and amount:
        with open(progress_file, "a") as handle:
            handle.write(f"{amount}\n")


class ProgressFileReader:
    """Parent side: the sum of the complete lines appended since the previous read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read_new(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:  # the worker has not finished anything yet
            return 0
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        return sum(int(line) for line in complete.split())


@contextlib.contextmanager
def watched_progress_file(advance: Advance | None, folder: Path | None = None,
                          interval_s: float = POLL_S) -> Iterator[str | None]:
    """A fresh progress file for workers to append to, polled into `advance` until the block ends
    (and once more then, so nothing reported is lost). Without `advance`, no file and None."""
    if advance is None:
        yield None
        return
    descriptor, name = tempfile.mkstemp(prefix="progress-", suffix=".txt", dir=folder)
    os.close(descriptor)
    reader, stop = ProgressFileReader(Path(name)), threading.Event()

    def poll() -> None:
        while not stop.wait(interval_s):
            if amount := reader.read_new():
                advance(amount)

    thread = threading.Thread(target=poll, name="progress-poll", daemon=True)
    thread.start()
    try:
        yield name
    finally:
        stop.set()
        thread.join()
        if amount := reader.read_new():
            advance(amount)
        Path(name).unlink(missing_ok=True)


def counting_copy(advance: Advance | None) -> Callable[[str, str], object]:
    """A `copy_function` for shutil.copytree that reports the bytes of each file it copied."""

    def copy(source: str, destination: str) -> object:
        copied = shutil.copy2(source, destination)
        if advance is not None:
            advance(os.path.getsize(destination))
        return copied
    return copy


class RecordCounter:
    """Records done of a total, added from any thread, with the rate since it started."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self._lock:
            self.done += amount

    def summary(self, unit: str = "records") -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        of = f" of {self.total:,}" if self.total is not None else ""
        return f"{self.done:,}{of} {unit} in {elapsed:.0f}s ({self.done / elapsed:,.0f} {unit}/s)"


@contextlib.contextmanager
def steady_log(log: Callable[[str], None], label: str, total: int | None, unit: str = "records",
               interval_s: float = 10.0) -> Iterator[RecordCounter]:
    """Log `label: done of total, rate` every `interval_s` while the block runs: a long Airflow task
    shows it is moving in its log. The counter's `add` is the progress callback to pass on."""
    counter, stop = RecordCounter(total), threading.Event()

    def tick() -> None:
        while not stop.wait(interval_s):
            log(f"{label}: {counter.summary(unit)}")

    thread = threading.Thread(target=tick, name="progress-log", daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        stop.set()
        thread.join()
