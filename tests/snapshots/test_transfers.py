"""Transfers that use the link (issue 16): objects in parallel, S3 checksums, one staged source per run."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.pipeline import RunPaths
from chroma_migrate.publishing import LiveSide
from chroma_migrate.snapshot_source import download_snapshot
from chroma_migrate.snapshots import EfsSnapshotStore, S3SnapshotStore
from chroma_migrate.snapshots.interfaces import MemoryLedger
from chroma_migrate.snapshots.transfers import checksum_matches, expected_checksum, run_parallel
from tests.snapshots.conftest import tree_bytes, write_snapshot_dir

V1 = "20260101_000000"


def test_objects_run_side_by_side_and_each_finish_is_heard_in_the_calling_thread():
    running, most, lock = [0], [0], threading.Lock()
    heard: list[tuple[int, int, str]] = []

    def work(item: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return item * 2

    results = run_parallel(work, range(12), 4, on_done=lambda n, item, result: heard.append(
        (n, result, threading.current_thread().name)))
    assert sorted(results) == [2 * i for i in range(12)]
    assert most[0] == 4  # never more than the workers, and really in parallel
    assert [n for n, _, _ in heard] == list(range(1, 13))
    assert {name for _, _, name in heard} == {threading.current_thread().name}


def test_the_first_failure_stops_the_transfer_and_is_raised():
    started: list[int] = []

    def work(item: int) -> None:
        started.append(item)
        if item == 2:
            raise OSError("link down")
        time.sleep(0.02)

    with pytest.raises(OSError, match="link down"):
        run_parallel(work, range(1000), 2)
    assert len(started) < 20  # no thousand futures queued behind the failure


def test_expected_checksums_are_what_s3_reports(tmp_path: Path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"abc")
    big.write_bytes(bytes(range(256)) * 48 * 1024)  # 12 MiB: three parts of 5 MiB (the last one shorter)
    digest = hashlib.sha256(b"abc").hexdigest()
    assert expected_checksum(small, digest, 3) == (base64.b64encode(hashlib.sha256(b"abc").digest()).decode(), 1)
    data = big.read_bytes()
    part = 5 * 2**20
    composite = hashlib.sha256(b"".join(hashlib.sha256(data[i:i + part]).digest()
                                        for i in range(0, len(data), part))).digest()
    want = (base64.b64encode(composite).decode(), 3)
    assert expected_checksum(big, hashlib.sha256(data).hexdigest(), len(data), part) == want
    assert checksum_matches(f"{want[0]}-3", want) and checksum_matches(want[0], want)  # AWS, moto
    assert not checksum_matches(f"{want[0]}-2", want) and not checksum_matches(None, want)
    assert not checksum_matches(base64.b64encode(hashlib.sha256(data).digest()).decode(), want)


@pytest.mark.integration
def test_a_run_downloads_its_source_once_and_rehashes_it_before_reuse(
        s3: Any, store: S3SnapshotStore, layout, tmp_path: Path):
    seed = write_snapshot_dir(tmp_path / "seed")
    store.upload(seed, V1)
    gets: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        gets.append(params["url_path"])

    s3.meta.events.register("before-call.s3.GetObject", count)
    try:
        live = LiveSide("receipts", "run-1", store, EfsSnapshotStore(layout), MemoryLedger(), layout)
        paths = RunPaths(tmp_path / "staging" / "receipts" / "run-1")
        first = download_snapshot(live, paths, V1, "staging_root")
        first_files = tree_bytes(seed)
        assert first["manifest_sha256"] and len(gets) == len(first_files) + 1
        gets.clear()
        assert download_snapshot(live, paths, V1, "staging_root") == first  # a retried task: no transfer
        assert gets == []
        victim = paths.source / sorted(first_files)[0]
        victim.write_bytes(b"x" * victim.stat().st_size)  # same size, other bytes: only the hash tells
        download_snapshot(live, paths, V1, "staging_root")
        assert len(gets) == len(first_files) + 1  # downloaded again
        staged = tree_bytes(paths.source)
        staged.pop("manifest.json")
        assert staged == tree_bytes(seed)
    finally:
        s3.meta.events.unregister("before-call.s3.GetObject", count)
