"""Resolve and download the live snapshot, then plan the migration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from chroma_migrate.configuration import load_config
from chroma_migrate.errors import MigrationError
from chroma_migrate.estimate import render_estimate
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.strategy import requested_strategy
from chroma_migration.base import ChromaMigrationOperator
from chroma_migration.run_state import MigrationRun

# The engine's heavy modules (pipeline, snapshot_source, rollback: numpy, pyarrow) and the AWS hook
# (boto3) are imported inside execute, never when the DAG file is parsed (tests/dags/test_parse_time.py).


class ResolveSnapshotOperator(BaseOperator):
    """Validate the run's Params, resolve the live version, download and inspect it.

    Returns the run state every later task reads. Arguments left as None are taken from
    the run's Params (`context["params"]`), not through Jinja: with native rendering a
    version id like 20250101_000000 would come back as an integer.

    :param collection: the configured collection (one snapshot) this DAG migrates.
    :param env: the environment name in the configuration file (dev, prod, ...).
    :param source_version_id: the version to migrate; None: what the live pointer names.
    :param target_version: the chromadb version to move to; None: the environment's.
    :param strategy: auto, upgrade or rebuild (strategy.py); None: auto.
    :param batch_size: records per export batch; None: the environment's.
    :param dry_run: plan and verify only, change nothing live.
    :param allow_breaking_readers: declared readers (by name) the operator accepts breaking: the
        publish step refuses a snapshot that any other declared reader cannot read.
    :param config_path: the configuration file; None: $CHROMA_MIGRATION_CONFIG or the shipped one.
    """

    PARAM_NAMES: Sequence[str] = ("env", "source_version_id", "target_version", "strategy", "batch_size", "dry_run",
                                  "allow_breaking_readers")
    ui_color = "#dff0f7"

    def __init__(self, *, collection: str, env: Any = None, source_version_id: Any = None, target_version: Any = None,
                 strategy: Any = None, batch_size: Any = None, dry_run: Any = None,
                 allow_breaking_readers: Any = None, config_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.collection = collection
        self.env = env
        self.source_version_id = source_version_id
        self.target_version = target_version
        self.strategy = strategy
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.allow_breaking_readers = allow_breaking_readers
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
        target = resolve_version(str(self.target_version or environment.target_version)).version
        self.strategy = str(requested_strategy(str(self.strategy or "auto")))
        batch_size = environment.batch_size if self.batch_size in (None, "") else int(self.batch_size)
        if batch_size < 1:
            raise MigrationError(f"Param batch_size must be at least 1, got {batch_size}.", "Pass a positive number.")
        return MigrationRun.start(
            collection=self.collection, environment=environment, run_id=run_id, source_version_id="",
            target_version=target, strategy=str(self.strategy), batch_size=batch_size, dry_run=bool(self.dry_run),
            allow_breaking_readers=self._allowed_breaking(environment.readers),
        )

    def _allowed_breaking(self, readers: dict[str, str]) -> list[str]:
        """Only declared readers can be allowed to break: a typo must not pass for permission."""
        allowed = self.allow_breaking_readers or []
        if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
            raise MigrationError(f"Param allow_breaking_readers must be a list of reader names, got {allowed!r}.",
                                 f"Name readers declared for this environment: {', '.join(readers) or 'none'}.")
        unknown = [name for name in allowed if name not in readers]
        if unknown:
            raise MigrationError(f"Param allow_breaking_readers names {unknown}, which this environment does not "
                                 "declare as readers.",
                                 f"Use names from its readers: {', '.join(readers) or 'none are declared'}.")
        return allowed

    def execute(self, context: Any) -> dict[str, Any]:
        from chroma_migrate.snapshot_source import resolve_source
        from chroma_migration.hooks import ChromaSnapshotHook

        draft = self._validated(context)
        live = ChromaSnapshotHook(draft.environment, self.collection).live_side(draft.run_key, log=self.log.info)
        staged = resolve_source(live, draft.paths, self.source_version_id, f"environments.{draft.env}.staging_root")
        info = staged.info
        self.log.info("Run %s: %s %s version %s (%s, written by chromadb %s), %d collections, %s",
                      draft.run_key, draft.env, self.collection, staged.version_id,
                      "manifest checked" if staged.manifest_checked else "no manifest",
                      "/".join(info.written_by), len(info.collections),
                      ", ".join(f"{c.name}={c.records}" for c in info.collections))
        return {**draft.to_xcom(), "source_version_id": staged.version_id}


class PlanMigrationOperator(ChromaMigrationOperator):
    """Probe the staged copy against the target and cut the batches the mapped tasks run.

    Returns the batch list (what the mapped tasks expand over; Airflow maps only over
    return values) and pushes the plan summary under the XCom key `summary`.
    """

    def run_step(self, context: Any) -> list[dict[str, Any]]:
        from chroma_migrate.pipeline import plan_run

        state = self.state
        plan = plan_run(state.paths, state.target_version, state.strategy, state.batch_size,
                        self.environment.sample_queries.get(self.collection))
        batches = plan["batches"]
        summary = {key: plan.get(key) for key in ("strategy", "reason", "source_version", "target_version",
                                                  "collections", "records", "requested_strategy", "estimate")}
        context["ti"].xcom_push(key="summary", value=summary | {"batches": len(batches)})
        self.log.info("Strategy %s: %s (%d batches); %s", plan["strategy"], plan["reason"], len(batches),
                      render_estimate(plan["estimate"]) if plan.get("estimate") else "no estimate")
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

    Downloads the version to return to (its manifest is checked on the way; when its prefix is
    missing or fails that check, a verified backup of it instead) and, when the current data is
    to be rebuilt into that version's format, the live version too. Pushes `rollback` =
    {to_version_id, rebuild_current, written_since_migration, source (a sentence: which copy),
    restored_from_backup (the backup prefix, or None), version_problem}.
    """

    PARAM_NAMES: Sequence[str] = ("env", "to_version_id", "rebuild_current")

    def __init__(self, *, to_version_id: Any = None, rebuild_current: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_version_id = to_version_id
        self.rebuild_current = rebuild_current

    def execute(self, context: Any) -> dict[str, Any]:
        from chroma_migrate.rollback import choose_rollback
        from chroma_migrate.snapshot_source import download_snapshot, stage_rollback_target
        from chroma_migration.hooks import ChromaSnapshotHook

        draft = self._validated(context)
        live = ChromaSnapshotHook(draft.environment, self.collection).live_side(draft.run_key, log=self.log.info)
        choice = choose_rollback(live, self.to_version_id)
        state = MigrationRun(**{**draft.to_xcom(), "source_version_id": choice.current})
        source = stage_rollback_target(live, choice.to_version_id, state.paths.root / "rollback-target",
                                       legacy_ok=choice.named)
        if choice.written_since_migration and not self.rebuild_current:
            self.log.warning("The live version %s was not written by a migration: records added since the "
                             "migration exist only there. Trigger with rebuild_current=true to keep them.",
                             choice.current)
        if self.rebuild_current:
            download_snapshot(live, state.paths, choice.current, f"environments.{state.env}.staging_root")
        context["ti"].xcom_push(key="rollback", value={
            "to_version_id": choice.to_version_id, "rebuild_current": bool(self.rebuild_current),
            "written_since_migration": choice.written_since_migration, "source": source.describe(),
            "restored_from_backup": source.restored_from_backup, "version_problem": source.version_problem})
        how = "rebuild current data" if self.rebuild_current else (
            "restore as a new version" if source.restored_from_backup else "pointer swap")
        self.log.info("Rollback of %s %s: %s -> %s %s (%s)", state.env, self.collection, choice.current,
                      choice.to_version_id, source.describe(), how)
        return state.to_xcom()
