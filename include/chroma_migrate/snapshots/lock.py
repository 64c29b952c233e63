"""The compactor's DynamoDB lock, taken the same way so the compactor and a migration exclude each other.

Item: `PK = LOCK#{collection}#chroma-{collection}-update`, `SK = LOCK`, `owner` (uuid4 string),
`expires` and `heartbeat` (ISO-8601 strings). Expiry is decided by comparing strings inside
DynamoDB (`expires < :now`), which is only correct when every writer uses the same layout:
UTC, `YYYY-MM-DDTHH:MM:SS+00:00` (`isoformat(timespec="seconds")` of an aware UTC datetime).
This module always writes exactly that. Values with another UTC suffix ("Z", microseconds)
still order correctly to the second, because the first 19 characters are fixed-width.

Each acquisition also writes `fence`, a fresh random token (the compactor ignores it; its own
put replaces the item, dropping it). Owner and fence together name one acquisition: a retry of
the same run re-enters with the same owner but a new fence, so an older attempt that is still
alive (a zombie task) fails its next check instead of writing live state beside the retry.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from botocore.exceptions import ClientError

from chroma_migrate.snapshots.errors import LockHeldError, LockLostError, SnapshotError

_NAMES = {"#owner": "owner", "#expires": "expires", "#heartbeat": "heartbeat"}
_FENCED_NAMES = {**_NAMES, "#fence": "fence"}


def new_owner_id() -> str:
    """A fresh lock owner (uuid4 string, like the compactor's); keep it per run so retries re-enter."""
    return str(uuid.uuid4())


def lock_timestamp(moment: datetime) -> str:
    """The one string form of a time in the lock item (see the module docstring for why)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SnapshotError(f"Lock time {moment.isoformat()} has no time zone.",
                            "Pass an aware datetime, e.g. datetime.now(timezone.utc).")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoLock:
    """One owner's handle on a collection's lock item.

    `acquire` also succeeds when the item is already ours (a retried Airflow task with the same
    owner id re-enters instead of failing on its own lock). The handle keeps the fence it wrote;
    `heartbeat` and `assert_held` then insist on it.
    """

    def __init__(self, client: Any, table: str, collection: str, owner: str,
                 lease: timedelta = timedelta(minutes=10)) -> None:
        if not owner:
            raise SnapshotError("A lock needs a non-empty owner id.", "Use new_owner_id() once per run.")
        if lease <= timedelta(0):
            raise SnapshotError(f"Lock lease {lease} is not positive.", "Pass a lease such as timedelta(minutes=10).")
        self.client = client
        self.table = table
        self.collection = collection
        self.owner = owner
        self.lease = lease
        self.fence: str | None = None

    @property
    def key(self) -> dict[str, dict[str, str]]:
        return {"PK": {"S": f"LOCK#{self.collection}#chroma-{self.collection}-update"}, "SK": {"S": "LOCK"}}

    def describe(self) -> str:
        return f"lock {self.key['PK']['S']} in table {self.table}"

    def read(self) -> dict | None:
        """The lock item as plain strings (consistent read), or None when nobody holds it."""
        response = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True)
        item = response.get("Item")
        if item is None:
            return None
        return {name: next(iter(value.values())) for name, value in item.items()}

    def acquire(self, now: datetime | None = None) -> None:
        """Take the lock for one lease, if it is free, expired, or already ours; else LockHeldError."""
        now = now or _utc_now()
        fence = uuid.uuid4().hex
        item = {**self.key, "owner": {"S": self.owner}, "expires": {"S": lock_timestamp(now + self.lease)},
                "heartbeat": {"S": lock_timestamp(now)}, "fence": {"S": fence}}
        try:
            self.client.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(PK) OR #expires < :now OR #owner = :me",
                ExpressionAttributeNames={"#expires": "expires", "#owner": "owner"},
                ExpressionAttributeValues={":now": {"S": lock_timestamp(now)}, ":me": {"S": self.owner}},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.read() or {}
            owner, expires = current.get("owner"), current.get("expires")
            raise LockHeldError(
                f"The {self.describe()} is held by owner {owner} until {expires}.",
                "Another writer (usually the compactor) is working on this collection; retry after it releases "
                "the lock or after that expiry. Do not delete the item by hand while its owner may be running.",
                owner=owner, expires=expires,
            ) from None
        self.fence = fence

    def heartbeat(self, now: datetime | None = None) -> None:
        """Extend our lease by one lease from `now`; LockLostError if the item is no longer ours."""
        now = now or _utc_now()
        values = {":expires": {"S": lock_timestamp(now + self.lease)}, ":heartbeat": {"S": lock_timestamp(now)},
                  ":me": {"S": self.owner}}
        condition, names = "#owner = :me", _NAMES
        if self.fence is not None:
            condition, names = "#owner = :me AND #fence = :fence", _FENCED_NAMES
            values[":fence"] = {"S": self.fence}
        try:
            self.client.update_item(
                TableName=self.table, Key=self.key,
                UpdateExpression="SET #expires = :expires, #heartbeat = :heartbeat",
                ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            raise self._lost("heartbeat failed") from None

    def release(self) -> bool:
        """Delete the item if it is ours; False (no error) when it is gone or someone else's."""
        try:
            self.client.delete_item(TableName=self.table, Key=self.key, ConditionExpression="#owner = :me",
                                    ExpressionAttributeNames={"#owner": "owner"},
                                    ExpressionAttributeValues={":me": {"S": self.owner}})
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def assert_held(self, now: datetime | None = None) -> None:
        """Raise LockLostError unless the item is ours, from this acquisition (fence) and unexpired.

        Call it right before every live write. It is a consistent read, so a takeover that
        committed before it is seen; one that lands between this check and the write is not
        (see docs/faults.md for that window and what closes it for the S3 pointer).
        """
        now = now or _utc_now()
        current = self.read()
        if (current is None or current.get("owner") != self.owner
                or (self.fence is not None and current.get("fence") != self.fence)
                or current.get("expires", "") <= lock_timestamp(now)):
            raise self._lost("the lock is not held", current)

    def _lost(self, what: str, current: dict | None = None) -> LockLostError:
        current = self.read() if current is None else current
        if current is None:
            holder = "the lock item is gone"
            owner = expires = None
        else:
            owner, expires = current.get("owner"), current.get("expires")
            holder = f"owner {owner} holds it until {expires}"
            if owner == self.owner and self.fence is not None and current.get("fence") != self.fence:
                holder += " (another attempt of this run took it again: the fence changed)"
        return LockLostError(
            f"{what.capitalize()}: this run ({self.owner}) no longer holds the {self.describe()}; {holder}.",
            "Stop writing live state. Nothing after this check was changed; rerun the task to take the lock "
            "again, and heartbeat more often than the lease if it expired.",
            owner=owner, expires=expires,
        )


class HeartbeatThread:
    """Keeps a lock's lease alive from a daemon thread during long steps.

    A LockLostError stops the thread and is kept in `error`; the owner calls `check()` (or
    `lock.assert_held()`) before live writes. Other errors (network) are kept in `failures` and
    retried at the next beat; if they persist the lease runs out and assert_held reports it.
    """

    def __init__(self, lock: DynamoLock, interval: float | None = None) -> None:
        self.lock = lock
        self.interval = interval if interval is not None else lock.lease.total_seconds() / 3
        self.error: LockLostError | None = None
        self.failures: list[Exception] = []
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lock-heartbeat-{lock.collection}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.lock.heartbeat()
                self.beats += 1
            except LockLostError as error:
                self.error = error
                return
            except Exception as error:  # transient (network) failures: keep beating
                self.failures.append(error)

    def check(self) -> None:
        """Re-raise the LockLostError the thread saw, if any."""
        if self.error is not None:
            raise self.error

    def __enter__(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
