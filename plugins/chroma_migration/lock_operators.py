"""Take the compactor's lock as a setup task and give it back as a teardown task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk.bases.sensor import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from chroma_migrate.snapshots.errors import LockHeldError
from chroma_migration.base import ChromaMigrationOperator
from chroma_migration.run_state import MigrationRun


class AcquireLockSensor(BaseSensorOperator):
    """Wait for the lock without holding a worker slot (reschedule mode), then take it.

    The wait is bounded by the environment's `lock_wait_minutes`; when it runs out the run
    fails with the holder's owner id and expiry in the message.

    :param collection: the collection whose lock item (the compactor's) is taken.
    :param run: the run state, the resolve task's XCom (templated); its owner id takes the lock.
    """

    template_fields: Sequence[str] = ("run",)
    ui_color = "#f7e7c6"

    def __init__(self, *, collection: str, run: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 30)
        super().__init__(**kwargs)
        self.collection = collection
        self.run = run

    def _lock(self):
        from chroma_migration.hooks import ChromaSnapshotHook  # boto3: at run time only

        state = MigrationRun.from_xcom(self.run)
        return ChromaSnapshotHook(state.environment, self.collection).lock(state.owner)

    def poke(self, context: Any) -> bool:
        try:
            self._lock().acquire()
        except LockHeldError as held:
            self.log.info("Lock busy: %s", held.problem)
            return False
        self.log.info("Lock taken for collection %s", self.collection)
        return True

    def execute(self, context: Any) -> Any:
        state = MigrationRun.from_xcom(self.run)
        self.timeout = timedelta(minutes=state.environment.lock_wait_minutes).total_seconds()
        self.poke_interval = max(1.0, min(float(self.poke_interval), self.timeout / 5))
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise self.gave_up(state.environment.lock_wait_minutes) from exc

    def gave_up(self, waited_minutes: float) -> AirflowFailException:
        """The failure after the wait, naming who holds the lock now. It reads the lock item and
        never takes it: in reschedule mode the holder seen at the last poke is gone with that
        process, and a lock that became free meanwhile must stay free (a failed setup task runs
        no teardown, so a lock taken here would shut the compactor out until its lease ends)."""
        current = self._lock().read()
        if current is None:
            return AirflowFailException(
                f"Gave up waiting {waited_minutes} min for the lock of {self.collection!r}: it was released just as "
                "the wait ran out, and was left free. Retry the run now.")
        return AirflowFailException(
            f"Gave up waiting {waited_minutes} min for the lock of {self.collection!r}: held by owner "
            f"{current.get('owner', '?')} until {current.get('expires', '?')}. "
            "Retry later, or if that owner is gone for good, wait for its expiry.")


class ReleaseLockOperator(ChromaMigrationOperator):
    """Teardown: release the lock whatever happened, but only if we still own it."""

    ui_color = "#f7e7c6"

    def run_step(self, context: Any) -> bool:
        released = self.hook.lock(self.state.owner).release()
        self.log.info("Lock of %s %s", self.collection, "released" if released else "was not ours (nothing to do)")
        return released
