"""Operations that write a database with the runtime's own chromadb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.worker import fixture_data, read_ops
from chroma_migrate.worker.chroma_client import (
    IS_RUST_CORE,
    VERSION,
    get_collection,
    max_batch_size,
    open_client,
)

# chromadb 0.4.x cannot read back its own files after a delete and re-add of the same id
# (its log replay duplicates the vector; get() fails, chroma-core/chroma#1987, fixed in 0.5),
# so 0.4 fixtures skip re-adds: the tests need that version's get() as the reference.
READD_WORKS = VERSION >= (0, 5, 0)
NEAREST_KEY = "__nearest__"


def _get_or_create(client, name: str, metadata: dict[str, Any] | None, configuration: dict[str, Any] | None):
    try:
        return get_collection(client, name)
    except Exception:  # each version raises its own "does not exist" type
        kwargs: dict[str, Any] = {"metadata": metadata or None, "embedding_function": None}
        if IS_RUST_CORE and configuration:
            kwargs["configuration"] = configuration
        return client.create_collection(name, **kwargs)


def _write(handle, records: exchange.RecordBatch, mode: str, limit: int) -> None:
    write = handle.upsert if mode == "upsert" else handle.add
    for start in range(0, len(records), limit):
        stop = start + limit
        embeddings = records.embeddings[start:stop]
        kwargs: dict[str, Any] = {
            "ids": records.ids[start:stop],
            # 1.x takes the float32 matrix as is; 0.x wants lists (float64 holds float32 exactly).
            "embeddings": embeddings if IS_RUST_CORE else embeddings.tolist(),
            "documents": records.documents[start:stop],
            "metadatas": [exchange.parse_metadata(m) for m in records.metadatas[start:stop]],
        }
        uris = records.uris[start:stop]
        if any(uri is not None for uri in uris):
            kwargs["uris"] = uris
        write(**kwargs)


def load(path: str, jobs: list[dict[str, Any]], mode: str = "add",
         queries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per job: create the collection if needed and write its exchange files in order; then answer
    the recall `queries` with the index just built (the target side of verification)."""
    client = open_client(path)
    limit = max_batch_size(client)
    loaded = {}
    for job in jobs:
        spec = job["collection"]
        handle = _get_or_create(client, spec["name"], spec.get("metadata"), spec.get("configuration"))
        written = 0
        for file in job["files"]:
            records = exchange.read_batch(Path(file))
            _write(handle, records, mode, limit)
            written += len(records)
        loaded[spec["name"]] = {"written": written, "count": handle.count()}
    if queries:  # chromadb collection names start with a letter or digit, so this key cannot clash
        loaded[NEAREST_KEY] = read_ops.answer_queries(client, queries)
    return loaded


def delete_collections(path: str, names: list[str]) -> dict[str, Any]:
    client = open_client(path)
    for name in names:
        client.delete_collection(name)
    return {"deleted": names}


def build_fixture(path: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Write a receipt-like database the way production does: adds, upserts, deletes, a tail."""
    client = open_client(path)
    built = {}
    for collection_spec in spec["collections"]:
        collection_spec = {"readd": READD_WORKS, **collection_spec}
        handle = client.create_collection(
            collection_spec["name"], metadata=collection_spec.get("metadata"), embedding_function=None
        )
        for step in fixture_data.operations(collection_spec, spec.get("seed", 0)):
            _apply(handle, step)
        built[collection_spec["name"]] = handle.count()
    return {"collections": built}


def _apply(handle, step: dict[str, Any]) -> None:
    kind = step.pop("op")
    if kind == "delete":
        handle.delete(ids=step["ids"])
        return
    if "embeddings" in step:
        step["embeddings"] = np.asarray(step["embeddings"], np.float32).tolist()
    getattr(handle, kind)(**step)
