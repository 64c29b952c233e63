"""The typed values a run passes between its steps: the plan, its batch jobs and their outcomes,
and the ledger's stage names.

They stay JSON (TypedDicts over plain dicts, enums that are `str`), because the plan is written
once to the run's staging folder and every value crosses XCom or the DynamoDB ledger: one
serialisation, `json`, for all three. Code reads them through these names, so a typo in a key
is a type error, not a KeyError at night.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NotRequired, TypedDict


class BatchKind(StrEnum):
    """What a mapped batch task does: one id range of a rebuild, or the single upgrade copy or
    transplant (done and verified by the plan step; the batch keeps its place in the run)."""

    UPGRADE = "upgrade"
    TRANSPLANT = "transplant"
    REBUILD = "rebuild"

    @property
    def whole_database(self) -> bool:
        """One batch for the whole database, its target written by the engine's `migrate`."""
        return self is not BatchKind.REBUILD


class Exporter(StrEnum):
    """Who reads the source for a rebuild: the native reader in place, or the source's chromadb on a copy."""

    NATIVE = "native"
    RUNTIME = "runtime"


class Stage(StrEnum):
    """The ledger's stage names: what a step recorded as finished for (collection, run, stage, index)."""

    SOURCE = "source"
    ROLLBACK_SOURCE = "rollback-source"
    BACKUP = "backup"
    EXPORT = "export"
    LOAD = "load"
    VERIFY = "verify"
    PUBLISH_VERSION = "publish-version"
    PUBLISH = "publish"
    ROLLBACK = "rollback"
    ROLLBACK_EXPORT = "rollback-export"
    ROLLBACK_LOAD = "rollback-load"


class BatchRange(TypedDict):
    """Records with low <= id < high of one collection (None: unbounded); batches.Batch as JSON."""

    index: int
    low: str | None
    high: str | None


class BatchJob(TypedDict):
    """One mapped task's work, as the plan lists it."""

    index: int
    kind: str  # a BatchKind
    collection: str | None
    records: int
    batch: NotRequired[BatchRange]  # rebuild only
    dimension: NotRequired[int | None]  # rebuild only
    upgraded_in_plan: NotRequired[bool]  # upgrade only: `auto`'s plan already upgraded and verified the copy


class MigrationPlan(TypedDict):
    """What the plan step decided, reused as written by every later step and rerun."""

    format: int
    strategy: str  # a Strategy
    requested_strategy: str
    reason: str
    source_version: str
    written_by: list[str]
    target_version: str
    collections: list[str]
    records: dict[str, int]
    batch_size: int
    batches: list[BatchJob]
    target_specs: dict[str, dict[str, Any]]  # collection_spec.target_collection_spec per collection
    databases: list[dict[str, Any]]


class ExportOutcome(TypedDict):
    index: int
    kind: str
    count: int
    counts: NotRequired[dict[str, int]]  # upgrade: records per collection in the opened copy
    collection: NotRequired[str]
    files: NotRequired[list[str]]
    sha256: NotRequired[list[str]]
    collection_count: NotRequired[int]


class LoadOutcome(TypedDict):
    index: int
    kind: str
    count: int
    collection: NotRequired[str]
    collection_count_after: NotRequired[int]
