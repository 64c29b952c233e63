"""Local stand-ins for the production system: a moto server for S3 and DynamoDB, a folder
for EFS, and seeded snapshots in the production layout. Used by `make demo` and the tests.

Nothing else in the package knows these are stand-ins: the code talks to them through
boto3 / the Amazon provider with an endpoint_url, and to a directory as it would to EFS.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.s3_store import S3SnapshotStore

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """A real `moto_server` process on 127.0.0.1, stopped by process id on exit."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        executable = Path(sys.executable).parent / "moto_server"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"moto_server did not start on {self.endpoint}: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint, timeout=1).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def __exit__(self, *exc_info: Any) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def airflow_env(self, conn_id: str = "aws_default") -> dict[str, str]:
        """The Airflow connection (with endpoint_url) and credentials as environment variables."""
        connection = {"conn_type": "aws", "extra": {"endpoint_url": self.endpoint, "region_name": REGION}}
        return {**CREDENTIALS, f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}


def seed_snapshot(s3_client: Any, layout: SnapshotLayout, database: Path, version_id: str) -> None:
    """Publish a database as the live version the way the compactor would: S3 prefix, pointer, EFS."""
    with contextlib.suppress(s3_client.exceptions.BucketAlreadyOwnedByYou):
        s3_client.create_bucket(Bucket=layout.bucket)
    store = S3SnapshotStore(s3_client, layout)
    store.upload(database, version_id, {"seeded_by": "chroma_migrate_testkit.standins"})
    store.write_pointer(version_id)
    efs = EfsSnapshotStore(layout)
    efs.materialize(database, version_id)
    efs.switch_pointer(version_id)


def copy_database(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".complete"))
    return destination
