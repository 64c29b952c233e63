"""What a user of the snapshots sees after a fault: the pointers, the bytes they name, the records.

Every fault test ends with `assert_live_intact` (nothing live changed: both pointers name the
seeded version and every byte of it in S3 and on EFS is as seeded) or `assert_converged` (both
pointers name one new, complete version whose records equal the seed's), plus the lock and
ledger checks that fit the scenario.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate.exchange import canonical_metadata, record_digest
from chroma_migrate.snapshots.manifest import check_directory, read_manifest_file
from chroma_migrate_testkit.fixtures import cached_database
from tests.conftest import FIXTURE_CACHE, dump_records, tree_digest
from tests.dags.conftest import SEED_VERSION, SnapshotSystem
from tests.engine.records import assert_same_records, spaces_of


@dataclass(frozen=True)
class LiveBytes:
    """The live version as both stores hold it, byte for byte."""

    s3_pointer: str
    efs_pointer: str | None
    s3_objects: dict[str, str]  # key below the version prefix -> sha256
    efs_files: dict[str, str]  # path below the version directory -> sha256


def live_bytes(system: SnapshotSystem, collection: str = "words") -> LiveBytes:
    s3, efs, layout = system.s3(collection), system.efs(collection), system.layout(collection)
    pointer = s3.read_pointer()
    prefix = layout.version_prefix(pointer)
    client = system.moto.client("s3")
    objects = {key[len(prefix):]: hashlib.sha256(client.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
               .hexdigest() for key in s3.list_objects(prefix)}
    efs_pointer = efs.read_pointer()
    files = tree_digest(layout.efs_version_dir(efs_pointer)) if efs_pointer else {}
    return LiveBytes(pointer, efs_pointer, objects, files)


def records_digest(dump: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Per collection of a get() dump (tests.conftest.dump_records): record count and an order-independent
    digest of every record's exact content (the engine's per-record digest, summed)."""
    digests = {}
    for name, collection in dump.items():
        total = 0
        for record_id, record in collection["records"].items():
            one = record_digest(record_id, np.asarray(record["embedding"], dtype=np.float32), record["document"],
                                record["uri"], canonical_metadata(record["metadata"]))
            total = (total + int.from_bytes(one, "big")) % (1 << 128)
        digests[name] = (len(collection["records"]), f"{total:032x}")
    return digests


def assert_live_intact(system: SnapshotSystem, before: LiveBytes, collection: str = "words") -> None:
    """Nothing live changed: both pointers name the version they named before, with the same bytes."""
    after = live_bytes(system, collection)
    assert after.s3_pointer == before.s3_pointer, f"S3 pointer moved to {after.s3_pointer}"
    assert after.efs_pointer == before.efs_pointer, f"EFS pointer moved to {after.efs_pointer}"
    assert after.s3_objects == before.s3_objects, "the live S3 version's objects changed"
    assert after.efs_files == before.efs_files, "the live EFS version's files changed"


def assert_no_partial_version_live(system: SnapshotSystem, collection: str = "words") -> list[str]:
    """Both pointers name a complete version (manifest present, every file matching it); returns the
    version prefixes that are incomplete (an interrupted upload nobody points at)."""
    s3, layout = system.s3(collection), system.layout(collection)
    live = s3.read_pointer()
    assert s3.version_exists(live), f"the S3 pointer names {live}, which has no manifest"
    with tempfile.TemporaryDirectory() as scratch:
        s3.download(live, Path(scratch) / "live")  # checks every object against the manifest
    efs_pointer = system.efs(collection).read_pointer()
    directory = layout.efs_version_dir(efs_pointer)
    manifest = read_manifest_file(directory)
    assert manifest is not None and check_directory(directory, manifest) == [], f"EFS {efs_pointer} is incomplete"
    return [v for v in s3.list_versions() if not s3.version_exists(v)]


@functools.cache
def seed_records(spec_json: str, version: str = "1.0.20") -> dict[str, Any]:
    """What chromadb `version` returns for the seed fixture of a spec (dumped once per session)."""
    return dump_records(version, cached_database(FIXTURE_CACHE, version, json.loads(spec_json)))


def assert_converged(system: SnapshotSystem, spec: dict[str, Any], collection: str = "words", *,
                     copied: bool = False) -> tuple[str, dict[str, tuple[int, str]]]:
    """Both pointers name one new, complete version in 1.5.9's format whose records equal the seed's.

    Returns the new version id and its records' counts and digests as 1.5.9 reads them. Counts
    always match the seed's as 1.0.20 reads them, and so do the digests of l2 and ip collections
    (bit-exact). Cosine ones match too when the files were `copied` (upgrade); a rebuild re-adds
    cosine vectors, and chromadb renormalises them by a few ulps, which assert_same_records allows.
    """
    s3 = system.s3(collection)
    live = s3.read_pointer()
    assert live != SEED_VERSION, "the run did not publish"
    assert system.efs(collection).read_pointer() == live, "S3 and EFS name different versions"
    assert assert_no_partial_version_live(system, collection) == [], "an interrupted upload was left behind"
    manifest = s3.read_manifest(system.layout(collection).version_prefix(live))
    assert manifest["migrated_from"] == SEED_VERSION and manifest["chromadb_version"] == "1.5.9"
    expected = seed_records(json.dumps(spec, sort_keys=True))
    published = dump_records("1.5.9", system.layout(collection).efs_version_dir(live))
    assert_same_records(expected, published, spaces_of(expected))  # names the first record that differs
    digests, seeded = records_digest(published), records_digest(expected)
    spaces = spaces_of(expected)
    for name, (count, digest) in seeded.items():
        assert digests[name][0] == count, f"{name}: {digests[name][0]} records, the seed has {count}"
        if copied or spaces[name] != "cosine":
            assert digests[name][1] == digest, f"{name}: content digest differs from the seed's"
    return live, digests


def ledger_stages(system: SnapshotSystem) -> dict[str, str]:
    """Sort key (stage#index) -> time of every finished step of every run in the dev ledger."""
    return {item["SK"]["S"]: item["updated"]["S"] for item in system.ledger_items()}


def lock_owner(system: SnapshotSystem, collection: str = "words") -> str | None:
    item = system.lock_item(collection)
    return None if item is None else item["owner"]["S"]
