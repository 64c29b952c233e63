"""The native reader on the same database, in the engine's interpreter: every record, batch by batch, in place.

Times opening and reading apart, like paged_get.py, so the two records/s compare the
reading itself; the process's own peak RSS comes from wait4 in the benchmark.
Usage: native_read.py DB COLLECTION ANSWER.json [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from chroma_migrate.native import open_database


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("collection")
    parser.add_argument("answer")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    started = time.perf_counter()
    with open_database(args.db) as native:
        collection = native.collection(args.collection)
        opened = time.perf_counter()
        records = sum(len(batch) for batch in collection.iter_batches(args.batch_size))
    done = time.perf_counter()
    Path(args.answer).write_text(json.dumps({"records": records, "open_seconds": opened - started,
                                             "read_seconds": done - opened}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
