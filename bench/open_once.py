"""The target version opening a database once (applying its migrations to it) and counting each collection.

With a file copy, this is the work no upgrade can avoid; the verified upgrade is measured
against the two together. Runs in the target's runtime. Usage: open_once.py DB ANSWER.json
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import chromadb
from chromadb.config import Settings


def main(db: str, answer: str) -> int:
    logging.getLogger("chromadb.telemetry.product.posthog").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    client = chromadb.PersistentClient(path=db, settings=Settings(anonymized_telemetry=False))
    names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
    counts = {name: client.get_collection(name, embedding_function=None).count() for name in names}
    Path(answer).write_text(json.dumps({"counts": counts, "open_seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
