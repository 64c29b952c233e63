"""The CLI's progress bars on a terminal: one per phase, with what is done, the rate and the time left.

Only the CLI imports this (rich is in the engine's environment, not in the chromadb runtimes);
the engine reports through `progress.PhaseDisplay`, so --json and piped output never see it.
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Column
from rich.text import Text


def _amount(value: float, unit: str) -> str:
    return filesize.decimal(int(value)) if unit == "bytes" else f"{int(value):,}"


class _DoneColumn(ProgressColumn):
    """`12,000/50,000 records` (or bytes for a copy); nothing for a phase that counts nothing."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "records")
        if not task.fields.get("counts"):
            return Text("")
        done = _amount(task.completed, unit)
        total = f"/{_amount(task.total, unit)}" if task.total is not None else ""
        return Text(f"{done}{total}" + ("" if unit == "bytes" else f" {unit}"))


class _RateColumn(ProgressColumn):
    """Per second, over rich's recent samples (the unit is the count column's)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("")
        unit = task.fields.get("unit", "records")
        return Text(f"{filesize.decimal(int(speed))}/s" if unit == "bytes" else f"{speed:,.0f}/s")


class _TimeColumn(ProgressColumn):
    """The time left while the phase runs (the time so far when it has no total), the time it took once it ended."""

    def render(self, task: Task) -> Text:
        if task.stop_time is not None or task.finished:
            return Text(f"took {timedelta(seconds=int(task.finished_time or task.elapsed or 0))}")
        if task.total is None:
            return Text(str(timedelta(seconds=int(task.elapsed or 0))))
        left = task.time_remaining
        return Text(f"{timedelta(seconds=int(left)) if left is not None else '-:--:--'} left")


class PhaseBars:
    """A `progress.PhaseDisplay` drawn with rich on stderr; phase lines are printed above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        fixed = Column(no_wrap=True)
        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=25)),
            BarColumn(bar_width=None), _DoneColumn(table_column=fixed), _RateColumn(table_column=fixed),
            _TimeColumn(table_column=fixed), console=console or Console(stderr=True), redirect_stdout=False,
            expand=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> PhaseBars:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._progress.stop()

    def log(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)

    def start(self, name: str, total: int | None, unit: str) -> None:
        self._task = self._progress.add_task(name, total=total, unit=unit, counts=total is not None)

    def advance(self, amount: int) -> None:
        task = self._task
        if task is not None:
            self._progress.update(task, advance=amount, counts=True)

    def finish(self) -> None:
        """Stop the phase's clock; a phase without a total shows full once it ends."""
        task, self._task = self._task, None
        if task is None:
            return
        state = next(t for t in self._progress.tasks if t.id == task)
        if state.total is None:
            self._progress.update(task, total=state.completed or 1, completed=state.completed or 1)
        self._progress.stop_task(task)
        self._progress.refresh()
