"""Scenario 5: corrupted sources are refused by the resolve step with an error naming the file; nothing is swapped.

Four damaged databases were uploaded as they are (their manifests match the damaged bytes,
as when the compactor uploads a database that was already broken): a truncated
`data_level0.bin`, a corrupted page in `chroma.sqlite3`, a missing segment folder and an
unreadable `index_metadata.pickle`. A fifth version was uploaded sound and then had an object
overwritten in S3, so its manifest no longer matches. Each is migrated by name
(`source_version_id`) while the sound seed stays live; five runs in one Airflow process.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from chroma_migrate_testkit.fixtures import cached_database
from tests.conftest import FIXTURE_CACHE
from tests.dags.conftest import SEED_VERSION
from tests.faults.conftest import FAULT_SPEC
from tests.faults.live_state import assert_live_intact, ledger_stages, live_bytes
from tests.faults.runs import run_many

pytestmark = pytest.mark.integration

DAG = "chroma_migration__words"


def _vector_folder(db: Path) -> Path:
    """A segment folder whose index was flushed (it has a pickle), i.e. one holding vectors."""
    return next(p for p in sorted(db.iterdir()) if (p / "index_metadata.pickle").is_file())


def truncate_data_level0(db: Path) -> str:
    path = _vector_folder(db) / "data_level0.bin"
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    return f"{path.parent.name}/data_level0.bin"


def corrupt_a_sqlite_page(db: Path) -> str:
    """Overwrite the root page of the metadata table (documents and metadata live there)."""
    with sqlite3.connect(db / "chroma.sqlite3") as connection:
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'embedding_metadata'").fetchone()[0]
        page = connection.execute("PRAGMA page_size").fetchone()[0]
    with open(db / "chroma.sqlite3", "r+b") as handle:
        handle.seek((root - 1) * page + 8)
        handle.write(b"\xab" * (page - 8))
    return "chroma.sqlite3"


def remove_a_segment_folder(db: Path) -> str:
    folder = _vector_folder(db)
    shutil.rmtree(folder)
    return folder.name


def break_the_pickle(db: Path) -> str:
    path = _vector_folder(db) / "index_metadata.pickle"
    path.write_bytes(b"\x80\x04not a pickle at all")
    return f"{path.parent.name}/index_metadata.pickle"


DAMAGES = {"20250101_000001": truncate_data_level0, "20250101_000002": corrupt_a_sqlite_page,
           "20250101_000003": remove_a_segment_folder, "20250101_000004": break_the_pickle}
TAMPERED = "20250101_000005"


def test_corrupted_sources_are_refused_naming_the_file(system, tmp_path):
    system.seed("words", spec=FAULT_SPEC)
    before = live_bytes(system)
    store, seed = system.s3("words"), cached_database(FIXTURE_CACHE, "1.0.20", FAULT_SPEC)
    named = {}
    for version, damage in DAMAGES.items():
        copy = shutil.copytree(seed, tmp_path / version, ignore=shutil.ignore_patterns(".complete"))
        named[version] = damage(copy)
        store.upload(copy, version)
    store.upload(seed, TAMPERED)
    key = system.layout("words").version_prefix(TAMPERED) + "chroma.sqlite3"
    client = system.moto.client("s3")
    body = bytearray(client.get_object(Bucket=store.bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    client.put_object(Bucket=store.bucket, Key=key, Body=bytes(body))

    versions = [*DAMAGES, TAMPERED]
    runs = run_many(system.env, [(DAG, f"2026-11-0{n + 1}T00:00:00+00:00", {
        "env": "dev", "source_version_id": version, "target_version": None, "strategy": "auto", "batch_size": None,
        "dry_run": False}) for n, version in enumerate(versions)], system.root / "corrupt.log")

    for run in runs:
        assert run.task_states["resolve_source"] == "failed", run.log[-3000:]
        assert run.task_states["acquire_lock"] == "upstream_failed", run.task_states
    truncated, page, missing, pickle, tampered = (run.log for run in runs)
    assert f"/source/{named['20250101_000001']}: has 1000 bytes" in truncated
    assert "/source/chroma.sqlite3: cannot be read as SQLite (database disk image is malformed)" in page
    assert f"/source/{named['20250101_000003']}: is missing" in missing
    assert f"/source/{named['20250101_000004']}: cannot be read (UnpicklingError" in pickle
    assert (f"Snapshot s3://chroma-test-dev/words/snapshot/timestamped/{TAMPERED}/ does not match its manifest: "
            "sha256 mismatch chroma.sqlite3") in tampered
    assert_live_intact(system, before)
    assert system.lock_item("words") is None
    assert store.list_objects("words/snapshot/backups/") == {}
    assert sorted(store.list_versions()) == sorted([SEED_VERSION, *versions]), "nothing new was uploaded"
    assert ledger_stages(system) == {}, "no run got past resolving its source"
