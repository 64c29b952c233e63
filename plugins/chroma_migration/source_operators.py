"""Resolve and download the live snapshot, then plan the migration."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from chroma_migrate.config import load_config
from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import describe_database
from chroma_migrate.native import check_integrity
from chroma_migrate.pipeline import RunPaths, plan_run
from chroma_migrate.staging_space import check_staging_space, cleaned_when_full
from chroma_migrate.strategy import requested_strategy
from chroma_migrate.versions import get_version
from chroma_migration.base import ChromaMigrationOperator
from chroma_migration.hooks import ChromaSnapshotHook
from chroma_migration.run_state import MigrationRun

SOURCE_MARKER = "source.json"


def download_snapshot(hook: ChromaSnapshotHook, paths: RunPaths, version_id: str, setting: str) -> dict[str, Any]:
    """Download once per run: a marker names the version the staged copy came from.

    Checks first that the staging disk has room for the whole run (`setting` names the
    configuration key to change), and removes a half-downloaded copy when the disk fills.
    """
    marker = paths.root / SOURCE_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version_id") == version_id and paths.source.is_dir():
        return json.loads(marker.read_text())
    partial = paths.root / "source.downloading"
    shutil.rmtree(partial, ignore_errors=True)
    snapshot_bytes = sum(hook.s3.list_objects(hook.layout.version_prefix(version_id)).values())
    check_staging_space(paths.root, snapshot_bytes, setting)
    with cleaned_when_full(f"downloading {version_id}", paths.root, partial):
        manifest = hook.s3.download(version_id, partial)
    shutil.rmtree(paths.source, ignore_errors=True)
    partial.rename(paths.source)
    facts = {"version_id": version_id, "manifest_checked": manifest is not None,
             "files": len((manifest or {}).get("files", {}))}
    marker.write_text(json.dumps(facts))
    return facts


class ResolveSnapshotOperator(BaseOperator):
    """Validate the run's Params, resolve the live version, download and inspect it.

    Returns the run state every later task reads. Arguments left as None are taken from
    the run's Params (`context["params"]`), not through Jinja: with native rendering a
    version id like 20250101_000000 would come back as an integer.
    """

    PARAM_NAMES: Sequence[str] = ("env", "source_version_id", "target_version", "strategy", "batch_size", "dry_run")
    ui_color = "#dff0f7"

    def __init__(self, *, collection: str, env: Any = None, source_version_id: Any = None, target_version: Any = None,
                 strategy: Any = None, batch_size: Any = None, dry_run: Any = None,
                 config_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.collection = collection
        self.env = env
        self.source_version_id = source_version_id
        self.target_version = target_version
        self.strategy = strategy
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.config_path = config_path

    def _take_params(self, context: Any) -> None:
        params = context.get("params") or {}
        for name in self.PARAM_NAMES:
            if getattr(self, name, None) is None and name in params:
                setattr(self, name, params[name])

    def _validated(self, context: Any) -> MigrationRun:
        self._take_params(context)
        run_id = context["dag_run"].run_id
        config = load_config(self.config_path)
        if self.collection not in config.collections:
            raise MigrationError(f"Collection {self.collection!r} is not in {config.path}.",
                                 f"Use one of {', '.join(config.collections)}.")
        environment = config.environment(str(self.env))
        target = get_version(str(self.target_version or environment.target_version)).version
        self.strategy = str(requested_strategy(str(self.strategy or "auto")))
        batch_size = environment.batch_size if self.batch_size in (None, "") else int(self.batch_size)
        if batch_size < 1:
            raise MigrationError(f"Param batch_size must be at least 1, got {batch_size}.", "Pass a positive number.")
        return MigrationRun.start(
            collection=self.collection, env=environment.name, run_id=run_id, source_version_id="",
            target_version=target, strategy=str(self.strategy), batch_size=batch_size,
            dry_run=bool(self.dry_run), config_path=self.config_path,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        draft = self._validated(context)
        hook = ChromaSnapshotHook(draft.environment, self.collection)
        resolved = hook.ledger.outcome(self.collection, draft.run_key, "source", 0)
        # Once a run resolved its source, a retry or clear keeps it: by then the live pointer may
        # name this run's own new version (a run that died between the two pointer writes).
        version_id = resolved["version_id"] if resolved else self.source_version_id or hook.s3.read_pointer()
        if not hook.s3.version_in_use(version_id):
            raise MigrationError(f"No snapshot {version_id!r} under s3://{hook.layout.bucket}/"
                                 f"{hook.layout.version_prefix(version_id)}.",
                                 "Pass an existing source_version_id, or leave it empty for the live pointer.")
        state = MigrationRun(**{**draft.to_xcom(), "source_version_id": version_id})
        facts = download_snapshot(hook, state.paths, version_id, f"environments.{state.env}.staging_root")
        # The manifest proves the bytes are the ones uploaded; this proves they are a sound database
        # (the compactor may have uploaded a damaged one, and legacy snapshots have no manifest).
        check_integrity(state.paths.source)
        info = describe_database(state.paths.source)
        self.log.info("Run %s: %s %s version %s (%s, written by chromadb %s), %d collections, %s",
                      state.run_key, state.env, self.collection, version_id,
                      "manifest checked" if facts["manifest_checked"] else "no manifest",
                      "/".join(info.written_by), len(info.collections),
                      ", ".join(f"{c.name}={c.records}" for c in info.collections))
        if not resolved:
            hook.ledger.record_done(self.collection, state.run_key, "source", 0, {"version_id": version_id})
        return state.to_xcom()


class PlanMigrationOperator(ChromaMigrationOperator):
    """Probe the staged copy against the target and cut the batches the mapped tasks run.

    Returns the batch list (what the mapped tasks expand over; Airflow maps only over
    return values) and pushes the plan summary under the XCom key `summary`.
    """

    def run_step(self, context: Any) -> list[dict[str, Any]]:
        state = self.state
        plan = plan_run(state.paths, state.target_version, state.strategy, state.batch_size)
        batches = plan["batches"]
        summary = {key: plan[key] for key in ("strategy", "reason", "source_version", "target_version",
                                              "collections", "records", "requested_strategy")}
        context["ti"].xcom_push(key="summary", value=summary | {"batches": len(batches)})
        self.log.info("Strategy %s: %s (%d batches)", plan["strategy"], plan["reason"], len(batches))
        return batches


def migration_needed(plan: dict[str, Any]) -> bool:
    """ShortCircuit condition: a noop plan ends the run here, successfully, with the reason logged."""
    import logging

    if plan["strategy"] == "noop":
        logging.getLogger(__name__).info("No migration needed: %s", plan["reason"])
        return False
    return True


class ResolveRollbackOperator(ResolveSnapshotOperator):
    """Resolve a rollback: the live version, the one to return to (default: the one before it).

    Downloads the version to return to (its manifest is checked on the way) and, when the
    current data is to be rebuilt into that version's format, the live version too.
    Pushes `rollback` = {to_version_id, rebuild_current, written_since_migration}.
    """

    PARAM_NAMES: Sequence[str] = ("env", "to_version_id", "rebuild_current")

    def __init__(self, *, to_version_id: Any = None, rebuild_current: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_version_id = to_version_id
        self.rebuild_current = rebuild_current

    def execute(self, context: Any) -> dict[str, Any]:
        draft = self._validated(context)
        hook = ChromaSnapshotHook(draft.environment, self.collection)
        resolved = hook.ledger.outcome(self.collection, draft.run_key, "rollback-source", 0) or {}
        current = resolved.get("version_id") or hook.s3.read_pointer()  # kept on a rerun, as for a migration
        versions = [v for v in hook.s3.list_versions() if v != current]
        # The default is never a prefix without a manifest: that may be an upload that died halfway.
        # A pre-manifest (legacy) snapshot can still be named explicitly.
        earlier = [v for v in versions if v < current and hook.s3.version_exists(v)]
        to_version = resolved.get("to_version_id") or self.to_version_id or (earlier[-1] if earlier else None)
        if not to_version or not hook.s3.version_in_use(to_version):
            raise MigrationError(f"No version to roll back to: asked {self.to_version_id!r}, live is {current}, "
                                 f"others are {versions or 'none'}.", "Pass to_version_id naming an existing version.")
        state = MigrationRun(**{**draft.to_xcom(), "source_version_id": current})
        paths = state.paths
        target_dir = paths.root / "rollback-target"
        if not target_dir.is_dir():
            partial = paths.root / "rollback-target.downloading"
            shutil.rmtree(partial, ignore_errors=True)
            paths.root.mkdir(parents=True, exist_ok=True)
            hook.s3.download(to_version, partial)
            check_integrity(partial)  # never point readers at a damaged or half-uploaded version
            partial.rename(target_dir)
        manifest = hook.s3.read_manifest(hook.layout.version_prefix(current)) or {}
        written_since = "migrated_from" not in manifest and "rolled_back_from" not in manifest
        if written_since and not self.rebuild_current:
            self.log.warning("The live version %s was not written by a migration: records added since the "
                             "migration exist only there. Trigger with rebuild_current=true to keep them.", current)
        if self.rebuild_current:
            download_snapshot(hook, paths, current, f"environments.{state.env}.staging_root")
        if not resolved:
            hook.ledger.record_done(self.collection, state.run_key, "rollback-source", 0,
                                    {"version_id": current, "to_version_id": to_version})
        context["ti"].xcom_push(key="rollback", value={
            "to_version_id": to_version, "rebuild_current": bool(self.rebuild_current),
            "written_since_migration": written_since})
        self.log.info("Rollback of %s %s: %s -> %s (%s)", state.env, self.collection, current, to_version,
                      "rebuild current data" if self.rebuild_current else "pointer swap")
        return state.to_xcom()
