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
from chroma_migrate.worker.chroma_client import (
    INCLUDE_ALL,
    VERSION,
    collection_configuration,
    get_collection,
    max_batch_size,
    open_client,
    plain_metadata,
)

# How many ids one get() asks for: far below SQLite's variable limit in every version.
GET_CHUNK = 5000


def facts() -> dict[str, Any]:
    """The migrations this version applies and its batch limit, measured on an empty database."""
    with tempfile.TemporaryDirectory() as scratch:
        client = open_client(scratch)
        client.heartbeat()
        batch = max_batch_size(client)
        with dbfile.open_readonly(Path(scratch)) as conn:
            signature = dbfile.migration_signature(conn)
    return {"version": ".".join(map(str, VERSION)), "signature": signature, "max_batch_size": batch}


def _collection_names(client) -> list[str]:
    # 0.6+ returns names, older versions and 1.x return Collection objects.
    return sorted(item if isinstance(item, str) else item.name for item in client.list_collections())


def describe(path: str) -> dict[str, Any]:
    client = open_client(path)
    described = []
    for name in _collection_names(client):
        collection = get_collection(client, name)
        first = collection.get(limit=1, include=["embeddings"])
        embeddings = first.get("embeddings")
        dimension = len(embeddings[0]) if embeddings is not None and len(embeddings) else None
        described.append({
            "name": name,
            "count": collection.count(),
            "dimension": dimension,
            "metadata": plain_metadata(collection.metadata),
            "configuration": collection_configuration(collection),
        })
    return {"version": ".".join(map(str, VERSION)), "collections": described}


def _metadata_segments(path: str) -> dict[str, str | None]:
    with dbfile.open_readonly(Path(path)) as conn:
        return {item.name: item.metadata_segment for item in dbfile.collections(conn)}


def plan(path: str, collections: list[str], batch_size: int) -> dict[str, Any]:
    """Count through chromadb (1.x applies its write log on open), then cut id ranges."""
    client = open_client(path)
    counts = {name: get_collection(client, name).count() for name in collections}
    segments = _metadata_segments(path)
    plans = {}
    with dbfile.open_readonly(Path(path)) as conn:
        for name in collections:
            segment = segments[name]
            bounds = dbfile.batch_boundaries(conn, segment, batch_size) if segment else []
            listed = conn.execute("SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (segment,)).fetchone()[0]
            if listed != counts[name]:
                raise RuntimeError(
                    f"collection {name!r}: chromadb counts {counts[name]} records but the metadata segment "
                    f"lists {listed}; the write log was not fully applied, so batches cannot be cut by id"
                )
            plans[name] = {"count": counts[name], "boundaries": bounds}
    return plans


def _fetch(collection, ids: list[str]) -> exchange.RecordBatch:
    by_id: dict[str, tuple] = {}
    for start in range(0, len(ids), GET_CHUNK):
        result = collection.get(ids=ids[start:start + GET_CHUNK], include=INCLUDE_ALL)
        uris = result.get("uris") or [None] * len(result["ids"])
        for i, record_id in enumerate(result["ids"]):
            by_id[record_id] = (
                np.asarray(result["embeddings"][i], dtype=np.float32),
                result["documents"][i],
                uris[i],
                exchange.canonical_metadata(plain_metadata(result["metadatas"][i])),
            )
    missing = [record_id for record_id in ids if record_id not in by_id]
    if missing:
        raise RuntimeError(
            f"{len(missing)} ids are listed in the metadata segment but get() returns no record for them "
            f"(first: {missing[:3]}); the database is inconsistent"
        )
    ordered = sorted(by_id)
    dimension = len(by_id[ordered[0]][0]) if ordered else 0
    embeddings = np.stack([by_id[i][0] for i in ordered]) if ordered else np.zeros((0, dimension), np.float32)
    return exchange.RecordBatch(
        ordered, embeddings, [by_id[i][1] for i in ordered], [by_id[i][2] for i in ordered],
        [by_id[i][3] for i in ordered],
    )


def export(path: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """For each job, write each id range [low, high) of its collection as one exchange file."""
    client = open_client(path)
    segments = _metadata_segments(path)
    written: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        name = job["collection"]
        handle = get_collection(client, name)
        for batch in job["batches"]:
            with dbfile.open_readonly(Path(path)) as conn:
                ids = dbfile.ids_in_range(conn, segments[name], batch["low"], batch["high"]) if segments[name] else []
            records = _fetch(handle, ids) if ids else exchange.empty_batch(job.get("dimension") or 0)
            target = Path(job["out_dir"]) / f"batch-{batch['index']:05d}.parquet"
            exchange.write_batch(records, target)
            written.setdefault(name, []).append({"index": batch["index"], "count": len(records), "file": str(target)})
    return written


def query(path: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Nearest-neighbour ids through the version's own index, for the recall check."""
    client = open_client(path)
    answers = {}
    for job in jobs:
        handle = get_collection(client, job["collection"])
        queries = np.load(job["queries_file"])
        count = handle.count()
        if count == 0 or len(queries) == 0:
            answers[job["collection"]] = [[] for _ in range(len(queries))]
            continue
        result = handle.query(query_embeddings=queries.tolist(), n_results=min(job["k"], count),
                              include=["distances"])
        answers[job["collection"]] = result["ids"]
    return answers


def dump(path: str, out_file: str) -> dict[str, Any]:
    """Everything get() returns, as plain JSON: the independent oracle the tests compare with."""
    client = open_client(path)
    collections = {}
    for name in _collection_names(client):
        handle = get_collection(client, name)
        result = handle.get(include=INCLUDE_ALL)
        uris = result.get("uris") or [None] * len(result["ids"])
        embeddings = result.get("embeddings")
        collections[name] = {
            "metadata": plain_metadata(handle.metadata),
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
