"""Operations that read a database through the runtime's own chromadb.

Every 1.x open writes to chroma.sqlite3, so the engine only ever points these at copies
(or at databases it is building itself).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile, exchange
from chroma_migrate.progress import report_progress
from chroma_migrate.worker import text_ops
from chroma_migrate.worker.chroma_client import (
    INCLUDE_ALL,
    VERSION,
    Clients,
    collection_configuration,
    max_batch_size,
    open_client,
    plain_metadata,
)

# How many ids one get() asks for: far below SQLite's variable limit in every version.
GET_CHUNK = 5000


def facts(round_trip: bool = False) -> dict[str, Any]:
    """The migrations this version applies and its batch limit, measured on an empty database;
    with `round_trip`, also proof that this runtime can add, get and query (a dependency that
    imports but breaks at use, such as numpy 2 under 0.4.x, fails here and not in a migration)."""
    with tempfile.TemporaryDirectory() as scratch:
        client = open_client(scratch)
        client.heartbeat()
        batch = max_batch_size(client)
        if round_trip:
            _round_trip(client)
        with dbfile.open_readonly(Path(scratch)) as conn:
            signature = dbfile.migration_signature(conn)
            files = [list(row) for row in conn.execute(
                "SELECT dir, version, filename, hash FROM migrations ORDER BY dir, version")]
    return {"version": ".".join(map(str, VERSION)), "signature": signature, "max_batch_size": batch,
            "migration_files": files}


def _round_trip(client) -> None:
    collection = client.create_collection("chroma_migrate_self_test", embedding_function=None)
    collection.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["first record", None],
                   metadatas=[{"n": 1, "x": 0.5, "ok": True}, {"s": "two"}])
    got = collection.get(ids=["a", "b"], include=INCLUDE_ALL)
    nearest = collection.query(query_embeddings=[[1.0, 0.1]], n_results=1)["ids"][0]
    found = collection.get(where_document={"$contains": "first"})["ids"]
    if sorted(got["ids"]) != ["a", "b"] or nearest != ["a"] or found != ["a"]:
        raise RuntimeError(f"self test read back {got['ids']}, nearest {nearest}, contains {found}")


def describe(path: str, queries: list[dict[str, Any]] | None = None, text_jobs: list[dict[str, Any]] | None = None,
             scratch_dir: str | None = None) -> dict[str, Any]:
    """Open (1.x and newer schemas: migrate) the database and say what it holds; answer recall
    queries while the index is loaded, so a verified upgrade needs no second process."""
    clients = Clients(path)
    described = []
    for name in clients.qualified_names():
        collection = clients.collection(name)
        first = collection.get(limit=1, include=["embeddings"])
        embeddings = first.get("embeddings")
        dimension = len(embeddings[0]) if embeddings is not None and len(embeddings) else None
        described.append({
            "name": name,
            "id": str(collection.id),
            "count": collection.count(),
            "dimension": dimension,
            "metadata": plain_metadata(collection.metadata),
            "configuration": collection_configuration(collection),
        })
    answers = answer_queries(clients, queries) if queries else {}
    text = text_ops.answer_text_queries(clients, text_jobs, scratch_dir) if text_jobs else None
    return {"version": ".".join(map(str, VERSION)), "collections": described, "nearest": answers, "text": text}


def _metadata_segments(path: str) -> dict[str, str | None]:
    with dbfile.open_readonly(Path(path)) as conn:
        return {item.name: item.metadata_segment for item in dbfile.collections(conn)}


def _canonical(metadata: dict[str, Any] | None) -> str | None:
    """Canonical JSON; the slow plain-value conversion only when chromadb handed back numpy values."""
    if not metadata:
        return None
    try:
        return exchange.canonical_metadata(metadata)
    except TypeError:
        return exchange.canonical_metadata(plain_metadata(metadata))


def _fetch(collection, ids: list[str], dimension: int) -> exchange.RecordBatch:
    """get() the ids in chunks and build the batch with whole-array operations."""
    got_ids: list[str] = []
    vectors: list[np.ndarray] = []
    documents: list[str | None] = []
    uris: list[str | None] = []
    metadatas: list[str | None] = []
    for start in range(0, len(ids), GET_CHUNK):
        result = collection.get(ids=ids[start:start + GET_CHUNK], include=INCLUDE_ALL)
        count = len(result["ids"])
        got_ids.extend(result["ids"])
        vectors.append(np.asarray(result["embeddings"], dtype=np.float32).reshape(count, -1))
        documents.extend(result["documents"])
        uris.extend(result.get("uris") or [None] * count)
        metadatas.extend(_canonical(m) for m in result["metadatas"])
    if len(got_ids) != len(ids) or set(got_ids) != set(ids):
        missing = sorted(set(ids) - set(got_ids))
        raise RuntimeError(
            f"{len(missing)} ids are listed in the metadata segment but get() returns no record for them "
            f"(first: {missing[:3]}); the database is inconsistent"
        )
    order = sorted(range(len(got_ids)), key=got_ids.__getitem__)
    embeddings = np.concatenate(vectors)[order] if order else np.zeros((0, dimension), np.float32)
    return exchange.RecordBatch([got_ids[i] for i in order], embeddings, [documents[i] for i in order],
                                [uris[i] for i in order], [metadatas[i] for i in order])


def _nearest(handle, queries_file: str, k: int, count: int) -> list[list[str]]:
    queries = np.load(queries_file)
    if count == 0 or len(queries) == 0:
        return [[] for _ in range(len(queries))]
    result = handle.query(query_embeddings=queries.tolist(), n_results=min(k, count), include=["distances"])
    return result["ids"]


def _pick_queries(records: exchange.RecordBatch, count: int, queries_file: str) -> None:
    np.save(queries_file, exchange.pick_query_vectors(records, count))


def export(path: str, jobs: list[dict[str, Any]], progress_file: str | None = None) -> dict[str, Any]:
    """Per job: export each id range [low, high) as one exchange file, and answer its queries.

    The count comes from chromadb itself (1.x applies its write log on open), so the caller
    can check that the batches, cut from the metadata segment, cover every record. A job
    with `pick_queries` saves query vectors taken from its batch 0 before answering them.
    Each batch written is reported to `progress_file` (progress.py).
    """
    clients = Clients(path)
    segments = _metadata_segments(path)
    answers: dict[str, dict[str, Any]] = {}
    for job in jobs:
        name = job["collection"]
        handle = clients.collection(name)
        answer = answers[name] = {"count": handle.count(), "batches": []}
        for batch in job["batches"]:
            with dbfile.open_readonly(Path(path)) as conn:
                ids = dbfile.ids_in_range(conn, segments[name], batch["low"], batch["high"]) if segments[name] else []
            dimension = job.get("dimension") or 0
            records = _fetch(handle, ids, dimension) if ids else exchange.empty_batch(dimension)
            target = Path(job["out_dir"]) / f"batch-{batch['index']:05d}.parquet"
            exchange.write_batch(records, target)
            answer["batches"].append({"index": batch["index"], "count": len(records), "file": str(target)})
            report_progress(progress_file, len(records))
            if job.get("pick_queries") and batch["index"] == 0:
                _pick_queries(records, job["pick_queries"], job["queries_file"])
        if job.get("queries_file"):
            answer["nearest"] = _nearest(handle, job["queries_file"], job["k"], answer["count"])
    return answers


def answer_queries(clients: Clients, jobs: list[dict[str, Any]]) -> dict[str, list[list[str]]]:
    """Per job (collection, queries_file, k): nearest-neighbour ids through the version's own index."""
    answers = {}
    for job in jobs:
        handle = clients.collection(job["collection"])
        answers[job["collection"]] = _nearest(handle, job["queries_file"], job["k"], handle.count())
    return answers


def query(path: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Nearest-neighbour ids through the version's own index, for the recall check."""
    return answer_queries(Clients(path), jobs)


def dump(path: str, out_file: str) -> dict[str, Any]:
    """Everything get() returns, as plain JSON: the independent oracle the tests compare with."""
    clients = Clients(path)
    collections = {}
    for name in clients.qualified_names():
        handle = clients.collection(name)
        result = handle.get(include=INCLUDE_ALL)
        uris = result.get("uris") or [None] * len(result["ids"])
        embeddings = result.get("embeddings")
        collections[name] = {
            "id": str(handle.id),
            "metadata": plain_metadata(handle.metadata),
            "configuration": collection_configuration(handle),
            "records": {
                record_id: {
                    "embedding": np.asarray(embeddings[i], dtype=np.float32).tolist(),
                    "document": result["documents"][i],
                    "uri": uris[i],
                    "metadata": plain_metadata(result["metadatas"][i]),
                }
                for i, record_id in enumerate(result["ids"])
            },
        }
    Path(out_file).write_text(json.dumps(collections))
    return {"collections": sorted(collections)}
