"""Cutting collections into id ranges and exporting them, several runtime processes at once.

Batches are cut by id (a stable key), never by offset paging: the same ranges can be
exported again from the source, or from the target for verification, and line up. One
child process serves many collections, since starting chromadb costs more than a batch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    count: int
    batches: list[Batch]
    dimension: int | None = None
    files: list[Path] = field(default_factory=list)


def plan_collections(version: str, db: Path, dimensions: dict[str, int | None], batch_size: int,
                     phases: PhaseLog) -> dict[str, CollectionPlan]:
    result = run_worker(version, "plan", {"path": str(db), "collections": list(dimensions),
                                          "batch_size": batch_size})
    phases.child_peak(result.peak_rss_bytes)
    plans = {}
    for name, answer in result.data.items():
        bounds: list[str | None] = [None, *answer["boundaries"], None]
        batches = [Batch(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        plans[name] = CollectionPlan(name, answer["count"], batches, dimensions[name])
    return plans


def export_collections(version: str, db: Path, plans: dict[str, CollectionPlan], out_dir: Path, *,
                       workers: int, phases: PhaseLog) -> dict[str, list[Path]]:
    """Export every batch of every plan under out_dir/<collection>/; files come back in batch order."""
    tasks = [(plan, batch) for plan in plans.values() for batch in plan.batches]
    groups = [tasks[i::workers] for i in range(workers) if tasks[i::workers]]

    def run(group: list[tuple[CollectionPlan, Batch]]) -> dict[str, list[dict]]:
        jobs: dict[str, dict] = {}
        for plan, batch in group:
            folder = out_dir / plan.collection
            folder.mkdir(parents=True, exist_ok=True)
            job = jobs.setdefault(plan.collection, {"collection": plan.collection, "batches": [],
                                                    "out_dir": str(folder), "dimension": plan.dimension})
            job["batches"].append(asdict(batch))
        result = run_worker(version, "export", {"path": str(db), "jobs": list(jobs.values())})
        phases.child_peak(result.peak_rss_bytes)
        return result.data

    files: dict[str, list[tuple[int, Path]]] = {name: [] for name in plans}
    with ThreadPoolExecutor(max_workers=len(groups) or 1) as pool:
        for answer in pool.map(run, groups):
            for name, written in answer.items():
                files[name].extend((item["index"], Path(item["file"])) for item in written)
    return {name: [path for _, path in sorted(items)] for name, items in files.items()}
