"""Answer where/where_document queries on a database and on a fresh one holding a sample of it.

Runs inside a chromadb runtime. The fresh database is written by this runtime's own chromadb
from the sampled records, so it answers the way this version answers those records; a target
that answers differently has a broken full-text index or metadata (see `fulltext_queries.py`).
Run with no target path, it gives the version's own answers on the sample, which is how the
engine tells behaviour changes between two versions from damage.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile, exchange
from chroma_migrate.worker.chroma_client import (
    IS_RUST_CORE,
    VERSION,
    Clients,
    get_collection,
    max_batch_size,
    open_client,
    write_records,
)
from chroma_migrate.worker.sample_database import SampleDatabaseError, write_sample_database

# An answer larger than this comes back as its count and digest only (the ids would flood the reply).
ANSWER_IDS_LIMIT = 20_000
DEFAULT_NEAR_RESULTS = 10


def text_queries(path: str | None, jobs: list[dict[str, Any]], scratch_dir: str | None = None,
                 whole_target: bool = False) -> dict[str, Any]:
    """Worker operation: open `path` (None: fresh answers only) and answer every job's queries
    (`whole_target`: a 1.x target is asked itself, not its sample database; for the tests that
    hold the two to the same answers)."""
    return answer_text_queries(Clients(path) if path else None, jobs, scratch_dir, whole_target)


def answer_text_queries(target: Any, jobs: list[dict[str, Any]], scratch_dir: str | None = None,
                        whole_target: bool = False) -> dict[str, Any]:
    """Per job: the sampled ids each query returns on `target` and on a fresh database of this version.

    `target` is a `chroma_client.Clients`, a chromadb client or None; it lets the load and describe
    operations answer while they have the target open, without a second process.
    Each job: `label`, `collection`, optional `tenant`/`database`, `sample_file` (exchange Parquet),
    `metadata` (collection metadata for the fresh copy, e.g. hnsw:space) and `queries`
    ([{key, where, where_document}]). A query this version rejects comes back with its error.
    """
    scratch = Path(tempfile.mkdtemp(prefix="text-queries-", dir=scratch_dir))
    fresh_client = None
    try:
        fresh_path = scratch / "fresh"
        fresh_path.mkdir()
        samples = {job["label"]: exchange.read_batch(Path(job["sample_file"])) for job in jobs}
        target, asked_of = (target, "target") if whole_target else _sampled_target(target, jobs, samples, scratch)
        answers: dict[str, Any] = {}
        for number, job in enumerate(jobs):
            records = samples[job["label"]]
            started = time.perf_counter()
            if fresh_client is None:
                fresh_client = open_client(str(fresh_path))
            try:
                fresh = _build_fresh(fresh_client, f"fresh_{number:04d}", job.get("metadata"), records)
            except Exception as exc:  # e.g. list metadata in a version without it: nothing to compare with
                answers[job["label"]] = {"sample_size": len(records), "answers": [], "error": _describe(exc)}
                continue
            built = time.perf_counter()
            handle = None
            if target is not None:
                try:
                    handle = _target_collection(target, job)
                except Exception as exc:  # each version raises its own "does not exist" type
                    answers[job["label"]] = {"sample_size": len(records), "answers": [],
                                             "target_error": _describe(exc)}
                    continue
            queried: list[dict[str, Any]] = []
            target_seconds = fresh_seconds = 0.0
            for query in job["queries"]:
                answer: dict[str, Any] = {"key": query["key"]}
                lap = time.perf_counter()
                answer["fresh"], answer["fresh_error"] = _ask(fresh, records.ids, query)
                fresh_seconds += time.perf_counter() - lap
                if handle is not None:
                    lap = time.perf_counter()
                    answer["target"], answer["target_error"] = _ask(handle, records.ids, query)
                    target_seconds += time.perf_counter() - lap
                queried.append(answer)
            answers[job["label"]] = {
                "sample_size": len(records), "answers": queried, "asked_of": asked_of,
                "seconds": {"fresh_build": round(built - started, 4), "fresh_queries": round(fresh_seconds, 4),
                            "target_queries": round(target_seconds, 4)},
            }
        return {"version": ".".join(map(str, VERSION)), "jobs": answers}
    finally:
        if fresh_client is not None and hasattr(fresh_client, "close"):
            with contextlib.suppress(Exception):  # best effort: the folder goes away anyway
                fresh_client.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _sampled_target(target: Any, jobs: list[dict[str, Any]], samples: dict[str, exchange.RecordBatch],
                    scratch: Path) -> tuple[Any, str]:
    """For a 1.x target, the clients of a copy holding only its rows of the sampled records
    (sample_database.py: same answers on the sample, without 1.x's scan of every record per
    query), and what was asked: "sample database", or "target" where no such copy can be made
    (a 0.x target applies `ids` first, a plain chromadb client has no path)."""
    if target is None or not IS_RUST_CORE or not isinstance(target, Clients):
        return target, "target"
    try:
        out = write_sample_database(Path(target.path), scratch / "sampled-target",
                                    {_where(job): samples[job["label"]].ids for job in jobs})
    except (SampleDatabaseError, sqlite3.Error) as exc:
        return target, f"target (no sample database: {exc})"
    return Clients(str(out)), "sample database"


def _where(job: dict[str, Any]) -> tuple[str, str, str]:
    return (job.get("tenant") or dbfile.DEFAULT_TENANT, job.get("database") or dbfile.DEFAULT_DATABASE,
            job["collection"])


def _target_collection(target: Any, job: dict[str, Any]):
    """The job's collection on the target, whichever kind of client the caller holds."""
    tenant, database, _ = _where(job)
    if hasattr(target, "for_database"):
        return get_collection(target.for_database(tenant, database), job["collection"])
    if (tenant, database) == (dbfile.DEFAULT_TENANT, dbfile.DEFAULT_DATABASE):
        return get_collection(target, job["collection"])
    previous = (target.tenant, target.database)
    target.set_tenant(tenant, database)
    try:  # a handle keeps its collection id, so the caller's client gets its tenant back at once
        return get_collection(target, job["collection"])
    finally:
        target.set_tenant(*previous)


def _build_fresh(client, name: str, metadata: dict[str, Any] | None, records: exchange.RecordBatch):
    """A new collection holding exactly the sampled records, written through this version's add()."""
    handle = client.create_collection(name, metadata=metadata or None, embedding_function=None)
    write_records(handle, records, "add", max_batch_size(client))
    return handle


def _ask(handle, ids: list[str], query: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """Sorted ids of the sampled records the query selects, or the error this version raised.

    1.x evaluates a filter over the whole collection before it applies `ids` (0.5-1.5 s a query
    at 50,000 records, against 0.03-0.25 s without `ids`), so there the query runs unrestricted
    and is intersected with the sample here: the same answer. On a 1.x target `handle` is
    normally the sample database's (`_sampled_target`), which holds only the sampled records.
    0.x is asked with `ids`, which it applies first.
    """
    if not ids:
        return [], None
    kwargs: dict[str, Any] = {"include": []} if IS_RUST_CORE else {"ids": ids, "include": []}
    if query.get("where"):
        kwargs["where"] = query["where"]
    if query.get("where_document"):
        kwargs["where_document"] = query["where_document"]
    try:
        selected = handle.get(**kwargs)["ids"]
        return sorted(set(selected) & set(ids) if IS_RUST_CORE else selected), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a validation error, or a pyo3 PanicException
        return None, _describe(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def sample_queries(path: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker operation: the operator's own queries (verification/behaviour.py) on the database at
    `path`, which this version opens (1.x writes to it: the engine passes a copy it owns).

    Each job: `collection` (qualified name) and `queries` ([{name, where?, where_document?,
    near_ids?, n_results?}]). A query this version rejects comes back with its error.
    """
    clients = Clients(path)
    answered: dict[str, Any] = {}
    for job in jobs:
        try:
            handle = clients.collection(job["collection"])
        except Exception as exc:  # each version raises its own "does not exist" type
            answered[job["collection"]] = {"error": _describe(exc), "answers": []}
            continue
        answered[job["collection"]] = {"answers": [_answer_sample(handle, query) for query in job["queries"]]}
    return {"version": ".".join(map(str, VERSION)), "collections": answered}


def _answer_sample(handle, query: dict[str, Any]) -> dict[str, Any]:
    """One query's answer, or the error this version raised for it."""
    try:
        found = _nearest_sample(handle, query) if query.get("near_ids") else _selected(handle, query)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a validation error, or a pyo3 PanicException
        return {"name": query["name"], "error": _describe(exc)}
    return {"name": query["name"], **found}


def _filters(query: dict[str, Any]) -> dict[str, Any]:
    return {key: query[key] for key in ("where", "where_document") if query.get(key)}


def _selected(handle, query: dict[str, Any]) -> dict[str, Any]:
    """Every id get() selects: sorted, with a digest so that a huge answer compares without its ids."""
    ids = sorted(handle.get(include=[], **_filters(query))["ids"])
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return {"count": len(ids), "digest": digest, **({"ids": ids} if len(ids) <= ANSWER_IDS_LIMIT else {})}


def _nearest_sample(handle, query: dict[str, Any]) -> dict[str, Any]:
    """Per near id, the ids query() answers for that record's stored vector (with the query's filters)."""
    near = list(query["near_ids"])
    got = handle.get(ids=near, include=["embeddings"])
    vectors = {record_id: np.asarray(vector, dtype=np.float32).tolist()
               for record_id, vector in zip(got["ids"], got["embeddings"], strict=True)}
    found = [record_id for record_id in near if record_id in vectors]
    answer: dict[str, Any] = {"missing": [record_id for record_id in near if record_id not in vectors],
                              "nearest": {}}
    count = handle.count()
    if found and count:
        result = handle.query(query_embeddings=[vectors[i] for i in found], include=["distances"],
                              n_results=min(int(query.get("n_results") or DEFAULT_NEAR_RESULTS), count),
                              **_filters(query))
        answer["nearest"] = dict(zip(found, result["ids"], strict=True))
    answer["count"] = sum(len(ids) for ids in answer["nearest"].values())
    return answer
