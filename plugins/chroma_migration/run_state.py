"""What one DAG run decided at its start, passed to every later task through XCom.

Everything is keyed by the Airflow run id, never by the wall clock: a retried, cleared or
backfilled run finds the same staging folder, ledger entries and lock owner. The environment
is resolved from the configuration file once, at the start, and carried with the run: an edit
to the file mid-run changes the next run, never the rest of this one.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from chroma_migrate.configuration import Environment

if TYPE_CHECKING:  # pipeline pulls in the engine (numpy, pyarrow): imported in tasks, not when the DAG parses
    from chroma_migrate.pipeline import RunPaths

OWNER_NAMESPACE = uuid.UUID("6c1f4f0e-3d8a-4a53-9d7e-2b8f6a1c9e55")


@dataclass(frozen=True)
class MigrationRun:
    collection: str
    env: str
    run_id: str
    run_key: str
    owner: str
    source_version_id: str
    target_version: str
    strategy: str
    batch_size: int
    dry_run: bool
    resolved_environment: dict[str, Any]
    # Declared readers the operator accepts breaking, by name (Param allow_breaking_readers).
    allow_breaking_readers: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *, collection: str, environment: Environment, run_id: str, source_version_id: str,
              target_version: str, strategy: str, batch_size: int, dry_run: bool,
              allow_breaking_readers: list[str] | None = None) -> MigrationRun:
        from chroma_migrate.pipeline import run_key_for

        return cls(collection, environment.name, run_id, run_key_for(run_id), lock_owner_for(run_id),
                   source_version_id, target_version, strategy, batch_size, dry_run, environment.to_dict(),
                   list(allow_breaking_readers or []))

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> MigrationRun:
        return cls(**value)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @cached_property
    def environment(self) -> Environment:
        return Environment.from_dict(self.resolved_environment)

    @property
    def paths(self) -> RunPaths:
        from chroma_migrate.pipeline import RunPaths

        return RunPaths.for_run(self.environment.staging_root, self.collection, self.run_key)


def lock_owner_for(run_id: str) -> str:
    """The lock owner id of a run: a UUID string like the compactor's, the same on every retry."""
    return str(uuid.uuid5(OWNER_NAMESPACE, run_id))
