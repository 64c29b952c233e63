"""Errors the CLI turns into exit codes: every message names the problem and the fix."""

from __future__ import annotations


class MigrationError(Exception):
    """Bad input or a failed step (exit 2). Nothing live was modified when this is raised."""

    exit_code = 2
    kind: str | None = None  # what is wrong, as a stable code (the native reader's kinds), when known
    file: str | None = None  # the file it is wrong in, when one is

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())

    def tagged(self, kind: str, file: object) -> MigrationError:
        """The same error, naming its kind and file in `to_dict` (for errors raised outside the native reader)."""
        self.kind, self.file = kind, str(file)
        return self

    def to_dict(self) -> dict[str, str]:
        found = {"error": self.problem, "fix": self.fix}
        if self.kind and self.file:
            found.update(kind=self.kind, file=self.file)
        return found


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


class TransplantFailedError(MigrationError):
    """The native writer's result was refused by its own proof (the target's chromadb reading it back)
    or the writer could not finish; `auto` and a requested transplant then rebuild through chromadb."""
