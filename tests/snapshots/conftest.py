"""A real moto server process (S3 + DynamoDB over HTTP) and boto3 clients pointed at it."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chroma_migrate.snapshots import S3SnapshotStore, SnapshotLayout, ensure_tables


def make_client(service: str, endpoint: str) -> Any:
    """A boto3 client for the moto server: fixed region, dummy credentials, no retries hiding errors."""
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


@pytest.fixture(scope="session")
def s3(moto_endpoint: str) -> Any:
    return make_client("s3", moto_endpoint)


@pytest.fixture(scope="session")
def dynamodb(moto_endpoint: str) -> Any:
    return make_client("dynamodb", moto_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"snapshots-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def layout(bucket: str, tmp_path: Path) -> SnapshotLayout:
    return SnapshotLayout(bucket=bucket, collection="receipts", efs_root=tmp_path / "efs")


@pytest.fixture
def store(s3: Any, layout: SnapshotLayout) -> S3SnapshotStore:
    return S3SnapshotStore(s3, layout)


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"locks-{uuid.uuid4().hex[:12]}"
    ensure_tables(dynamodb, name)
    return name


def write_snapshot_dir(path: Path, seed: int = 0, big: int = 0) -> Path:
    """A small database-shaped directory: a sqlite-named file, a segment folder of .bin files."""
    rng = random.Random(seed)
    segment = path / "6f1b0c3e-0000-4000-8000-000000000001"
    segment.mkdir(parents=True)
    (path / "chroma.sqlite3").write_bytes(rng.randbytes(70_000))
    for name, size in [("header.bin", 100), ("data_level0.bin", 1_500_000 + big), ("length.bin", 400),
                       ("link_lists.bin", 0), ("index_metadata.pickle", 900)]:
        (segment / name).write_bytes(rng.randbytes(size))
    return path


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Every file below `path` by relative POSIX path with its bytes: what users compare."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


class RecordingClient:
    """Passes every call to a real client, records (method, key) and can fail a chosen call.

    Used to prove ordering (manifest last) and to interrupt a transfer half-way, against the real server.
    """

    def __init__(self, client: Any, fail_on: tuple[str, int] | None = None) -> None:
        self._client = client
        self.calls: list[tuple[str, str]] = []
        self._fail_on = fail_on
        self._counts: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in {"upload_file", "put_object", "copy", "copy_object", "download_file"}:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            key = kwargs.get("Key") or (args[2] if name in {"upload_file", "copy"} and len(args) > 2 else "")
            if name == "download_file":
                key = args[1]
            self._counts[name] = self._counts.get(name, 0) + 1
            if self._fail_on == (name, self._counts[name]):
                raise ConnectionError(f"simulated failure on {name} #{self._counts[name]}")
            self.calls.append((name, key))
            return target(*args, **kwargs)

        return call


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return write_snapshot_dir(tmp_path / "snapshot")

