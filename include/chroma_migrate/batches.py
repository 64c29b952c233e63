"""Cutting collections into id ranges and exporting them, several runtime processes at once.

Batches are cut by id (a stable key), never by offset paging: the same ranges can be
exported again from the source, or from the target for verification, and line up. The
first range starts and the last one ends unbounded, so records chromadb only applies
from its write log when it opens the database are covered too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chroma_migrate import dbfile
from chroma_migrate.errors import MigrationError
from chroma_migrate.phases import PhaseLog
from chroma_migrate.worker_client import run_worker


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
    """Id ranges of about batch_size records each, read from the metadata segment without chromadb."""
    plans = {}
    with dbfile.open_readonly(db) as conn:
        segments = {item.name: item.metadata_segment for item in dbfile.collections(conn)}
        for name, dimension in dimensions.items():
            bounds: list[str | None] = [None]
            if segments.get(name):
                bounds += dbfile.batch_boundaries(conn, segments[name], batch_size)
            bounds.append(None)
            batches = [Batch(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
            plans[name] = CollectionPlan(name, batches, dimension)
    return plans


def export_collections(version: str, db: Path, plans: dict[str, CollectionPlan], out_dir: Path, *,
                       workers: int, phases: PhaseLog, queries: dict[str, QuerySet] | None = None,
                       complete: bool = True) -> dict[str, CollectionPlan]:
    """Export every batch of every plan under out_dir/<collection>/ with `workers` processes.

    Returns copies of the plans with files, chromadb's count, the number of records
    exported and the answers to `queries` (asked by the process that exports batch 0).
    With `complete` (the plans cover whole collections) the exported records must add up
    to chromadb's count; a DAG task exporting a single batch passes False.
    """
    tasks = [(plan, batch) for plan in plans.values() for batch in plan.batches]
    groups = [tasks[i::workers] for i in range(workers) if tasks[i::workers]] or [[]]

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
        result = run_worker(version, "export", {"path": str(db), "jobs": list(jobs.values())})
        phases.child_peak(result.peak_rss_bytes)
        return result.data

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        answers = list(pool.map(run, range(len(groups))))
    exported = {}
    for name, plan in plans.items():
        files = sorted((item["index"], Path(item["file"]), item["count"])
                       for answer in answers for item in answer.get(name, {}).get("batches", []))
        counts = {answer[name]["count"] for answer in answers if name in answer}
        nearest = next((answer[name]["nearest"] for answer in answers if "nearest" in answer.get(name, {})), None)
        total = sum(count for _, _, count in files)
        if len(counts) > 1 or (complete and counts and total != next(iter(counts))):
            raise MigrationError(
                f"Collection {name!r}: chromadb {version} exported {total} records but counts "
                f"{sorted(a[name]['count'] for a in answers if name in a)}.",
                "The database changed while it was read, or its metadata segment is inconsistent; "
                "copy it again from a quiet source.",
            )
        exported[name] = CollectionPlan(name, plan.batches, plan.dimension, [path for _, path, _ in files],
                                        next(iter(counts), 0), nearest, total)
    return exported
