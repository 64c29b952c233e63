"""What readers see while `publish` and `rollback` swap the pointers: the downtime window, measured.

Reader threads keep doing what the services do, for the whole of a DAG run that publishes and
then of one that rolls back: EFS readers resolve the EFS pointer and open the version it names
with a real chromadb (on a private copy, since 1.x writes to whatever it opens), S3 readers
resolve the S3 pointer and download that version, checked against its manifest. Every read must
succeed and see either the old version or the new one, complete (every collection's count).
The figures (reads, failures, longest pause between two successful reads) are printed for
docs/faults.md.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chroma_migrate.inspection import describe_database
from chroma_migrate.worker_client import run_worker
from tests.airflow_harness.harness import run_dag_test
from tests.dags.conftest import SEED_VERSION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READER_VERSION = "1.5.9"


@dataclass
class Reads:
    """What one reader saw: (finished at, version, counts or the error)."""

    kind: str
    seen: list[tuple[float, str | None, dict | str]] = field(default_factory=list)

    @property
    def failures(self) -> list[tuple[float, str | None, dict | str]]:
        return [read for read in self.seen if isinstance(read[2], str)]

    def longest_pause(self) -> float:
        times = [at for at, _version, answer in self.seen if not isinstance(answer, str)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _open_and_count(db: Path) -> dict[str, int]:
    described = run_worker(READER_VERSION, "describe", {"path": str(db)}).data
    return {c["name"]: c["count"] for c in described["collections"]}


def _efs_read(system) -> tuple[str | None, dict | str]:
    version = system.efs("words").read_pointer()
    with tempfile.TemporaryDirectory(prefix="efs-reader-") as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(system.layout("words").efs_version_dir(version), copy)
        return version, _open_and_count(copy)


def _s3_read(system) -> tuple[str | None, dict | str]:
    store = system.s3("words")
    version = store.read_pointer()
    with tempfile.TemporaryDirectory(prefix="s3-reader-") as scratch:
        store.download(version, Path(scratch) / "db")  # checked against the version's manifest
        return version, _open_and_count(Path(scratch) / "db")


def _keep_reading(reads: Reads, read, system, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            version, answer = read(system)
        except Exception as error:  # every kind of failure is a failed read, counted
            version, answer = None, f"{type(error).__name__}: {error}"
        reads.seen.append((time.monotonic(), version, answer))


def _run_with_readers(system, dag_id: str) -> tuple[object, list[Reads]]:
    stop = threading.Event()
    readers = [Reads("efs"), Reads("efs"), Reads("s3")]
    threads = [threading.Thread(target=_keep_reading, args=(r, _efs_read if r.kind == "efs" else _s3_read, system,
                                                            stop), daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    time.sleep(3)  # every reader has read the old version before the run starts
    try:
        result = run_dag_test(system.env, dag_id, conf={"env": "dev"}, timeout_s=900)
        time.sleep(3)  # and reads the new one after it ended
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return result, readers


def _assert_seamless(readers: list[Reads], expected: dict[str, dict[str, int]], label: str) -> None:
    for reads in readers:
        assert not reads.failures, (label, reads.kind, reads.failures[:3])
        versions = [version for _at, version, _answer in reads.seen]
        assert set(versions) <= set(expected), (label, versions)
        for _at, version, counts in reads.seen:
            assert counts == expected[version], (label, reads.kind, version, counts)
        print(f"{label}: {reads.kind} reader: {len(reads.seen)} reads, 0 failures, versions "
              f"{' -> '.join(dict.fromkeys(versions))}, longest pause between reads {reads.longest_pause():.1f} s")


def test_readers_see_no_downtime_during_a_publish_and_a_rollback(system):
    seed = system.seed("words")
    old_counts = {c.name: c.records for c in describe_database(seed).collections}
    migrated, readers = _run_with_readers(system, "chroma_migration__words")
    assert migrated.state == "success", migrated.summary()
    new_version = system.s3("words").read_pointer()
    assert new_version != SEED_VERSION
    expected = {SEED_VERSION: old_counts, new_version: old_counts}  # the migration keeps every record
    _assert_seamless(readers, expected, "publish")
    assert {v for r in readers for _at, v, _a in r.seen} == {SEED_VERSION, new_version}

    rolled_back, readers = _run_with_readers(system, "chroma_rollback__words")
    assert rolled_back.state == "success", rolled_back.summary()
    assert system.s3("words").read_pointer() == SEED_VERSION
    _assert_seamless(readers, expected, "rollback")
