"""The base operator: one collection, the run state from XCom, config and AWS access."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from chroma_migrate.configuration import Environment
from chroma_migration.run_state import MigrationRun

if TYPE_CHECKING:  # the hook pulls in boto3: imported when a task first needs it, never at parse time
    from chroma_migration.hooks import ChromaSnapshotHook


class ChromaMigrationOperator(BaseOperator):
    """Base of every step after the run started: `run` is the XCom of the resolve task.

    Subclasses implement `run_step`, which calls one engine step; the engine's MigrationError
    fails the task with a message that names the problem and the fix.

    :param collection: the configured collection this run works on.
    :param run: the run state, the resolve task's XCom (templated).
    """

    template_fields: Sequence[str] = ("run",)
    ui_color = "#dff0f7"

    def __init__(self, *, collection: str, run: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not collection:
            raise ValueError("collection is required")
        self.collection = collection
        self.run = run

    @cached_property
    def state(self) -> MigrationRun:
        if not isinstance(self.run, dict):
            raise ValueError(f"{self.task_id}: run state missing; it comes from the resolve task's XCom")
        return MigrationRun.from_xcom(self.run)

    @cached_property
    def environment(self) -> Environment:
        return self.state.environment

    @cached_property
    def hook(self) -> ChromaSnapshotHook:
        from chroma_migration.hooks import ChromaSnapshotHook

        return ChromaSnapshotHook(self.environment, self.collection)

    def execute(self, context: Any) -> Any:
        return self.run_step(context)

    def run_step(self, context: Any) -> Any:
        raise NotImplementedError
