"""The live writes: publish the new snapshot and swap the pointers, or roll them back.

Each operator runs one engine step (publishing.py, rollback.py) under the lock; the engine
checks ownership right before each live write through the guard this operator hands it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from airflow.sdk import Asset, AssetAlias

from chroma_migrate.publishing import publish, publish_reports, swap_pointers
from chroma_migrate.run_types import Stage
from chroma_migration.work_operators import LockedStepOperator


def snapshot_alias(collection: str) -> AssetAlias:
    """What a reader's redeploy DAG can be scheduled on: one event per published snapshot."""
    return AssetAlias(f"chroma_snapshot__{collection}")


class PublishSnapshotOperator(LockedStepOperator):
    """Upload the verified database as a new version, then point S3 and EFS at it, and emit an
    Asset event for the collection's live pointer (the new version id and chromadb release in
    its extra).

    Declared readers that cannot read the verified database stop this step, unless the run's
    Param allow_breaking_readers names every one of them (reader_policy.py).
    """

    stage = Stage.PUBLISH

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [snapshot_alias(kwargs["collection"])])
        super().__init__(**kwargs)

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            self.log.info("Already published in this run: %s", finished["version_id"])
            self._announce(context, finished)
            return finished
        from chroma_migrate.pipeline import read_plan, read_report  # the engine: at run time, not parse time
        from chroma_migrate.reader_policy import allowed_breakage

        state, plan = self.state, read_plan(self.state.paths)
        broken = allowed_breakage(read_report(state.paths).get("readers"), state.allow_breaking_readers)
        if broken:
            self.log.warning("Publishing although these declared readers cannot read it (allowed by the run's "
                             "Param allow_breaking_readers): %s", ", ".join(broken))
        started = time.perf_counter()
        outcome = publish(self.live, state.paths.target, source_version_id=state.source_version_id, manifest={
            "run_id": state.run_id, "chromadb_version": plan["target_version"], "strategy": plan["strategy"],
            "verification_report": self.live.report_prefix(), "readers_broken": broken})
        outcome["publish_seconds"] = round(time.perf_counter() - started, 3)
        self._report_transfer(outcome)
        finished = self.record(0, outcome | {"chromadb_version": plan["target_version"], "readers_broken": broken})
        self._announce(context, finished)
        return finished

    def _report_transfer(self, outcome: dict[str, Any]) -> None:
        """What the publish moved (bytes uploaded, copied inside S3, copied on EFS, seconds) goes beside
        the run's verification report as publish.json, and into the log."""
        path = self.state.paths.root / "publish.json"
        path.write_text(json.dumps(outcome, indent=2, sort_keys=True))
        url = publish_reports(self.live, [path])[0]
        s3 = outcome.get("s3_transfer") or {}
        self.log.info("Published %s in %.2f s: %d bytes uploaded, %d bytes copied inside S3, %d bytes copied on EFS "
                      "from the previous version (%s)", outcome["version_id"], outcome["publish_seconds"],
                      s3.get("uploaded_bytes", 0), s3.get("copied_bytes", 0),
                      (outcome.get("efs_transfer") or {}).get("from_previous_bytes", 0), url)

    def _announce(self, context: Any, finished: dict[str, Any]) -> None:
        snapshot = Asset(uri=self.hook.s3.url(self.hook.s3.layout.pointer_key()),
                         name=f"chroma_snapshot__{self.state.env}__{self.collection}")
        context["outlet_events"][snapshot_alias(self.collection)].add(snapshot, extra={
            "version_id": finished["version_id"], "target_version": finished["chromadb_version"],
            "collection": self.collection, "env": self.state.env,
            "readers_broken": list(finished.get("readers_broken") or [])})


class RollbackOperator(LockedStepOperator):
    """Point S3 and EFS back at an earlier version, or rebuild the current data into its format.

    :param rollback: the resolve task's choice (templated): `to_version_id` and whether to
        `rebuild_current`; rebuilding keeps records written since the migration, which a plain
        pointer swap would leave behind. With `restored_from_backup` (the version's own prefix was
        missing or damaged) the staged backup is published as a new version instead of a swap.
    """

    template_fields = (*LockedStepOperator.template_fields, "rollback")
    stage = Stage.ROLLBACK

    def __init__(self, *, rollback: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollback = rollback

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            return finished
        from chroma_migrate.rollback import rebuild_and_publish, restore_from_backup  # the engine: run time only

        state, choice = self.state, self.rollback
        old = state.paths.root / "rollback-target"
        if choice["rebuild_current"]:
            return self.record(0, rebuild_and_publish(self.live, state.paths, old, state.source_version_id,
                                                      state.batch_size))
        if choice.get("restored_from_backup"):
            return self.record(0, restore_from_backup(self.live, old, choice, state.source_version_id))
        outcome = swap_pointers(self.live, expected=state.source_version_id, version_id=choice["to_version_id"],
                                local_copy=old, allow_legacy=True)
        return self.record(0, outcome | {"rebuilt": False})
