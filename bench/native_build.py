"""The transplant's native index build alone: one collection's vectors, read natively in batches,
added to a new hnswlib index on all cores (transplant/vectors.BuiltGraph), written to disk.

Times the add_items calls and the final write (`add_seconds`) apart from the native read, in
this engine interpreter. Usage: native_build.py SOURCE_DB FOLDER ANSWER.json [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from chroma_migrate.native import open_database
from chroma_migrate.transplant.vectors import BuiltGraph, worker_threads

COLLECTION = "bench"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("folder", type=Path)
    parser.add_argument("answer", type=Path)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    started, building = time.perf_counter(), 0.0
    with open_database(args.source) as source:
        collection = source.collection(COLLECTION)
        index = collection.index
        graph = BuiltGraph(args.folder, collection, collection.count, int(index["M"]), int(index["construction_ef"]))
        for batch in collection.iter_batches(args.batch_size):
            began = time.perf_counter()
            graph.add(batch)
            building += time.perf_counter() - began
        began = time.perf_counter()
        graph.finish()
        building += time.perf_counter() - began
    args.answer.write_text(json.dumps({"add_seconds": building, "total_seconds": time.perf_counter() - started,
                                       "records": graph.total_elements_added, "threads": worker_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
