"""The work under the lock: backup, export and load batches, verification.

Each step records its outcome in the DynamoDB ledger (collection, run, stage, batch), so a
retried, cleared or backfilled run skips what is done and redoes only the rest.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from chroma_migrate.estimate import PhaseMeasure, last_run, record
from chroma_migrate.progress import steady_log
from chroma_migrate.publishing import LiveSide, publish_reports
from chroma_migrate.run_types import BatchKind, Stage
from chroma_migrate.snapshots.errors import SnapshotError
from chroma_migration.base import ChromaMigrationOperator

# The engine's pipeline (numpy, pyarrow) and botocore are imported inside each step, never when the
# DAG file is parsed (tests/dags/test_parse_time.py).

PROGRESS_LOG_S = 10.0  # how often a batch task logs its records done, so a long one shows it is moving


class AwsStepError(SnapshotError):
    """S3 or DynamoDB still failed after the client's retries; says what is live now."""

    def __init__(self, stage: str, error: Exception, live: str) -> None:
        super().__init__(
            f"The {stage} step failed talking to AWS after the client's retries: {str(error).rstrip('.')}. "
            f"Live now: {live}.",
            "A throttled or failing S3/DynamoDB; Airflow retries the task, or clear it once AWS answers again. "
            "The step resumes where it stopped; a pointer is only ever moved to a complete, verified version.",
        )


class LockedStepOperator(ChromaMigrationOperator):
    """A step that works under the lock: it keeps the lease alive and checks ownership first.

    The lock handle taken here (with its fence) is the one `assert_lock_held` checks before
    every live write, so an older attempt of the same task that is still running fails its
    check once this one has re-entered the lock.
    """

    stage: Stage

    def execute(self, context: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        from chroma_migrate.snapshots.lock import HeartbeatThread

        self.lock = self.hook.lock(self.state.owner)
        # Re-enter our own lock, or retake it if its lease ran out while nobody else took it
        # (an approval can wait for hours); if someone else holds it now, this fails naming them.
        self.lock.acquire()
        with HeartbeatThread(self.lock) as self.heartbeat:
            try:
                return self.run_step(context)
            except (BotoCoreError, ClientError) as error:
                raise AwsStepError(self.stage, error, self.live_state()) from error

    @cached_property
    def live(self) -> LiveSide:
        """The engine's live side for this run, checking the lock before each live write."""
        return self.hook.live_side(self.state.run_key, guard=self.assert_lock_held, log=self.log.info)

    def assert_lock_held(self) -> None:
        """Right before a live write: the heartbeat saw no takeover and the item is still this acquisition's."""
        self.heartbeat.check()
        self.lock.assert_held()

    def live_state(self) -> str:
        """Both pointers as they are now, read back for an error message (S3 may be what failed)."""
        try:
            s3 = self.hook.s3.read_pointer()
        except Exception as error:  # the store that just failed may fail again
            s3 = f"unreadable ({type(error).__name__})"
        try:
            efs = self.hook.efs.read_pointer()
        except Exception as error:
            efs = f"unreadable ({type(error).__name__})"
        return f"S3 pointer {s3}, EFS pointer {efs}"

    def log_line(self, message: str) -> None:
        """A progress line in the task log (the message is text, not a format string)."""
        self.log.info("%s", message)

    def measured(self, plan: dict[str, Any], phase: str, units: int, started: float) -> None:
        """Record this step's throughput for the next estimates (estimate.py)."""
        record([PhaseMeasure(phase, units, round(time.perf_counter() - started, 3), plan["strategy"], self.collection,
                             self.state.env, self.state.run_key)])

    def done(self, index: int) -> dict[str, Any] | None:
        return self.hook.ledger.outcome(self.collection, self.state.run_key, self.stage, index)

    def record(self, index: int, outcome: dict[str, Any]) -> dict[str, Any]:
        self.hook.ledger.record_done(self.collection, self.state.run_key, self.stage, index, outcome)
        return outcome


class BackupSnapshotOperator(LockedStepOperator):
    """Copy the live version's S3 prefix to a backup prefix keyed by the run, verified by sha256."""

    stage = Stage.BACKUP

    def run_step(self, context: Any) -> dict[str, Any]:
        if finished := self.done(0):
            self.log.info("Backup already done in this run: %s", finished["prefix"])
            return finished
        version = self.state.source_version_id
        prefix = self.hook.layout.backup_prefix(self.state.run_key, version)
        manifest = self.hook.s3.copy_version(version, prefix)
        self.log.info("Backed up %d files of %s to s3://%s/%s", len(manifest["files"]), version,
                      self.hook.layout.bucket, prefix)
        return self.record(0, {"prefix": prefix, "files": len(manifest["files"])})


class ExportBatchOperator(LockedStepOperator):
    """One mapped batch: export an id range with the source version (or, for upgrade, copy and open).

    :param batch: one of the plan's batch jobs (run_types.BatchJob), mapped over the plan's output.
    """

    template_fields = (*LockedStepOperator.template_fields, "batch")
    stage = Stage.EXPORT

    def __init__(self, *, batch: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch

    def run_step(self, context: Any) -> dict[str, Any]:
        from chroma_migrate.pipeline import batch_label, changed_exports, export_batch, export_size, read_plan

        context["batch_label"] = batch_label(self.batch)
        index = self.batch["index"]
        finished = self.done(index)
        if finished:
            damaged = changed_exports(finished)
            if not damaged and (not BatchKind(finished["kind"]).whole_database or self.state.paths.target.is_dir()):
                self.log.info("Batch %s already exported in this run", context["batch_label"])
                return finished
            self.log.warning("Batch %s is exported again: %s", context["batch_label"],
                             "; ".join(damaged) or "the upgraded copy is gone")
        plan = read_plan(self.state.paths)
        total, unit = export_size(self.state.paths, plan, self.batch)
        started = time.perf_counter()
        with steady_log(self.log_line, f"Exporting {context['batch_label']}", total, unit, PROGRESS_LOG_S) as done:
            outcome = export_batch(self.state.paths, plan, self.batch, progress=done.add)
        if self.batch["kind"] == BatchKind.REBUILD:
            self.measured(plan, "rebuild: export", outcome["count"] * (self.batch.get("dimension") or 1), started)
        self.log.info("Exported %s: %d records", context["batch_label"], outcome["count"])
        return self.record(index, outcome)


class LoadBatchOperator(LockedStepOperator):
    """One mapped batch into the new database; upserts, so a retried load converges.

    :param exported: the export task's outcome for this batch (run_types.ExportOutcome), mapped.
    """

    template_fields = (*LockedStepOperator.template_fields, "exported")
    stage = Stage.LOAD

    def __init__(self, *, exported: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exported = exported

    def run_step(self, context: Any) -> dict[str, Any]:
        from chroma_migrate.pipeline import batch_label, load_batch, read_plan

        plan = read_plan(self.state.paths)
        index = self.exported["index"]
        batch = plan["batches"][index]
        context["batch_label"] = batch_label(batch)
        if finished := self.done(index):
            self.log.info("Batch %s already loaded in this run", context["batch_label"])
            return finished
        label = f"Loading {context['batch_label']}"
        started = time.perf_counter()
        with steady_log(self.log_line, label, self.exported["count"], interval_s=PROGRESS_LOG_S) as done:
            outcome = load_batch(self.state.paths, plan, batch, self.exported, progress=done.add)
        if batch["kind"] == BatchKind.REBUILD:
            self.measured(plan, "rebuild: load", outcome["count"] * (batch.get("dimension") or 1), started)
        self.log.info("Loaded %s: %d records", context["batch_label"], outcome["count"])
        return self.record(index, outcome)


class VerifyMigrationOperator(LockedStepOperator):
    """Prove the new database equals the source; a mismatch fails the run before anything live changes.

    The reports (JSON and Markdown) go beside the staged run and to S3 under the collection's
    `migrations/{run_key}/` prefix; the summary returned here is what the approver reads.
    """

    stage = Stage.VERIFY

    def run_step(self, context: Any) -> dict[str, Any]:
        from chroma_migrate.pipeline import read_plan, verification_summary, verify_run

        paths = self.state.paths
        plan = read_plan(paths)
        # Beside prod's estimate, the approver sees what the dev run of this collection took.
        dev_run = last_run(self.collection, "dev") if self.state.env != "dev" else None
        started = time.perf_counter()
        report = verify_run(paths, plan, readers=self.environment.readers,
                            sample_queries=self.environment.sample_queries.get(self.collection), dev_run=dev_run)
        if not report.get("verified_while_planning"):
            self.measured(plan, "verify", (plan.get("estimate") or {}).get("units", 0), started)
        report_url = publish_reports(self.live, [paths.report_json, paths.report_md])[-1]
        markdown = paths.report_md.read_text()
        self.log.info("Verification report: %s\n%s", report_url, markdown)
        if not report["passed"]:
            raise AirflowFailException("Verification failed, nothing live was changed: "
                                       + "; ".join(report["problems"][:5]) + f" (report: {report_url})")
        return verification_summary(plan, report, report_url, markdown)
