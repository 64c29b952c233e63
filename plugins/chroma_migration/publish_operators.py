"""The live writes: publish the new snapshot and swap the pointers, or roll them back.

Each operator runs one engine step (publishing.py, rollback.py) under the lock; the engine
checks ownership right before each live write through the guard this operator hands it.
"""

from __future__ import annotations

from typing import Any

from chroma_migrate.pipeline import read_plan
from chroma_migrate.publishing import publish, swap_pointers
from chroma_migrate.rollback import rebuild_and_publish
from chroma_migrate.run_types import Stage
from chroma_migration.work_operators import LockedStepOperator


class PublishSnapshotOperator(LockedStepOperator):
    """Upload the verified database as a new version, then point S3 and EFS at it."""

    stage = Stage.PUBLISH

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            self.log.info("Already published in this run: %s", finished["version_id"])
            return finished
        state, plan = self.state, read_plan(self.state.paths)
        outcome = publish(self.live, state.paths.target, source_version_id=state.source_version_id, manifest={
            "run_id": state.run_id, "chromadb_version": plan["target_version"], "strategy": plan["strategy"],
            "verification_report": self.live.report_prefix()})
        return self.record(0, outcome | {"chromadb_version": plan["target_version"]})


class RollbackOperator(LockedStepOperator):
    """Point S3 and EFS back at an earlier version, or rebuild the current data into its format.

    :param rollback: the resolve task's choice (templated): `to_version_id` and whether to
        `rebuild_current`; rebuilding keeps records written since the migration, which a plain
        pointer swap would leave behind.
    """

    template_fields = (*LockedStepOperator.template_fields, "rollback")
    stage = Stage.ROLLBACK

    def __init__(self, *, rollback: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollback = rollback

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            return finished
        state, choice = self.state, self.rollback
        old = state.paths.root / "rollback-target"
        if choice["rebuild_current"]:
            return self.record(0, rebuild_and_publish(self.live, state.paths, old, state.source_version_id,
                                                      state.batch_size))
        outcome = swap_pointers(self.live, expected=state.source_version_id, version_id=choice["to_version_id"],
                                local_copy=old, allow_legacy=True)
        return self.record(0, outcome | {"rebuilt": False})
