"""The records the full-text and filter queries are asked about: a few from every source batch.

Read natively from the source in place (contiguous runs of ids at the start of each batch,
so only those records are decoded), written as one exchange file per collection for
`fulltext_queries`, which builds its queries from them and asks the target, a fresh database
of the target version and one of the source version.

`TextAnswers` starts that work before the target is opened: the migration's own target
process (the upgrade's open, the rebuild's load) answers the target's side in passing, and the
source version's fresh database is built meanwhile, so verification only compares.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.batches import CollectionPlan
from chroma_migrate.native import open_database
from chroma_migrate.native.stored_records import stored_ids_between
from chroma_migrate.verification.fulltext_queries import (
    SAMPLE_LIMIT,
    PreparedJob,
    TextCheckInput,
    TextQueryReport,
    compare_text_answers,
    prepare_jobs,
)
from chroma_migrate.worker_client import WorkerResult, run_worker

# Records read per collection before fulltext_queries picks its sample: a few times its limit.
CANDIDATES = 4 * SAMPLE_LIMIT


def source_samples(source_db: Path, plans: dict[str, CollectionPlan], scratch: Path) -> list[TextCheckInput]:
    """One exchange file of candidate records per collection that has any."""
    checks = []
    with open_database(source_db) as native:
        for name, plan in plans.items():
            collection = native.collection(name)
            segment = collection.facts.metadata_segment
            if not segment or not collection.count or not plan.batches:
                continue
            per_batch = max(1, math.ceil(CANDIDATES / len(plan.batches)))
            parts = []
            for batch in plan.batches:
                ids = stored_ids_between(native.sql, segment, batch.low, batch.high)
                high = ids[per_batch] if len(ids) > per_batch else batch.high
                parts.append(collection.read_range(batch.low, high))
            parts = [part for part in parts if len(part)]
            if not parts:
                continue
            records = exchange.RecordBatch(
                [i for p in parts for i in p.ids], np.concatenate([p.embeddings for p in parts]),
                [d for p in parts for d in p.documents], [u for p in parts for u in p.uris],
                [m for p in parts for m in p.metadatas])
            file = scratch / f"text-candidates-{len(checks):04d}.parquet"
            exchange.write_batch(records, file)
            checks.append(TextCheckInput(name, [file], collection.metadata, collection.facts.tenant,
                                         collection.facts.database, collection.facts.bare_name or name))
    return checks


@dataclass
class TextAnswers:
    """The queries of every collection, the source version's fresh answers on their way, and the
    target's answers once the target's process has given them."""

    prepared: list[PreparedJob]
    source_version: str
    target_version: str
    source_run: Future | None
    scratch: Path
    target_answers: dict[str, Any] | None = None

    def jobs(self) -> list[dict[str, Any]]:
        return [item.to_job() for item in self.prepared]

    def worker_args(self) -> dict[str, Any]:
        """What the target's describe or load operation takes to answer in passing."""
        return {"text_jobs": self.jobs(), "scratch_dir": str(self.scratch)} if self.prepared else {}

    def report(self) -> TextQueryReport:
        """Compare: a target answer unlike its version's fresh database's is a problem; the two
        versions' fresh answers differing is a behaviour change."""
        report = TextQueryReport()
        source = self.source_run.result() if self.source_run else None
        for item in self.prepared:
            label = item.check.label
            target = (self.target_answers or {}).get("jobs", {}).get(label, {})
            theirs = source.data["jobs"].get(label) if source else None
            report.extend(compare_text_answers(item, target, self.target_version, theirs,
                                               self.source_version if source else None))
        return report


def start_text_answers(source_db: Path, plans: dict[str, CollectionPlan], scratch: Path, source_version: str,
                       target_version: str, pool: ThreadPoolExecutor) -> TextAnswers:
    """Sample the source and start the source version's fresh-database answers on `pool`."""
    scratch.mkdir(parents=True, exist_ok=True)
    prepared = prepare_jobs(source_samples(source_db, plans, scratch), scratch)
    source_run = None
    if prepared and source_version != target_version:
        args = {"path": None, "jobs": [item.to_job() for item in prepared], "scratch_dir": str(scratch)}
        source_run = pool.submit(_run, source_version, args)
    return TextAnswers(prepared, source_version, target_version, source_run, scratch)


def _run(version: str, args: dict[str, Any]) -> WorkerResult:
    return run_worker(version, "text_queries", args)
