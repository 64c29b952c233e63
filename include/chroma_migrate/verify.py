"""Prove a target database holds what the source holds, collection by collection.

Each side is read by its own chromadb version, in the same id ranges and at the same
time, so memory stays bounded by the batch size. Checked: counts, id sets, an
order-independent content digest with a per-record explanation of any difference,
collection metadata, index settings, and nearest-neighbour recall of seeded random
queries through both versions' own indexes against exact neighbours of the source data.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.batches import CollectionPlan, QuerySet, export_collections, plan_collections
from chroma_migrate.compare import CollectionComparison, compare_batches
from chroma_migrate.inspection import CollectionInfo, describe_database
from chroma_migrate.phases import PhaseLog
from chroma_migrate.worker_client import run_worker

RECALL_QUERIES = 32
RECALL_K = 10
RECALL_SLACK = 0.05
# Two independently built HNSW graphs differ by chance; at 0.x's default search ef 10 on
# hard data recall sits near 0.5 and one estimate from 32 × 10 neighbours varies by about
# ±0.03. A drop must exceed three standard deviations of the difference (and at least
# RECALL_SLACK) to count: a broken index falls far further.
RECALL_SIGMAS = 3.0


def query_sets_for(names: list[str], scratch: Path) -> dict[str, QuerySet]:
    """Where each collection's recall queries go; the source export picks them from its data."""
    return {name: QuerySet(scratch / f"queries-{zlib.crc32(name.encode()):08x}.npy", RECALL_K, RECALL_QUERIES)
            for name in names}


def _ask(version: str, db: Path, query_sets: dict[str, QuerySet], phases: PhaseLog) -> dict[str, list]:
    jobs = [{"collection": name, "queries_file": str(q.file), "k": q.k} for name, q in query_sets.items()
            if q.file.is_file()]
    if not jobs:
        return {}
    result = run_worker(version, "query", {"path": str(db), "jobs": jobs})
    phases.child_peak(result.peak_rss_bytes)
    return result.data


def _distances(space: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    q = queries.astype(np.float64)
    v = vectors.astype(np.float64)
    if space == "cosine":
        qn = q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-30)
        vn = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-30)
        return 1.0 - qn @ vn.T
    if space == "ip":
        return 1.0 - q @ v.T
    return (q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None, :]


def exact_neighbours(space: str, queries: np.ndarray, batches: list[exchange.RecordBatch], k: int,
                     best: list[list[tuple[float, str]]] | None = None) -> list[list[tuple[float, str]]]:
    """Running brute-force top-k: feed it one batch at a time."""
    best = best if best is not None else [[] for _ in range(len(queries))]
    for batch in batches:
        if not len(batch):
            continue
        distances = _distances(space, queries, batch.embeddings)
        for row, candidates in enumerate(best):
            take = np.argsort(distances[row], kind="stable")[:k]
            candidates.extend((float(distances[row][t]), batch.ids[t]) for t in take)
            candidates.sort()
            del candidates[k:]
    return best


def recall_tolerance(recall: float, samples: int) -> float:
    """How far the target's recall may fall below the source's by chance alone."""
    spread = (2 * recall * (1 - recall) / max(samples, 1)) ** 0.5  # std. dev. of a difference of two estimates
    return max(RECALL_SLACK, RECALL_SIGMAS * spread)


def _recall(hits: list[list[str]] | None, truth: list[set[str]], k: int) -> float:
    if not hits:
        return 0.0
    return float(np.mean([len(set(h) & t) / k for h, t in zip(hits, truth, strict=True)]))


def _settings_problems(source: CollectionInfo, target: CollectionInfo) -> tuple[list[str], list[str]]:
    """Problems and notes. User metadata must match exactly, and so must every `hnsw:*` key
    the source set; the target may carry extra `hnsw:*` keys (a 1.x setting moved into a
    0.x target can only live there).

    One difference is a note, not a problem: a search ef the source never set is 0.x's
    default 10, and chromadb 1.x's own upgrade gives such a collection its default 100.
    """
    problems, notes = [], []
    source_meta, target_meta = source.metadata or {}, target.metadata or {}
    user = {k: v for k, v in source_meta.items() if not k.startswith("hnsw:")}
    target_user = {k: v for k, v in target_meta.items() if not k.startswith("hnsw:")}
    if user != target_user:
        problems.append(f"collection metadata differs: source {user}, target {target_user}")
    for key, value in source_meta.items():
        if key.startswith("hnsw:") and (key not in target_meta or type(target_meta[key]) is not type(value)
                                        or target_meta[key] != value):
            problems.append(f"collection metadata {key} differs: source {value!r}, target {target_meta.get(key)!r}")
    for name, value in source.index.items():
        got = target.index.get(name)
        if got == value:
            continue
        if name == "search_ef" and "hnsw:search_ef" not in source_meta and not source.configuration:
            notes.append(f"search_ef {value} (0.x default, never set) became {got} (chromadb 1.x default)")
        else:
            problems.append(f"index setting {name} differs: source {value!r}, target {got!r}")
    return problems, notes


def compare_collection(source: CollectionInfo, target: CollectionInfo, source_plan: CollectionPlan,
                       target_plan: CollectionPlan, queries: QuerySet | None,
                       target_nearest: Callable[[], list[list[str]] | None]) -> dict[str, Any]:
    """Hashes first; whole records only for batches whose hashes disagree. Recall alongside.

    `target_nearest` is called last, so the target's query answers may still be on their way.
    """
    comparison = CollectionComparison()
    space = str(source.index.get("space", "l2"))
    query_vectors = np.load(queries.file) if queries and source_plan.count and queries.file.is_file() else None
    best = None
    for source_file, target_file in zip(source_plan.files, target_plan.files, strict=True):
        source_batch = exchange.read_batch(source_file)
        if query_vectors is not None:
            best = exact_neighbours(space, query_vectors, [source_batch], RECALL_K, best)
        target_ids, target_digests = exchange.read_fingerprints(target_file)
        source_digests = exchange.batch_digests(source_batch)
        if target_ids == source_batch.ids and target_digests == source_digests:
            for digest in source_digests:
                comparison.source.add(digest)
                comparison.target.add(digest)
            comparison.identical += len(source_digests)
        else:
            compare_batches(source_batch, exchange.read_batch(target_file), space, comparison)
    recall: dict[str, Any] = {"queries": 0, "passed": True}
    if best is not None:
        k = min(RECALL_K, source_plan.count)
        truth = [{record_id for _, record_id in candidates[:k]} for candidates in best]
        source_recall, target_recall = (_recall(source_plan.nearest, truth, k),
                                        _recall(target_nearest(), truth, k))
        allowed = recall_tolerance(source_recall, len(truth) * k)
        recall = {"queries": len(truth), "k": k, "source_recall": round(source_recall, 4),
                  "target_recall": round(target_recall, 4), "allowed_drop": round(allowed, 4),
                  "passed": target_recall >= source_recall - allowed}
    problems, notes = _settings_problems(source, target)
    if comparison.source.count != source_plan.count:
        problems.append(f"source export holds {comparison.source.count} records, chromadb counts {source_plan.count}")
    if not comparison.records_match:
        problems.append(f"records differ: {comparison.missing} missing, {comparison.extra} extra, "
                        f"{comparison.different} with different content")
    if not recall["passed"]:
        problems.append(f"nearest-neighbour recall fell from {recall['source_recall']} to {recall['target_recall']}")
    return {"collection": source.name, "passed": not problems, "problems": problems, "notes": notes,
            "records": comparison.to_dict(), "index": {"source": source.index, "target": target.index},
            "recall": recall}


def verify_databases(source_db: Path, target_db: Path, *, source_version: str | None = None,
                     target_version: str | None = None, collections: list[str] | None = None,
                     batch_size: int = 5000, workers: int = 1, work_dir: Path | None = None,
                     phases: PhaseLog | None = None, source_plans: dict[str, CollectionPlan] | None = None,
                     query_sets: dict[str, QuerySet] | None = None) -> dict[str, Any]:
    """Compare two databases; each side is read by `*_version` (default: the version that wrote it).

    Both sides are opened by chromadb, which writes to them: pass copies (the CLI does).
    `source_plans` (exported, having picked and answered `query_sets`) lets the rebuild path reuse its export.
    """
    phases = phases or PhaseLog()
    source_info, target_info = describe_database(source_db), describe_database(target_db)
    source_version = source_version or source_info.reader_version
    target_version = target_version or target_info.reader_version
    names = collections or [c.name for c in source_info.collections]
    sources = {name: source_info.collection(name) for name in names}
    target_names = {c.name for c in target_info.collections}
    problems = [f"{name}: missing in the target" for name in names if name not in target_names]
    if not collections:
        problems += [f"{name}: in the target but not in the source" for name in sorted(target_names - set(names))]
    present = [name for name in names if name in target_names]
    with tempfile.TemporaryDirectory(prefix="chroma-migrate-verify-", dir=work_dir) as scratch_dir:
        scratch = Path(scratch_dir)
        dimensions = {name: sources[name].dimension for name in present}
        if source_plans is None:
            query_sets = query_sets_for(present, scratch)
            plans = plan_collections(Path(source_db), dimensions, batch_size)
        else:
            plans = {name: source_plans[name] for name in present}
        with ThreadPoolExecutor(max_workers=2) as pool:
            # Both sides at once. When the source picks the queries during this export, the
            # target answers them afterwards; otherwise its export answers them too.
            source_side = pool.submit(
                export_collections, source_version, Path(source_db), plans, scratch / "source",
                workers=workers, phases=phases, queries=query_sets,
            ) if source_plans is None else None
            target_side = pool.submit(
                export_collections, target_version, Path(target_db), plans, scratch / "target",
                workers=workers, phases=phases, queries=None if source_side else query_sets,
            )
            source_exports = source_side.result() if source_side else plans
            target_exports = target_side.result()
        with ThreadPoolExecutor(max_workers=1) as pool:
            asked = (pool.submit(_ask, target_version, Path(target_db), query_sets or {}, phases)
                     if source_side else None)

            def nearest_of(name: str) -> Callable[[], list[list[str]] | None]:
                return lambda: asked.result().get(name) if asked else target_exports[name].nearest

            results = [
                compare_collection(sources[name], target_info.collection(name), source_exports[name],
                                   target_exports[name], (query_sets or {}).get(name), nearest_of(name))
                for name in present
            ]
    problems += [f"{r['collection']}: {p}" for r in results for p in r["problems"]]
    return {"passed": not problems, "problems": problems, "source_version": source_version,
            "target_version": target_version, "collections": results}
