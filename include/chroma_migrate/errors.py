"""Errors the CLI turns into exit codes: every message names the problem and the fix."""

from __future__ import annotations


class MigrationError(Exception):
    """Bad input or a failed step (exit 2). Nothing live was modified when this is raised."""

    exit_code = 2

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())

    def to_dict(self) -> dict[str, str]:
        return {"error": self.problem, "fix": self.fix}


class UnsupportedVersionError(MigrationError):
    """A chromadb version this package has no runtime file for."""


class NotAChromaDatabaseError(MigrationError):
    """PATH is missing, unreadable, or not a persistent ChromaDB directory."""


class UnrepresentableDataError(MigrationError):
    """The target version cannot hold some of the source data (e.g. list metadata before 1.5)."""


class WorkerFailedError(MigrationError):
    """A runtime child process raised, crashed or was killed; the caller keeps running."""

    def __init__(self, problem: str, fix: str = "", *, signal_name: str | None = None,
                 returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(problem, fix)
        self.signal_name = signal_name
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class VerificationFailedError(MigrationError):
    """Source and target differ (exit 1); carries the full report."""

    exit_code = 1

    def __init__(self, problem: str, report: dict) -> None:
        super().__init__(problem, "Nothing was written to OUT; inspect the report for what differs.")
        self.report = report
