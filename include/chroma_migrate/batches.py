"""Cutting collections into id ranges and exporting them to exchange files.

Batches are cut by id (a stable key), never by offset paging: the same ranges can be
exported again from the source, or read from the target for verification, and line up.
The bounds come from the native reader's ids, with the write log applied; the first range
starts and the last one ends unbounded, so nothing can fall outside them.

Two exporters write the same files: `native` (default) reads the database in place with
`chroma_migrate.native`, `runtime` has the source version's own chromadb get() every
range in a child process (on a copy, since chromadb writes to what it opens).
"""

from __future__ import annotations

import multiprocessing
import resource
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.errors import MigrationError
from chroma_migrate.native import open_database
from chroma_migrate.native.nearest import nearest_ids
from chroma_migrate.phases import PhaseLog
from chroma_migrate.progress import Advance, report_progress, watched_progress_file
from chroma_migrate.worker_client import run_worker

EXPORTERS: tuple[str, ...] = ("native", "runtime")  # run_types.Exporter's values
PEAK_KEY = "__peak_rss_bytes__"  # not a valid collection name


@dataclass(frozen=True)
class Batch:
    """Records with low <= id < high; None is unbounded."""

    index: int
    low: str | None
    high: str | None


@dataclass
class CollectionPlan:
    collection: str
    batches: list[Batch]
    dimension: int | None = None
    # Filled in by an export: the files in batch order, chromadb's own count, query answers.
    files: list[Path] = field(default_factory=list)
    count: int = 0
    nearest: list[list[str]] | None = None
    exported: int = 0


@dataclass(frozen=True)
class QuerySet:
    """Recall queries: where the vectors are (or go), how many neighbours, how many to pick.

    `pick` > 0 lets the source export choose the vectors from its first batch, so the
    queries look like the data; the other side then answers the same file.
    """

    file: Path
    k: int
    pick: int = 0


def plan_collections(db: Path, dimensions: dict[str, int | None], batch_size: int) -> dict[str, CollectionPlan]:
    """Id ranges of about batch_size records each, from the native reader's ids (the write log applied)."""
    plans = {}
    with open_database(db) as native:
        for name, dimension in dimensions.items():
            bounds: list[str | None] = [None, *native.collection(name).boundaries(batch_size), None]
            batches = [Batch(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
            plans[name] = CollectionPlan(name, batches, dimension)
    return plans


def export_collections(version: str, db: Path, plans: dict[str, CollectionPlan], out_dir: Path, *,
                       workers: int, phases: PhaseLog, queries: dict[str, QuerySet] | None = None,
                       complete: bool = True, export_with: str = "native", progress: Advance | None = None,
                       ) -> dict[str, CollectionPlan]:
    """Export every batch of every plan under out_dir/<collection>/ with `workers` processes.

    Returns copies of the plans with files, the source's count, the number of records
    exported and the answers to `queries` (from the process that exports batch 0: the
    source's own index, walked natively or queried through chromadb). With `complete`
    (the plans cover whole collections) the exported records must add up to the count;
    a DAG task exporting a single batch passes False. `version` matters only to the
    runtime exporter, which must be given a copy: chromadb writes to what it opens.
    `progress` hears of each batch written, whichever process wrote it (progress.py).
    """
    if export_with not in EXPORTERS:
        raise MigrationError(f"Unknown exporter {export_with!r}.", f"Use one of {', '.join(EXPORTERS)}.")
    tasks = [(plan, batch) for plan in plans.values() for batch in plan.batches]
    groups = [tasks[i::workers] for i in range(workers) if tasks[i::workers]] or [[]]
    if export_with == "native":
        with watched_progress_file(progress) as progress_file:
            answers = _export_native(db, groups, out_dir, queries or {}, phases, progress_file)
        return _collect(plans, answers, "the native reader", complete)

    def run(position: int) -> dict[str, dict]:
        jobs: dict[str, dict] = {}
        for plan, batch in groups[position]:
            folder = out_dir / plan.collection
            folder.mkdir(parents=True, exist_ok=True)
            job = jobs.setdefault(plan.collection, {"collection": plan.collection, "batches": [],
                                                    "out_dir": str(folder), "dimension": plan.dimension})
            job["batches"].append(asdict(batch))
            query = (queries or {}).get(plan.collection)
            if query and batch.index == 0:  # the process holding batch 0 picks and answers the queries
                job.update(queries_file=str(query.file), k=query.k, pick_queries=query.pick)
        if not jobs:
            return {}
        result = run_worker(version, "export", {"path": str(db), "jobs": list(jobs.values())}, progress=progress)
        phases.child_peak(result.peak_rss_bytes)
        return result.data

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        answers = list(pool.map(run, range(len(groups))))
    return _collect(plans, answers, f"chromadb {version}", complete)


def _collect(plans: dict[str, CollectionPlan], answers: list[dict[str, dict]], reader: str, complete: bool,
             ) -> dict[str, CollectionPlan]:
    """Merge what each export process answered into one plan per collection, checking the counts add up."""
    exported = {}
    for name, plan in plans.items():
        files = sorted((item["index"], Path(item["file"]), item["count"])
                       for answer in answers for item in answer.get(name, {}).get("batches", []))
        counts = {answer[name]["count"] for answer in answers if name in answer}
        nearest = next((answer[name]["nearest"] for answer in answers if "nearest" in answer.get(name, {})), None)
        total = sum(count for _, _, count in files)
        if len(counts) > 1 or (complete and counts and total != next(iter(counts))):
            raise MigrationError(
                f"Collection {name!r}: {reader} exported {total} records but counts "
                f"{sorted(a[name]['count'] for a in answers if name in a)}.",
                "The database changed while it was read, or its metadata segment is inconsistent; "
                "copy it again from a quiet source.",
            )
        exported[name] = CollectionPlan(name, plan.batches, plan.dimension, [path for _, path, _ in files],
                                        next(iter(counts), 0), nearest, total)
    return exported


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for native reading. fork costs milliseconds, spawn about half a second (each child
    imports numpy and pyarrow again), but fork is only safe while this process runs no other thread."""
    method = "fork" if threading.active_count() == 1 else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _export_native(db: Path, groups: list[list[tuple[CollectionPlan, Batch]]], out_dir: Path,
                   queries: dict[str, QuerySet], phases: PhaseLog, progress_file: str | None,
                   ) -> list[dict[str, dict]]:
    """One group of batches per process (this one when there is a single group), read in place."""
    jobs = [[(plan.collection, batch, str(out_dir), queries.get(plan.collection)) for plan, batch in group]
            for group in groups]
    if len(jobs) == 1:
        answers = [export_native_group(str(db), jobs[0], progress_file)]
    else:
        with process_pool(len(jobs)) as pool:
            answers = list(pool.map(export_native_group, [str(db)] * len(jobs), jobs, [progress_file] * len(jobs)))
    for answer in answers:
        peak = answer.pop(PEAK_KEY, 0)
        if len(jobs) > 1:
            phases.child_peak(peak)
    return answers


def export_native_group(db: str, jobs: list[tuple[str, Batch, str, QuerySet | None]],
                        progress_file: str | None = None) -> dict[str, Any]:
    """Export these batches with the native reader; the group holding a batch 0 picks and answers its queries."""
    answers: dict[str, Any] = {}
    with open_database(db) as native:
        for name, batch, out_dir, query in jobs:
            collection = native.collection(name)
            answer = answers.setdefault(name, {"count": collection.count, "batches": []})
            folder = Path(out_dir) / name
            folder.mkdir(parents=True, exist_ok=True)
            records = collection.read_range(batch.low, batch.high)
            target = folder / f"batch-{batch.index:05d}.parquet"
            exchange.write_batch(records, target)
            answer["batches"].append({"index": batch.index, "count": len(records), "file": str(target)})
            report_progress(progress_file, len(records))
            if query and batch.index == 0:
                if query.pick:
                    np.save(query.file, exchange.pick_query_vectors(records, query.pick))
                answer["nearest"] = nearest_ids(collection, np.load(query.file), query.k)
    answers[PEAK_KEY] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return answers
