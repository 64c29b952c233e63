"""Build the migration and rollback DAGs of every configured collection.

The DAG files in dags/ stay thin: they call `build_all()`. Configuration errors surface
as import errors naming the key (chroma_migrate.configuration).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator
from airflow.sdk import DAG, Param
from airflow.sdk.definitions.param import ParamsDict  # noqa: F401  (Param schemas validate in the trigger form)

from chroma_migrate.configuration import MigrationConfig, load_config
from chroma_migrate.strategy import REQUESTABLE
from chroma_migrate.versions import supported_version_names
from chroma_migration.lock_operators import AcquireLockSensor, ReleaseLockOperator
from chroma_migration.publish_operators import PublishSnapshotOperator, RollbackOperator
from chroma_migration.run_state import MigrationRun
from chroma_migration.source_operators import (
    PlanMigrationOperator,
    ResolveRollbackOperator,
    ResolveSnapshotOperator,
    migration_needed,
)
from chroma_migration.work_operators import (
    BackupSnapshotOperator,
    ExportBatchOperator,
    LoadBatchOperator,
    VerifyMigrationOperator,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
VERSION_ID_PATTERN = r"^[0-9]{8}_[0-9]{6}$"
# A chromadb release from 0.4.15 on (runtime_resolution.OLDEST_RELEASE), so that the trigger form
# itself refuses an older one: 1.x and later, 0.5 to 0.99, or 0.4.15 and up.
RELEASE_PATTERN = (r"^(?:[1-9][0-9]*\.[0-9]+\.[0-9]+|0\.(?:[5-9]|[1-9][0-9]+)\.[0-9]+"
                   r"|0\.4\.(?:1[5-9]|[2-9][0-9]|[1-9][0-9]{2,}))$")


def _default_args() -> dict[str, Any]:
    retries = int(os.environ.get("CHROMA_MIGRATION_TASK_RETRIES", "2"))
    return {"owner": "chroma-migrate", "retries": retries, "retry_delay": timedelta(seconds=30)}


def _approval_branch(run: dict[str, Any], proceed: str) -> str:
    """`approve` where the run's environment requires a human, else straight on to `proceed`."""
    return "approve" if MigrationRun.from_xcom(run).environment.require_approval else proceed


def _dag_arguments() -> dict[str, Any]:
    """What every DAG of the package shares: no catch-up, one run at a time, native XCom values."""
    return {"start_date": START, "catchup": False, "max_active_runs": 1, "render_template_as_native_obj": True,
            "default_args": _default_args()}


def _live_changes_allowed(run: dict[str, Any]) -> bool:
    if run["dry_run"]:
        import logging

        logging.getLogger(__name__).info("Dry run: verified in %s; nothing live is changed.", run["collection"])
        return False
    return True


def _env_param(config: MigrationConfig) -> Param:
    scheduled = config.scheduled_environment
    names = list(config.environments)
    return Param(scheduled.name if scheduled else names[0], enum=names,
                 description="Which snapshot system to work on (scheduled runs use the default).")


def _migration_params(config: MigrationConfig) -> dict[str, Param]:
    """The trigger form of a migration run."""
    return {
        "env": _env_param(config),
        "target_version": Param(None, type=["null", "string"], pattern=RELEASE_PATTERN,
                                examples=supported_version_names(),
                                description="chromadb release to move to, any from 0.4.15 on (empty: the "
                                            "environment's target); one without a runtime file is pinned, built "
                                            "and measured on first use."),
        "strategy": Param("auto", enum=list(REQUESTABLE),
                          description="auto upgrades a copy and rebuilds if it fails to open or verify; upgrade "
                                      "copies and lets the target migrate; rebuild re-adds."),
        "source_version_id": Param(None, type=["null", "string"], pattern=VERSION_ID_PATTERN,
                                   description="Snapshot to migrate (empty: what the live pointer names)."),
        "batch_size": Param(None, type=["null", "integer"], minimum=1,
                            description="Records per export batch (empty: the environment's batch_size)."),
        "dry_run": Param(False, type="boolean", description="Plan and verify only; change nothing live."),
        "allow_breaking_readers": Param([], type="array", items={"type": "string"},
                                        description="Declared readers (by name) this run may publish a snapshot "
                                                    "they cannot read; any other reader that cannot read it stops "
                                                    "the publish step. Upgrade them first where you can."),
    }


def build_migration_dag(collection: str, config: MigrationConfig, config_path: str | None = None) -> DAG:
    scheduled = config.scheduled_environment
    with DAG(dag_id=f"chroma_migration__{collection}",
             description=f"Move the {collection} ChromaDB snapshot to another chromadb version, verified",
             schedule=scheduled.schedule if scheduled else None, tags=["chroma", "migration", collection],
             params=_migration_params(config), doc_md=__doc__, **_dag_arguments()) as dag:
        resolve = ResolveSnapshotOperator(task_id="resolve_source", collection=collection, config_path=config_path)
        plan = PlanMigrationOperator(task_id="plan", collection=collection, run=resolve.output)
        needed = ShortCircuitOperator(task_id="migration_needed", python_callable=migration_needed,
                                      op_args=[plan.output["summary"]])
        lock = AcquireLockSensor(task_id="acquire_lock", collection=collection, run=resolve.output)
        work = _batch_work(collection, resolve.output, plan.output)
        resolve >> plan >> needed >> lock >> work[0]
        _publish_under_approval(collection, resolve.output, work[-1], lock)
    return dag


def _batch_work(collection: str, run: Any, batches: Any) -> list[Any]:
    """backup, then the mapped export and load of every batch, then verification: in that order."""
    backup = BackupSnapshotOperator(task_id="backup", collection=collection, run=run)
    exports = ExportBatchOperator.partial(
        task_id="export_batch", collection=collection, run=run, map_index_template="{{ batch_label }}",
    ).expand(batch=batches)
    loads = LoadBatchOperator.partial(
        task_id="load_batch", collection=collection, run=run, map_index_template="{{ batch_label }}",
        max_active_tis_per_dagrun=1,  # one writer per target database
    ).expand(exported=exports.output)
    verify = VerifyMigrationOperator(task_id="verify", collection=collection, run=run)
    backup >> exports
    loads >> verify
    return [backup, verify]


def _publish_under_approval(collection: str, run: Any, verify: Any, lock: Any) -> None:
    """After verification: stop for a dry run, ask a human where required, publish, release the lock."""
    live = ShortCircuitOperator(task_id="live_changes_allowed", python_callable=_live_changes_allowed, op_args=[run])
    branch = BranchPythonOperator(task_id="approval_required", python_callable=_approval_branch,
                                  op_args=[run, "publish"])
    approve = ApprovalOperator(
        task_id="approve", subject=f"Publish the migrated {collection} snapshot?",
        body="{{ ti.xcom_pull(task_ids='verify')['markdown'] }}\n\nReport: "
             "{{ ti.xcom_pull(task_ids='verify')['report'] }}",
    )
    publish = PublishSnapshotOperator(task_id="publish", collection=collection, run=run,
                                      trigger_rule="none_failed_min_one_success")
    release = ReleaseLockOperator(task_id="release_lock", collection=collection, run=run)
    verify >> live >> branch >> [approve, publish]
    approve >> publish >> release
    release.as_teardown(setups=lock)


def _rollback_params(config: MigrationConfig) -> dict[str, Param]:
    return {
        "env": _env_param(config),
        "to_version_id": Param(None, type=["null", "string"], pattern=VERSION_ID_PATTERN,
                               description="Version to return to (empty: the one before the live one)."),
        "rebuild_current": Param(False, type="boolean",
                                 description="Rebuild the live data into that version's chromadb format "
                                             "instead of discarding what was written since."),
    }


def build_rollback_dag(collection: str, config: MigrationConfig, config_path: str | None = None) -> DAG:
    with DAG(dag_id=f"chroma_rollback__{collection}",
             description=f"Point the {collection} snapshot back at an earlier version", schedule=None,
             tags=["chroma", "rollback", collection], params=_rollback_params(config), **_dag_arguments()) as dag:
        resolve = ResolveRollbackOperator(task_id="resolve_rollback", collection=collection, config_path=config_path)
        run = resolve.output
        lock = AcquireLockSensor(task_id="acquire_lock", collection=collection, run=run)
        branch = BranchPythonOperator(task_id="approval_required", python_callable=_approval_branch,
                                      op_args=[run, "rollback"])
        approve = ApprovalOperator(
            task_id="approve", subject=f"Roll the {collection} snapshot back?",
            body="Roll back from {{ ti.xcom_pull(task_ids='resolve_rollback')['source_version_id'] }} to "
                 "{{ ti.xcom_pull(task_ids='resolve_rollback', key='rollback')['to_version_id'] }} "
                 "{{ ti.xcom_pull(task_ids='resolve_rollback', key='rollback').get('source', '') }}.",
        )
        rollback = RollbackOperator(task_id="rollback", collection=collection, run=run,
                                    rollback=resolve.output["rollback"], trigger_rule="none_failed_min_one_success")
        release = ReleaseLockOperator(task_id="release_lock", collection=collection, run=run)
        resolve >> lock >> branch >> [approve, rollback]
        approve >> rollback >> release
        release.as_teardown(setups=lock)
    return dag


def build_all(config_path: str | None = None) -> dict[str, DAG]:
    config = load_config(Path(config_path) if config_path else None)
    dags: dict[str, DAG] = {}
    for collection in config.collections:
        for dag in (build_migration_dag(collection, config, config_path),
                    build_rollback_dag(collection, config, config_path)):
            dags[dag.dag_id] = dag
    return dags
