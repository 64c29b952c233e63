"""Measure what the full-text checks cost on the default fixtures (not a test):

    .venv/bin/python -m tests.engine.fulltext_cost [VERSION ...]

Per version: the SQL check of the file, an empty worker (process start and imports), and the
query comparison of a ~200-record sample of `words` (fresh database build, queries on the fresh
database and on the target, the whole worker).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from chroma_migrate.verification.fulltext import check_fulltext, metadata_segments
from chroma_migrate.verification.fulltext_queries import TextCheckInput, prepare_jobs
from chroma_migrate.worker_client import run_worker
from tests.conftest import database_copy
from tests.engine.fulltext_support import export_batches


def measure(version: str, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        db = database_copy(version, scratch)
        started = time.perf_counter()
        report = check_fulltext(db, metadata_segments(db))
        print(f"{version}: SQL check of every collection {time.perf_counter() - started:.3f}s {report.seconds}")
        files = export_batches(db, "words", scratch / "batches")
        prepared = prepare_jobs([TextCheckInput("words", files, {"hnsw:space": "cosine"})], scratch / "jobs")
        jobs = [p.to_job() for p in prepared]
        for _ in range(rounds):
            empty = run_worker(version, "text_queries", {"path": None, "jobs": []})
            fresh = run_worker(version, "text_queries", {"path": None, "jobs": jobs, "scratch_dir": scratch_dir})
            both = run_worker(version, "text_queries", {"path": str(db), "jobs": jobs, "scratch_dir": scratch_dir})
            inner = both.data["jobs"]["words"]
            print(f"  sample {inner['sample_size']} records, {len(jobs[0]['queries'])} queries: "
                  f"empty worker {empty.seconds:.2f}s; fresh only {fresh.seconds:.2f}s; with target "
                  f"{both.seconds:.2f}s = {inner['seconds']} (peak RSS {both.peak_rss_bytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["0.4.24", "1.5.9"]:
        measure(name)
