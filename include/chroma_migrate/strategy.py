"""What `auto` means, decided in one place for the CLI and the DAG.

`auto`, the same in both drivers:
1. **noop** when the source already has the target's schema and the native reader reads every
   collection whole (the CLI still copies and verifies the files into OUT; the DAG ends the run).
2. **rebuild** when the source has a newer schema than the target knows (an older chromadb
   cannot open it), or has the target's schema but does not read back whole.
3. Otherwise **upgrade**: the target opens a copy and applies its own migrations; when it
   cannot open the copy, or the upgraded copy fails verification against the source, the
   data is **rebuilt** from the source instead, and the report says why.

A forced `upgrade` never falls back (and is refused before any work for a newer schema); a
forced `rebuild` is always a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import DatabaseInfo
from chroma_migrate.native import check_integrity
from chroma_migrate.versions import ChromaVersion


class Strategy(StrEnum):
    """How a migration writes the target: values are what reports, plans and XCom carry."""

    AUTO = "auto"
    NOOP = "noop"
    UPGRADE = "upgrade"
    REBUILD = "rebuild"


REQUESTABLE: tuple[str, ...] = (Strategy.AUTO.value, Strategy.UPGRADE.value, Strategy.REBUILD.value)


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy to run first, the one to run if it fails to open or verify, and why."""

    first: Strategy
    fallback: Strategy | None
    reason: str

    @property
    def order(self) -> list[Strategy]:
        return [self.first, *([self.fallback] if self.fallback else [])]


def requested_strategy(value: str) -> Strategy:
    """A strategy a user may ask for, or a MigrationError naming the ones there are."""
    if value not in REQUESTABLE:
        raise MigrationError(f"Unknown strategy {value!r}.", f"Use one of {', '.join(REQUESTABLE)}.")
    return Strategy(value)


def downgrade_reason(signature: dict[str, int], target: ChromaVersion) -> str | None:
    newer = [f"{name} migration {number}" for name, number in sorted(signature.items())
             if number > target.signature.get(name, 0)]
    if not newer:
        return None
    known = ", ".join(f"{name} up to {target.signature.get(name, 0)}" for name, _ in sorted(signature.items()))
    return (f"the database has {', '.join(newer)} but chromadb {target.version} knows {known}: "
            f"an older version cannot open a newer schema (1.0.20 panics on sysdb 10), so the data is "
            f"rebuilt in its format")


def pending_migrations(signature: dict[str, int], target: ChromaVersion) -> list[str]:
    return [f"{name} {signature.get(name, 0)}→{number}" for name, number in sorted(target.signature.items())
            if number > signature.get(name, 0)]


def choose_strategy(info: DatabaseInfo, target: ChromaVersion, requested: Strategy,
                    reads_whole: tuple[bool, str] | None = None) -> StrategyChoice:
    """The decision of the module docstring. `reads_whole` is the native reader's verdict on the
    source, (readable, detail); it is only needed for a source that already has the target's
    schema, and read then (`read_natively`) unless given."""
    downgrade = downgrade_reason(info.signature, target)
    if requested is Strategy.REBUILD:
        return StrategyChoice(Strategy.REBUILD, None, downgrade or "rebuild requested")
    if requested is Strategy.UPGRADE:
        if downgrade:
            raise MigrationError(f"The upgrade strategy cannot work here: {downgrade}.",
                                 "Use the rebuild or auto strategy.")
        return StrategyChoice(Strategy.UPGRADE, None, "upgrade requested")
    if downgrade:
        return StrategyChoice(Strategy.REBUILD, None, downgrade)
    if info.signature == target.signature:
        readable, detail = reads_whole if reads_whole is not None else read_natively(info)
        if not readable:
            return StrategyChoice(Strategy.REBUILD, None, detail)
        return StrategyChoice(Strategy.NOOP, Strategy.REBUILD,
                              f"already in chromadb {target.version}'s format" + (f"; {detail}" if detail else ""))
    steps = ", ".join(pending_migrations(info.signature, target))
    return StrategyChoice(Strategy.UPGRADE, Strategy.REBUILD,
                          f"chromadb {target.version} applies migrations {steps} to a copy")


def read_natively(info: DatabaseInfo) -> tuple[bool, str]:
    """Whether every collection reads back whole (every record has its vector), by the native reader."""
    try:
        counts = check_integrity(info.path)
    except MigrationError as exc:
        return False, f"the native reader found the database inconsistent: {exc.problem}"
    wrong = [c.name for c in info.collections if counts.get(c.name) != c.records]
    if wrong:
        return False, f"the native reader counts differ for {', '.join(wrong)}"
    return True, "the native reader read every collection in place and it is consistent"


def fallback_reason(failed: Strategy, problem: str) -> str:
    return f"{failed} failed ({problem}); rebuilt from the source instead"
