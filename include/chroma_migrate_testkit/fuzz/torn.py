"""Torn and in-flight copies, made with the real writers: what a backup taken mid-write looks like.

- A hot journal: the folder copied while SQLite (the engine chromadb writes through) is in
  the middle of a transaction whose pages have already reached the file.
- Index files newer or older than chroma.sqlite3: the database grown by its own chromadb
  version (more records, flushed into the index), then the SQLite file of one moment put
  beside the segment folders of the other, as a copy that reads the two at different times.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from chroma_migrate.exchange import RecordBatch, canonical_metadata, write_batch
from chroma_migrate.worker_client import run_worker

SQLITE = "chroma.sqlite3"


def copy_mid_transaction(source: Path, destination: Path) -> Path:
    """Copy `source` while a write transaction on it has spilled pages into the file; then roll it back.

    The copy holds a hot `chroma.sqlite3-journal` and a database file with half the write in it;
    the source ends exactly as it was.
    """
    conn = sqlite3.connect(Path(source) / SQLITE, isolation_level=None)
    try:
        conn.execute("PRAGMA cache_size = 1")  # dirty pages spill into the file before the commit
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE embedding_metadata SET string_value = string_value || ' (rewritten)' "
                     "WHERE string_value IS NOT NULL")
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".complete"))
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return Path(destination)


def grown(source: Path, destination: Path, version: str, collection: str = "words", records: int = 260,
          seed: int = 15) -> Path:
    """A copy of `source` with `records` more records added to `collection` by chromadb `version` itself
    (enough to pass the collection's sync threshold, so the index is flushed with them)."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".complete"))
    with sqlite3.connect(f"file:{Path(destination, SQLITE).resolve()}?mode=ro", uri=True) as conn:
        dimension = conn.execute("SELECT dimension FROM collections WHERE name = ?", (collection,)).fetchone()[0]
    conn.close()
    rng = np.random.default_rng(seed)
    ids = [f"TORN#{i:05d}" for i in range(records)]
    batch = RecordBatch(ids, rng.standard_normal((records, dimension)).astype(np.float32),
                        [f"added after the first copy {i}" for i in range(records)], [None] * records,
                        [canonical_metadata({"torn": i}) for i in range(records)])
    with tempfile.TemporaryDirectory(prefix="chroma-torn-") as scratch:
        file = Path(scratch) / "batch.parquet"
        write_batch(batch, file)
        run_worker(version, "load", {"path": str(destination), "jobs": [
            {"collection": {"name": collection}, "files": [str(file)]}], "mode": "add"})
    return Path(destination)


def combine(sqlite_from: Path, folders_from: Path, destination: Path) -> Path:
    """chroma.sqlite3 of one database beside the segment folders of another (the same database, later or earlier)."""
    destination = Path(destination)
    shutil.copytree(folders_from, destination, ignore=shutil.ignore_patterns(".complete", SQLITE, f"{SQLITE}-*"))
    shutil.copy2(Path(sqlite_from) / SQLITE, destination / SQLITE)
    return destination
