"""What `auto` means, decided in one place for the CLI and the DAG.

`auto`, the same in both drivers:
1. **noop** when the source already has the target's schema and the native reader reads every
   collection whole (the CLI still copies and verifies the files into OUT; the DAG ends the run).
2. **transplant** when the source has a newer schema than the target knows (an older chromadb
   cannot open it): the target's chromadb creates the collections and the engine writes the
   records and the vector files in the target's format, carrying each sound graph over
   (`transplant/`); if the target refuses the result or verification fails, **rebuild**.
3. **rebuild** when the source has the target's schema but does not read back whole.
4. Otherwise **upgrade**: the target opens a copy and applies its own migrations; when it
   cannot open the copy, or the upgraded copy fails verification against the source, the
   data is **transplanted** instead, and failing that **rebuilt**; the report says why.

A forced `upgrade` never falls back (and is refused before any work for a newer schema); a
forced `rebuild` is always a rebuild; a forced `transplant` falls back to a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from chroma_migrate.errors import MigrationError
from chroma_migrate.versions import ChromaVersion

if TYPE_CHECKING:  # the DAG file imports this module at parse time: no numpy/pyarrow there
    from chroma_migrate.inspection import DatabaseInfo


class Strategy(StrEnum):
    """How a migration writes the target: values are what reports, plans and XCom carry."""

    AUTO = "auto"
    NOOP = "noop"
    UPGRADE = "upgrade"
    TRANSPLANT = "transplant"
    REBUILD = "rebuild"


REQUESTABLE: tuple[str, ...] = (Strategy.AUTO.value, Strategy.UPGRADE.value, Strategy.TRANSPLANT.value,
                                Strategy.REBUILD.value)


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy to run first, the ones to run in turn if it fails to open or verify, and why."""

    first: Strategy
    fallbacks: tuple[Strategy, ...]
    reason: str

    @property
    def fallback(self) -> Strategy | None:
        return self.fallbacks[0] if self.fallbacks else None

    @property
    def order(self) -> list[Strategy]:
        return [self.first, *self.fallbacks]


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
            f"written anew in its format")


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
        return StrategyChoice(Strategy.REBUILD, (), downgrade or "rebuild requested")
    if requested is Strategy.TRANSPLANT:
        return StrategyChoice(Strategy.TRANSPLANT, (Strategy.REBUILD,), downgrade or "transplant requested")
    if requested is Strategy.UPGRADE:
        if downgrade:
            raise MigrationError(f"The upgrade strategy cannot work here: {downgrade}.",
                                 "Use the transplant, rebuild or auto strategy.")
        return StrategyChoice(Strategy.UPGRADE, (), "upgrade requested")
    if downgrade:
        return StrategyChoice(Strategy.TRANSPLANT, (Strategy.REBUILD,), downgrade)
    if info.signature == target.signature:
        readable, detail = reads_whole if reads_whole is not None else read_natively(info)
        if not readable:
            return StrategyChoice(Strategy.REBUILD, (), detail)
        return StrategyChoice(Strategy.NOOP, (Strategy.REBUILD,),
                              f"already in chromadb {target.version}'s format" + (f"; {detail}" if detail else ""))
    steps = ", ".join(pending_migrations(info.signature, target))
    return StrategyChoice(Strategy.UPGRADE, (Strategy.TRANSPLANT, Strategy.REBUILD),
                          f"chromadb {target.version} applies migrations {steps} to a copy")


def read_natively(info: DatabaseInfo) -> tuple[bool, str]:
    """Whether every collection reads back whole (every record has its vector), by the native reader."""
    from chroma_migrate.native import check_integrity  # heavy (numpy): not at the DAG file's parse time

    try:
        counts = check_integrity(info.path)
    except MigrationError as exc:
        return False, f"the native reader found the database inconsistent: {exc.problem}"
    wrong = [c.name for c in info.collections if counts.get(c.name) != c.records]
    if wrong:
        return False, f"the native reader counts differ for {', '.join(wrong)}"
    return True, "the native reader read every collection in place and it is consistent"


def fallback_reason(failed: Strategy, problem: str, instead: Strategy = Strategy.REBUILD) -> str:
    done = "transplanted" if instead is Strategy.TRANSPLANT else "rebuilt"
    return f"{failed} failed ({problem}); {done} from the source instead"
