"""`smoke_read`: what a pinned chromadb version sees when it opens a database (the reader gate).

Runs in the reader's own interpreter against a COPY (every 1.x open writes to the file). It
only reports what it saw; the engine (`chroma_migrate.reader_gate`) decides. Failures are
caught per collection and per step, so one broken collection never hides the others.
Only APIs every release from 0.4.15 to 1.5.9 has are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chroma_migrate import dbfile
from chroma_migrate.content_digest import content_digest
from chroma_migrate.worker.chroma_client import VERSION, Clients

_NOT_CAUGHT = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _error_text(step: str, exc: BaseException) -> str:
    """One line naming the step and the exception (a pyo3 PanicException included)."""
    return f"{step}: {type(exc).__name__}: {str(exc).strip()[:1000]}"


def _guarded(step: str, answer: dict[str, Any], action) -> bool:
    """Run one step; on failure record it in `answer["error"]` and say so (False)."""
    try:
        action()
    except BaseException as exc:
        if isinstance(exc, _NOT_CAUGHT):
            raise
        answer["error"] = _error_text(step, exc)
        return False
    return True


def _listed_names(clients: Clients, databases: list[tuple[str, str]]) -> list[str]:
    """Collections the client itself lists, per tenant and database.

    0.6 returns names (a str subclass that raises on any attribute), the others Collection objects.
    """
    names = []
    for tenant, database in databases:
        for item in clients.for_database(tenant, database).list_collections():
            names.append(dbfile.qualified_name(tenant, database, item if isinstance(item, str) else item.name))
    return sorted(names)


def _digests(handle, ids: list[str]) -> dict[str, str]:
    """get() the sampled ids: per id returned, the digest of its document and metadata."""
    if not ids:
        return {}
    result = handle.get(ids=ids, include=["documents", "metadatas"])
    documents = result.get("documents") or [None] * len(result["ids"])
    metadatas = result.get("metadatas") or [None] * len(result["ids"])
    return {record_id: content_digest(documents[i], metadatas[i]) for i, record_id in enumerate(result["ids"])}


def _own_hits(handle, query_ids: list[str], queries_file: str | None, k: int, count: int) -> dict[str, bool]:
    """Per query id: does a query by its stored vector return it among the top k (the collection's own ef)?"""
    if not query_ids or not queries_file or count == 0:
        return {}
    queries = np.load(queries_file)
    result = handle.query(query_embeddings=queries.tolist(), n_results=min(k, count), include=["distances"])
    return {record_id: record_id in found for record_id, found in zip(query_ids, result["ids"], strict=True)}


def _read_collection(clients: Clients, name: str, wanted: dict[str, Any]) -> dict[str, Any]:
    """Open, count, get and query one collection, stopping at the first step that fails."""
    answer: dict[str, Any] = {"count": None, "returned": {}, "own_hits": {}, "error": None}
    handle: list[Any] = []
    if not _guarded("open", answer, lambda: handle.append(clients.collection(name))):
        return answer
    collection = handle[0]
    if not _guarded("count", answer, lambda: answer.update(count=collection.count())):
        return answer
    if not _guarded("get", answer, lambda: answer.update(returned=_digests(collection, list(wanted["ids"])))):
        return answer
    _guarded("query", answer, lambda: answer.update(own_hits=_own_hits(
        collection, list(wanted.get("query_ids") or []), wanted.get("queries_file"), int(wanted.get("k", 5)),
        answer["count"])))
    return answer


def smoke_read(path: str, expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Open the copy at `path` and read every expected collection; never raises for a read failure.

    `expected[name]` holds `ids` (a sample to get), `query_ids`, `queries_file` (their vectors,
    .npy, in that order) and `k`; counts and digests stay with the engine, which compares.
    """
    answer: dict[str, Any] = {"version": ".".join(map(str, VERSION)), "open_error": None,
                              "listed": None, "list_error": None, "collections": {}}
    clients: list[Clients] = []
    opened: dict[str, Any] = {}
    if not _guarded("open client", opened, lambda: clients.append(Clients(path))):
        answer["open_error"] = opened["error"]
        return answer
    databases = sorted({dbfile.split_qualified(name)[:2] for name in expected}
                       | {(dbfile.DEFAULT_TENANT, dbfile.DEFAULT_DATABASE)})
    listed: dict[str, Any] = {}
    if _guarded("list_collections", listed, lambda: listed.update(names=_listed_names(clients[0], databases))):
        answer["listed"] = listed["names"]
    else:
        answer["list_error"] = listed["error"]
    for name, wanted in expected.items():
        answer["collections"][name] = _read_collection(clients[0], name, wanted)
    return answer
