"""The hand-written upgrade the engine is measured against, run inside a chromadb runtime.

`export` (run by the SOURCE version) get()s a whole collection in one call (or a few large
pages) and pickles it to a file; `import` (run by the TARGET version) loads that file and
add()s everything in chunks of the client's max batch size. That is what people write
when they upgrade by hand, so it is the baseline the speedup target is stated against.

Runs in the runtime's interpreter: stdlib, numpy and chromadb only. Each command writes a
small JSON answer (timings measured inside the process, counts) to its last argument.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import time
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings


def _client(path: str) -> Any:
    # Telemetry is off, but 0.x still calls the installed (newer) posthog with an old
    # signature and logs "Failed to send telemetry event" for every call: noise only.
    logging.getLogger("chromadb.telemetry.product.posthog").setLevel(logging.CRITICAL)
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))


def _max_batch_size(client: Any) -> int:
    getter = getattr(client, "get_max_batch_size", None)
    return int(getter() if getter else client.max_batch_size)


def export(db: str, collection: str, dump: str, page: int) -> dict[str, Any]:
    """get() everything (pages of `page` records, 0 = one call) and pickle it, as a script would."""
    started = time.perf_counter()
    handle = _client(db).get_collection(collection, embedding_function=None)
    opened = time.perf_counter()
    include = ["embeddings", "documents", "metadatas"]
    ids: list[str] = []
    embeddings: list[np.ndarray] = []
    documents: list[str | None] = []
    metadatas: list[dict[str, Any] | None] = []
    offset = 0
    while True:
        result = handle.get(include=include, limit=page, offset=offset) if page else handle.get(include=include)
        ids.extend(result["ids"])
        if len(result["ids"]):
            embeddings.append(np.asarray(result["embeddings"], dtype=np.float32))
        documents.extend(result["documents"])
        metadatas.extend(result["metadatas"])
        offset += len(result["ids"])
        if not page or len(result["ids"]) < page:
            break
    fetched = time.perf_counter()
    payload = {
        "name": collection,
        "metadata": dict(handle.metadata or {}) or None,
        "ids": ids,
        "embeddings": np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32),
        "documents": documents,
        "metadatas": metadatas,
    }
    with open(dump, "wb") as handle_out:
        pickle.dump(payload, handle_out, protocol=pickle.HIGHEST_PROTOCOL)
    saved = time.perf_counter()
    return {"records": len(ids), "open_seconds": opened - started, "get_seconds": fetched - opened,
            "save_seconds": saved - fetched, "file_bytes": Path(dump).stat().st_size,
            "chromadb": chromadb.__version__}


def import_(db: str, dump: str) -> dict[str, Any]:
    """Load the pickle and add() it into a new collection with the same metadata."""
    started = time.perf_counter()
    with open(dump, "rb") as handle_in:
        payload = pickle.load(handle_in)
    loaded = time.perf_counter()
    client = _client(db)
    handle = client.create_collection(payload["name"], metadata=payload["metadata"], embedding_function=None)
    chunk = _max_batch_size(client)
    created = time.perf_counter()
    total = len(payload["ids"])
    for start in range(0, total, chunk):
        stop = start + chunk
        handle.add(ids=payload["ids"][start:stop], embeddings=payload["embeddings"][start:stop],
                   documents=payload["documents"][start:stop], metadatas=payload["metadatas"][start:stop])
    added = time.perf_counter()
    count = handle.count()
    return {"records": total, "count": count, "chunk": chunk, "load_seconds": loaded - started,
            "open_seconds": created - loaded, "add_seconds": added - created, "chromadb": chromadb.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export")
    exporting.add_argument("db")
    exporting.add_argument("collection")
    exporting.add_argument("dump")
    exporting.add_argument("--page", type=int, default=0)
    exporting.add_argument("answer")
    importing = commands.add_parser("import")
    importing.add_argument("db")
    importing.add_argument("dump")
    importing.add_argument("answer")
    args = parser.parse_args()
    if args.command == "export":
        answer = export(args.db, args.collection, args.dump, args.page)
    else:
        answer = import_(args.db, args.dump)
    Path(args.answer).write_text(json.dumps(answer))


if __name__ == "__main__":
    main()
