"""What reading a database with chromadb costs: the source version's own get(), page by page.

Runs in a chromadb runtime (on a copy: chromadb writes to what it opens). Pages of
`--page` records by offset, with embeddings, documents and metadatas, the embeddings
made one float32 matrix per page as any consumer would. The answer separates the client
start (open) from the reading, which is what records/s is taken over.
Usage: paged_get.py DB COLLECTION ANSWER.json [--page N]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import chromadb
import numpy as np
from chromadb.config import Settings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("collection")
    parser.add_argument("answer")
    parser.add_argument("--page", type=int, default=5000)
    args = parser.parse_args()
    logging.getLogger("chromadb.telemetry.product.posthog").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    client = chromadb.PersistentClient(path=args.db, settings=Settings(anonymized_telemetry=False))
    handle = client.get_collection(args.collection, embedding_function=None)
    opened = time.perf_counter()
    records, offset = 0, 0
    while True:
        page = handle.get(limit=args.page, offset=offset, include=["embeddings", "documents", "metadatas"])
        count = len(page["ids"])
        if not count:
            break
        np.asarray(page["embeddings"], dtype=np.float32)
        records += count
        offset += count
    done = time.perf_counter()
    Path(args.answer).write_text(json.dumps({"records": records, "open_seconds": opened - started,
                                             "read_seconds": done - opened}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
