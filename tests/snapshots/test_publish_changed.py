"""Publishing at the cost of what changed (issue 16), counted on the wire to the real moto server.

Every S3 request goes through a counting proxy in front of the moto server (tests/faults/
fault_proxy.py with no faults), so "uploaded" and "copied" are what the server was asked to do:
a PUT with a body versus a PUT with `x-amz-copy-source`. The databases are real: written by
chromadb 1.0.20 and upgraded by chromadb 1.5.9 opening a copy, as the engine's upgrade does.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.publishing import LiveSide, publish
from chroma_migrate.snapshots import EfsSnapshotStore, S3SnapshotStore, SnapshotIntegrityError, SnapshotLayout
from chroma_migrate.snapshots.interfaces import MemoryLedger
from chroma_migrate.snapshots.manifest import build_manifest
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fixtures import cached_database, receipt_spec
from tests.conftest import FIXTURE_CACHE
from tests.faults.fault_proxy import FaultProxy, FaultRules, Request
from tests.snapshots.conftest import make_client, tree_bytes

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=300, dim=16, big_dim=None)
LIVE, NEW, FULL = "20260101_000000", "20260102_000000", "20260103_000000"


class CountingProxy:
    """S3 operations as the server saw them: PutObject (bytes sent) and CopyObject (server-side)."""

    def __init__(self, upstream: str) -> None:
        self.seen: list[tuple[str, str]] = []
        rules = FaultRules(fail_first_per_operation=0, lose_first_conditional_answer=False, always_fail=self._see)
        self.proxy = FaultProxy(upstream, rules)

    def _see(self, request: Request) -> bool:
        if request.service == "s3":
            self.seen.append((request.operation, request.key))
        return False

    def __enter__(self) -> CountingProxy:
        self.proxy.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.proxy.__exit__(*exc_info)

    def client(self) -> Any:
        return make_client("s3", self.proxy.endpoint)

    def writes_under(self, prefix: str) -> Counter:
        """PutObject / CopyObject requests for keys below `prefix` (bucket name stripped)."""
        return Counter(operation for operation, key in self.seen
                       if key.startswith(prefix) and operation in ("PutObject", "CopyObject"))

    def reset(self) -> None:
        self.seen.clear()


@pytest.fixture
def counting(moto_endpoint: str) -> Any:
    with CountingProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> dict[str, Path]:
    """The source (1.0.20), its upgrade by 1.5.9 opening a copy, and a rebuild (a fresh 1.5.9 database)."""
    root = tmp_path_factory.mktemp("publish-changed")
    source = root / "source"
    shutil.copytree(cached_database(FIXTURE_CACHE, "1.0.20", SPEC), source)
    (source / ".complete").unlink(missing_ok=True)
    upgraded = root / "upgraded"
    shutil.copytree(source, upgraded)
    run_worker("1.5.9", "describe", {"path": str(upgraded)})  # the upgrade: the target opens a copy
    rebuilt = root / "rebuilt"
    shutil.copytree(cached_database(FIXTURE_CACHE, "1.5.9", SPEC), rebuilt)
    (rebuilt / ".complete").unlink(missing_ok=True)
    return {"source": source, "upgraded": upgraded, "rebuilt": rebuilt}


def _changed_and_same(old: Path, new: Path) -> tuple[set[str], set[str]]:
    """Files of `new` whose bytes (sha256 and size) `old` does not hold anywhere, and those it does."""
    before = {(entry["sha256"], entry["size"]) for entry in build_manifest(old, LIVE)["files"].values()}
    after = build_manifest(new, LIVE)["files"]
    same = {name for name, entry in after.items() if (entry["sha256"], entry["size"]) in before}
    return set(after) - same, same


def _seeded(client: Any, layout: SnapshotLayout, source: Path) -> S3SnapshotStore:
    client.create_bucket(Bucket=layout.bucket)
    store = S3SnapshotStore(client, layout)
    store.upload(source, LIVE, {"seeded_by": "test"})
    store.write_pointer(LIVE)
    return store


def test_an_upgrade_uploads_only_changed_files_and_downloads_like_a_full_upload(
        counting: CountingProxy, databases: dict[str, Path], layout: SnapshotLayout, tmp_path: Path):
    changed, same = _changed_and_same(databases["source"], databases["upgraded"])
    assert "chroma.sqlite3" in changed  # every 1.x open writes it
    assert sum(name.endswith(".bin") for name in same) >= 4  # compacted segments keep their HNSW files
    store = _seeded(counting.client(), layout, databases["source"])
    counting.reset()

    manifest, report = store.upload_changed(databases["upgraded"], NEW, {"run_key": "r1"}, previous=LIVE)
    new_prefix = layout.version_prefix(NEW)
    on_server = counting.writes_under(new_prefix)
    assert on_server == Counter({"PutObject": len(changed) + 1, "CopyObject": len(same)})  # + manifest.json
    assert (report.uploaded_files, report.copied_files) == (len(changed), len(same))
    assert report.copied_bytes == sum(manifest["files"][name]["size"] for name in same)
    assert report.uploaded_bytes == sum(manifest["files"][name]["size"] for name in changed)
    assert counting.seen[-1] == ("PutObject", new_prefix + "manifest.json")  # the manifest last

    full = store.upload_changed(databases["upgraded"], FULL, {"run_key": "r1"})[1]  # no previous: as before
    assert (full.uploaded_files, full.copied_files) == (len(manifest["files"]), 0)
    copied = store.download(NEW, tmp_path / "copied")
    sent = store.download(FULL, tmp_path / "sent")
    assert copied["files"] == sent["files"] == manifest["files"]
    assert tree_bytes(tmp_path / "copied") == {**tree_bytes(tmp_path / "sent"),
                                               "manifest.json": (tmp_path / "copied" / "manifest.json").read_bytes()}
    assert {k: v for k, v in tree_bytes(tmp_path / "copied").items() if k != "manifest.json"} == tree_bytes(
        databases["upgraded"])


def test_a_rebuild_whose_files_all_changed_uploads_everything(
        counting: CountingProxy, databases: dict[str, Path], layout: SnapshotLayout):
    changed, same = _changed_and_same(databases["source"], databases["rebuilt"])
    # New segments, new index: only tiny files that happen to hold the same bytes (an empty
    # link_lists.bin, a header) exist in the source, under other segments' names.
    assert not any(name.endswith(("data_level0.bin", "chroma.sqlite3")) for name in same)
    store = _seeded(counting.client(), layout, databases["source"])
    counting.reset()
    manifest, report = store.upload_changed(databases["rebuilt"], NEW, {}, previous=LIVE)
    on_server = counting.writes_under(layout.version_prefix(NEW))
    assert on_server == Counter({"PutObject": len(changed) + 1, **({"CopyObject": len(same)} if same else {})})
    total = sum(entry["size"] for entry in manifest["files"].values())
    assert report.uploaded_bytes == total - report.copied_bytes and report.copied_bytes < total / 100


def test_a_previous_object_that_is_not_what_its_manifest_says_fails_the_upload(
        s3: Any, databases: dict[str, Path], layout: SnapshotLayout):
    """The checksum check guards the copies: same size, other bytes in the previous version's object."""
    store = _seeded(s3, layout, databases["source"])
    _, same = _changed_and_same(databases["source"], databases["upgraded"])
    victim = sorted(name for name in same if name.endswith("data_level0.bin"))[0]
    key = layout.version_prefix(LIVE) + victim
    original = (databases["source"] / victim).read_bytes()
    s3.put_object(Bucket=layout.bucket, Key=key, Body=bytes(reversed(original)))  # same size, other bytes
    with pytest.raises(SnapshotIntegrityError, match="does not match its manifest") as caught:
        store.upload_changed(databases["upgraded"], NEW, {}, previous=LIVE)
    assert caught.value.keys == [layout.version_prefix(NEW) + victim]
    assert not store.version_exists(NEW)  # no manifest: the version is not complete


def test_multipart_uploads_and_copies_are_checked_by_their_composite_checksum(
        s3: Any, layout: SnapshotLayout, tmp_path: Path):
    """Parts of 5 MiB (S3's smallest) so a 12 MiB file is sent and copied in parts."""
    old, new = tmp_path / "old", tmp_path / "new"
    for root, tail in ((old, b"a"), (new, b"b")):
        (root / "seg").mkdir(parents=True)
        (root / "seg" / "data_level0.bin").write_bytes(bytes(range(256)) * (12 * 4096))
        (root / "chroma.sqlite3").write_bytes(tail * 6 * 2**20)
    s3.create_bucket(Bucket=layout.bucket)
    store = S3SnapshotStore(s3, layout, part_bytes=5 * 2**20)
    store.upload(old, LIVE)
    manifest, report = store.upload_changed(new, NEW, {}, previous=LIVE)
    assert (report.copied_files, report.uploaded_files) == (1, 1)
    assert store.download(NEW, tmp_path / "back")["files"] == manifest["files"]

    # A copied part that differs is caught: tamper the old object, copy again under a third id.
    (tmp_path / "evil").write_bytes(b"x" * (12 * 2**20))
    s3.upload_file(str(tmp_path / "evil"), layout.bucket, layout.version_prefix(LIVE) + "seg/data_level0.bin")
    with pytest.raises(SnapshotIntegrityError, match=r"seg/data_level0\.bin"):
        store.upload_changed(new, FULL, {}, previous=LIVE)


def test_the_efs_copy_takes_unchanged_files_from_the_previous_version_and_repairs_a_bad_one(
        databases: dict[str, Path], layout: SnapshotLayout):
    efs = EfsSnapshotStore(layout)
    efs.materialize(databases["source"], LIVE)
    efs.switch_pointer(LIVE)
    _, same = _changed_and_same(databases["source"], databases["upgraded"])
    victim = sorted(name for name in same if name.endswith("data_level0.bin"))[0]
    damaged = layout.efs_version_dir(LIVE) / victim
    damaged.write_bytes(bytes(reversed(damaged.read_bytes())))  # a reader wrote to the live copy
    target, report = efs.materialize_changed(databases["upgraded"], NEW, previous=LIVE)
    assert report.from_previous_files == len(same) and report.previous == LIVE
    served = tree_bytes(target)
    served.pop("manifest.json")
    assert served == tree_bytes(databases["upgraded"])  # the damaged file was taken from the staged copy
    for name in same:  # copies, never links: writing one version cannot change the other
        assert (target / name).stat().st_ino != (layout.efs_version_dir(LIVE) / name).stat().st_ino


def test_publish_reports_what_moved(s3: Any, databases: dict[str, Path], layout: SnapshotLayout):
    store = _seeded(s3, layout, databases["source"])
    efs = EfsSnapshotStore(layout)
    efs.materialize(databases["source"], LIVE)
    efs.switch_pointer(LIVE)
    lines: list[str] = []
    live = LiveSide("receipts", "run-1", store, efs, MemoryLedger(), layout, log=lines.append)
    outcome = publish(live, databases["upgraded"], source_version_id=LIVE, manifest={"strategy": "upgrade"})
    _, same = _changed_and_same(databases["source"], databases["upgraded"])
    assert outcome["s3_transfer"]["copied_files"] == len(same) and outcome["s3_transfer"]["seconds"] > 0
    assert outcome["efs_transfer"]["from_previous_files"] == len(same)
    assert any("copied" in line and "inside S3" in line for line in lines)
    assert store.read_pointer() == efs.read_pointer() == outcome["version_id"]
