"""Build real databases with any supported chromadb version (tests, demo and benchmark).

The records come from `worker.fixture_data`, written by the version's own chromadb in a
child process, so a fixture is exactly what that version puts on disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.cache_lock import build_once

FIXTURE_FORMAT = 1


def receipt_spec(*, records: int = 600, dim: int = 16, big_dim: int | None = 1536, with_lists: bool = False,
                 missing_documents: bool = True, seed: int = 0) -> dict[str, Any]:
    """`words` (cosine) and `lines` (l2), an ip collection, a log-only one and an empty one.

    Small sync thresholds make the index flush several times, so upserts, deletes and
    re-adds reach the hnsw files while the last few records stay only in the write log.
    """
    collections = [
        {"name": "words", "kind": "word", "dim": dim, "records": records, "with_lists": with_lists,
         "metadata": {"hnsw:space": "cosine", "hnsw:M": 24, "hnsw:construction_ef": 120, "hnsw:batch_size": 50,
                      "hnsw:sync_threshold": 200, "owner": "receipts", "schema_version": 3}},
        {"name": "lines", "kind": "line", "dim": dim, "records": max(records // 2, 1), "with_lists": with_lists,
         "metadata": {"hnsw:space": "l2", "hnsw:batch_size": 50, "hnsw:sync_threshold": 100,
                      "description": "receipt lines ✓"}},
        {"name": "scores_ip", "kind": "line", "dim": dim, "records": 150, "tail": 20,
         "metadata": {"hnsw:space": "ip", "hnsw:search_ef": 50}},
        {"name": "log_only", "kind": "word", "dim": dim, "records": 60, "tail": 60, "history": False},
        {"name": "empty_collection", "kind": "word", "dim": dim, "records": 0, "metadata": {"note": "empty"}},
    ]
    for collection in collections:
        collection["missing_documents"] = missing_documents
    if big_dim:
        collections.append({"name": "words_1536", "kind": "word", "dim": big_dim, "records": 250,
                            "metadata": {"hnsw:space": "cosine", "hnsw:sync_threshold": 100}})
    return {"seed": seed, "collections": collections}


def fidelity_spec(*, embedding_function: bool = False, bool_metadata: bool = True) -> dict[str, Any]:
    """Everything a persistent directory can hold beyond records: two tenants and databases with
    same-named collections, an empty database, typed collection metadata, identical vectors
    under different ids, many small index flushes with churn, a dropped collection whose files
    stay behind, 3,072 dimensions, and (1.x) a named embedding function."""
    typed = {"flag": True, "count": 3, "ratio": 1.5, "owner": "receipts"} if bool_metadata else {
        "count": 3, "ratio": 1.5, "owner": "receipts"}
    collections: list[dict[str, Any]] = [
        {"name": "words", "kind": "word", "dim": 16, "records": 300,
         "metadata": {"hnsw:space": "cosine", "hnsw:sync_threshold": 100, **typed}},
        {"name": "words", "tenant": "tenant_two", "database": "db_two", "kind": "line", "dim": 16, "records": 200,
         "image_seed": 11, "metadata": {"hnsw:space": "l2", "team": "second tenant"}},
        {"name": "twins", "kind": "word", "dim": 16, "records": 120, "duplicates": 15,
         "metadata": {"hnsw:space": "l2"}},
        {"name": "churn", "kind": "line", "dim": 64, "records": 1500, "tail": 7,
         "metadata": {"hnsw:space": "l2", "hnsw:batch_size": 10, "hnsw:sync_threshold": 20}},
        {"name": "dropped", "kind": "word", "dim": 16, "records": 150, "drop": True},
        {"name": "wide", "kind": "word", "dim": 3072, "records": 60, "metadata": {"hnsw:space": "cosine"}},
    ]
    if embedding_function:
        collections.append({"name": "embedded", "kind": "word", "dim": 16, "records": 80,
                            "metadata": {"hnsw:space": "cosine"},
                            "embedding_function": {"api_key_env_var": "CHROMA_MIGRATE_TEST_HF_KEY",
                                                   "model_name": "sentence-transformers/all-MiniLM-L6-v2"}})
    return {"seed": 5, "collections": collections,
            "databases": [{"tenant": "tenant_two", "name": "db_two"}, {"tenant": "tenant_two", "name": "db_empty"}]}


def spec_key(version: str, spec: dict[str, Any]) -> str:
    text = json.dumps({"format": FIXTURE_FORMAT, "version": version, "spec": spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_database(path: Path, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Write a fresh database at `path` with chromadb `version`."""
    resolve_version(version)
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return run_worker(version, "build_fixture", {"path": str(path), "spec": spec}).data


def cached_database(cache_dir: Path, version: str, spec: dict[str, Any]) -> Path:
    """A database built once per (version, spec) and reused; callers copy it before use."""
    target = Path(cache_dir) / f"chromadb-{version}-{spec_key(version, spec)}"

    def build() -> None:
        staging = target.with_name(target.name + ".building")
        build_database(staging, version, spec)
        (staging / ".complete").write_text(json.dumps({"version": version, "spec": spec}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)

    build_once(target, (target / ".complete").is_file, build)
    return target
