"""Shared fixtures: real databases written by real chromadb versions, cached between runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate.estimate import STATS_ENV
from chroma_migrate.versions import RUNTIME_FILES_ENV
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fixtures import cached_database, receipt_spec
from chroma_migrate_testkit.standins import MotoServer

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CACHE = REPO / ".cache" / "fixtures"
# Releases the tests resolve on demand get their runtime files here, not among the shipped ones.
RESOLVED_FILES = REPO / ".cache" / "resolved-runtime-files"
os.environ.setdefault(RUNTIME_FILES_ENV, str(RESOLVED_FILES))
os.environ.setdefault(STATS_ENV, str(REPO / ".cache" / "throughput.jsonl"))  # the estimates' measured rates
CLI = [sys.executable, "-m", "chroma_migrate"]


def database_copy(version: str, destination: Path, spec: dict[str, Any] | None = None) -> Path:
    """A private copy of the cached fixture database `version` writes for `spec`."""
    cached = cached_database(FIXTURE_CACHE, version, spec or receipt_spec())
    target = destination / f"source-{version}"
    shutil.copytree(cached, target, ignore=shutil.ignore_patterns(".complete"))
    return target


def dump_records(version: str, db: Path) -> dict[str, Any]:
    """What `version`'s own get() returns for every collection (read from a copy, independently of verify)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(db, copy)
        out = Path(scratch) / "dump.json"
        run_worker(version, "dump", {"path": str(copy), "out_file": str(out)})
        return json.loads(out.read_text())


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file below path: proves a command left a database byte-identical."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(path).rglob("*")) if p.is_file()
    }


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"chroma-migrate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    """One real moto server process (S3 and DynamoDB over HTTP on 127.0.0.1) per test session."""
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto_server.log") as server:
        yield server


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    return moto_server.endpoint


@pytest.fixture
def copy_of(tmp_path):
    def make(version: str, spec: dict[str, Any] | None = None) -> Path:
        return database_copy(version, tmp_path, spec)
    return make
