"""The target version's own add() throughput: the ceiling a rebuild's load can approach.

Generates N receipt-like records in memory (ids, float32 vectors, short documents and
~10-key metadata, the shape of the benchmark collection), creates a fresh cosine
collection and add()s them in chunks of the client's max batch size. Only the add loop is
timed, inside the process, so interpreter start and chromadb import are excluded; its CPU
time (all threads) is kept too, a figure a busy machine distorts far less than wall time.

Runs in the runtime's interpreter: stdlib, numpy and chromadb only.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings

WORDS = ["TOTAL", "Café", "東京", "SUBTOTAL", "TAX", "Milk 2%", "Ølbrød", "x" * 40]


def records(count: int, dim: int, seed: int) -> dict[str, Any]:
    """Records shaped like the benchmark fixture, so the add() cost per record is comparable."""
    rng = np.random.default_rng(seed)
    image = uuid.UUID(int=seed + 1)
    ids, documents, metadatas = [], [], []
    for i in range(count):
        ids.append(f"IMAGE#{image}#RECEIPT#{i // 40:05d}#LINE#{(i // 8) % 5:05d}#WORD#{i % 8:05d}#{i:06d}")
        documents.append(None if i % 23 == 5 else f"{WORDS[i % len(WORDS)]} {i}")
        meta: dict[str, Any] = {"receipt_id": i // 40, "line_id": (i // 8) % 5, "word_id": i % 8,
                                "confidence": float(rng.random()), "x": float(rng.random()),
                                "y": float(rng.standard_normal() * 1e3), "is_noise": i % 11 == 0,
                                "text": WORDS[i % len(WORDS)], "kind": "word"}
        if i % 3 == 0:
            meta["label"] = ["MERCHANT_NAME", "DATE", "GRAND_TOTAL"][i % 9 // 3]
        metadatas.append(meta)
    embeddings = rng.standard_normal((count, dim)).astype(np.float32)
    return {"ids": ids, "embeddings": embeddings, "documents": documents, "metadatas": metadatas}


def raw_add(db: str, count: int, dim: int, seed: int) -> dict[str, Any]:
    data = records(count, dim, seed)
    started = time.perf_counter()
    client = chromadb.PersistentClient(path=db, settings=Settings(anonymized_telemetry=False))
    handle = client.create_collection("raw_add", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    getter = getattr(client, "get_max_batch_size", None)
    chunk = int(getter() if getter else client.max_batch_size)
    opened, cpu_opened = time.perf_counter(), time.process_time()
    for start in range(0, count, chunk):
        stop = start + chunk
        handle.add(ids=data["ids"][start:stop], embeddings=data["embeddings"][start:stop],
                   documents=data["documents"][start:stop], metadatas=data["metadatas"][start:stop])
    added, cpu_added = time.perf_counter(), time.process_time()
    stored = handle.count()
    if stored != count:
        raise SystemExit(f"raw add stored {stored} records, expected {count}")
    seconds = added - opened
    return {"records": count, "dim": dim, "chunk": chunk, "open_seconds": opened - started,
            "add_seconds": seconds, "add_cpu_seconds": cpu_added - cpu_opened,
            "records_per_second": count / seconds if seconds else None, "chromadb": chromadb.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("answer")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    Path(args.answer).write_text(json.dumps(raw_add(args.db, args.records, args.dim, args.seed)))


if __name__ == "__main__":
    main()
