"""The compactor's DynamoDB lock against a real moto server: exclusion, expiry, heartbeat, ownership."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chroma_migrate.snapshots import DynamoLock, HeartbeatThread, LockHeldError, LockLostError, new_owner_id

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
KEY = {"PK": {"S": "LOCK#receipts#chroma-receipts-update"}, "SK": {"S": "LOCK"}}


def lock(dynamodb: Any, table: str, owner: str | None = None, minutes: int = 10) -> DynamoLock:
    return DynamoLock(dynamodb, table, "receipts", owner or new_owner_id(), timedelta(minutes=minutes))


def test_acquire_writes_the_compactors_item(dynamodb: Any, table: str) -> None:
    mine = lock(dynamodb, table)
    mine.acquire(now=T0)
    item = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True)["Item"]
    assert item == {**KEY, "owner": {"S": mine.owner}, "expires": {"S": "2024-05-01T12:10:00+00:00"},
                    "heartbeat": {"S": "2024-05-01T12:00:00+00:00"}, "fence": {"S": mine.fence}}
    assert re.fullmatch(r"[0-9a-f-]{36}", mine.owner)
    assert re.fullmatch(r"[0-9a-f]{32}", mine.fence)


def test_a_second_attempt_of_the_same_owner_fences_out_the_first(dynamodb: Any, table: str) -> None:
    """A zombie task (same run, same owner) must not pass the check once a retry re-entered the lock."""
    owner = new_owner_id()
    zombie, retry = lock(dynamodb, table, owner), lock(dynamodb, table, owner)
    zombie.acquire(now=T0)
    retry.acquire(now=T0 + timedelta(minutes=1))
    assert retry.fence != zombie.fence
    retry.assert_held(now=T0 + timedelta(minutes=2))
    with pytest.raises(LockLostError, match="the fence changed"):
        zombie.assert_held(now=T0 + timedelta(minutes=2))
    with pytest.raises(LockLostError):
        zombie.heartbeat(now=T0 + timedelta(minutes=2))
    assert retry.read()["fence"] == retry.fence


def test_a_compactor_takeover_drops_the_fence_and_we_find_out(dynamodb: Any, table: str) -> None:
    """The compactor's own put replaces the item (no fence); after it released, our old handle is still out."""
    owner = new_owner_id()
    mine = lock(dynamodb, table, owner)
    mine.acquire(now=T0)
    compactor = lock(dynamodb, table)
    compactor.acquire(now=T0 + timedelta(minutes=11))  # our lease ran out
    assert compactor.release() is True
    again = lock(dynamodb, table, owner)
    again.acquire(now=T0 + timedelta(minutes=12))  # a later task of the same run
    with pytest.raises(LockLostError):
        mine.assert_held(now=T0 + timedelta(minutes=12))
    again.assert_held(now=T0 + timedelta(minutes=12))


def test_a_held_lock_is_refused_naming_its_owner_and_expiry(dynamodb: Any, table: str) -> None:
    compactor = lock(dynamodb, table)
    compactor.acquire(now=T0)
    with pytest.raises(LockHeldError) as caught:
        lock(dynamodb, table).acquire(now=T0 + timedelta(minutes=9))
    assert caught.value.owner == compactor.owner
    assert caught.value.expires == "2024-05-01T12:10:00+00:00"
    assert compactor.owner in str(caught.value) and "2024-05-01T12:10:00+00:00" in str(caught.value)
    assert compactor.read()["owner"] == compactor.owner


def test_the_same_owner_can_acquire_again_after_a_task_retry(dynamodb: Any, table: str) -> None:
    owner = new_owner_id()
    lock(dynamodb, table, owner).acquire(now=T0)
    lock(dynamodb, table, owner).acquire(now=T0 + timedelta(minutes=1))
    assert lock(dynamodb, table, owner).read()["expires"] == "2024-05-01T12:11:00+00:00"


def test_an_expired_lock_is_taken_over_and_the_old_owner_finds_out(dynamodb: Any, table: str) -> None:
    old = lock(dynamodb, table)
    old.acquire(now=T0)
    new = lock(dynamodb, table)
    later = T0 + timedelta(minutes=11)
    new.acquire(now=later)
    assert new.read()["owner"] == new.owner

    with pytest.raises(LockLostError) as caught:
        old.assert_held(now=later)
    assert caught.value.owner == new.owner and caught.value.expires == "2024-05-01T12:21:00+00:00"
    assert new.owner in str(caught.value) and "2024-05-01T12:21:00+00:00" in str(caught.value)
    with pytest.raises(LockLostError):
        old.heartbeat(now=later)
    assert old.release() is False
    assert new.read()["owner"] == new.owner
    new.assert_held(now=later)


def test_a_compactor_item_written_with_another_iso_suffix_still_expires(dynamodb: Any, table: str) -> None:
    dynamodb.put_item(TableName=table, Item={**KEY, "owner": {"S": "compactor-uuid"},
                                             "expires": {"S": "2024-05-01T11:59:59.123456Z"},
                                             "heartbeat": {"S": "2024-05-01T11:49:59Z"}})
    with pytest.raises(LockHeldError, match="compactor-uuid"):
        lock(dynamodb, table).acquire(now=datetime(2024, 5, 1, 11, 59, 58, tzinfo=UTC))
    lock(dynamodb, table).acquire(now=T0)


def test_heartbeat_extends_the_lease_and_assert_held_checks_expiry(dynamodb: Any, table: str) -> None:
    mine = lock(dynamodb, table)
    mine.acquire(now=T0)
    mine.heartbeat(now=T0 + timedelta(minutes=8))
    item = mine.read()
    assert item["expires"] == "2024-05-01T12:18:00+00:00" and item["heartbeat"] == "2024-05-01T12:08:00+00:00"
    mine.assert_held(now=T0 + timedelta(minutes=17))
    with pytest.raises(LockLostError, match=mine.owner):
        mine.assert_held(now=T0 + timedelta(minutes=18))  # our own lease ran out: the compactor may take it


def test_release_only_by_the_owner(dynamodb: Any, table: str) -> None:
    mine = lock(dynamodb, table)
    mine.acquire(now=T0)
    assert lock(dynamodb, table).release() is False
    assert mine.read()["owner"] == mine.owner
    assert mine.release() is True
    assert mine.read() is None
    assert mine.release() is False
    with pytest.raises(LockLostError, match="gone"):
        mine.assert_held()
    with pytest.raises(LockLostError, match="gone"):
        mine.heartbeat()


def test_times_are_always_written_in_one_utc_format(dynamodb: Any, table: str) -> None:
    mine = lock(dynamodb, table)
    mine.acquire()
    item = mine.read()
    assert ISO.fullmatch(item["expires"]) and ISO.fullmatch(item["heartbeat"])
    mine.assert_held()


def test_heartbeat_thread_keeps_the_lease_and_reports_a_stolen_lock(dynamodb: Any, table: str) -> None:
    mine = DynamoLock(dynamodb, table, "receipts", new_owner_id(), lease=timedelta(seconds=30))
    mine.acquire(now=T0)
    with HeartbeatThread(mine, interval=0.1) as beating:
        deadline = time.monotonic() + 10
        while beating.beats < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beating.beats >= 2 and beating.error is None
        assert mine.read()["expires"] > "2024-05-01T12:00:30+00:00"
        mine.assert_held()
        dynamodb.put_item(TableName=table, Item={**KEY, "owner": {"S": "compactor"},
                                                 "expires": {"S": "2999-01-01T00:00:00+00:00"}})
        while beating.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockLostError, match="compactor"):
            beating.check()
    assert mine.read()["owner"] == "compactor"
