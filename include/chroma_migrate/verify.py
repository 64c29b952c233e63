"""Prove a target database holds what the source holds, collection by collection.

Each side is read by its own chromadb version, in the same id ranges, so memory stays
bounded by the batch size. Checked: counts, id sets, an order-independent content digest
with a per-record explanation of any difference, collection metadata, index settings, and
nearest-neighbour recall of sampled queries against exact neighbours of the source data.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.batches import CollectionPlan, export_collections, plan_collections
from chroma_migrate.compare import CollectionComparison, compare_batches
from chroma_migrate.inspection import CollectionInfo, describe_database
from chroma_migrate.phases import PhaseLog
from chroma_migrate.worker_client import run_worker

RECALL_QUERIES = 16
RECALL_K = 10
RECALL_SLACK = 0.05


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


def exact_neighbours(space: str, queries: np.ndarray, files: list[Path], k: int) -> list[set[str]]:
    """Brute-force top-k over the exported batches, one batch in memory at a time."""
    best: list[list[tuple[float, str]]] = [[] for _ in range(len(queries))]
    for batch in exchange.iter_batches(files):
        if not len(batch):
            continue
        distances = _distances(space, queries, batch.embeddings)
        for row, candidates in enumerate(best):
            take = np.argsort(distances[row], kind="stable")[:k]
            candidates.extend((float(distances[row][t]), batch.ids[t]) for t in take)
            candidates.sort()
            del candidates[k:]
    return [{record_id for _, record_id in candidates} for candidates in best]


def _pick_queries(files: list[Path], count: int) -> np.ndarray:
    positions = {int(p) for p in np.linspace(0, count - 1, num=min(RECALL_QUERIES, count))}
    picked, seen = [], 0
    for batch in exchange.iter_batches(files):
        for offset in range(len(batch)):
            if seen + offset in positions:
                picked.append(batch.embeddings[offset])
        seen += len(batch)
    return np.stack(picked).astype(np.float32)


def _query_all(version: str, db: Path, jobs: list[dict], phases: PhaseLog) -> dict[str, list[set[str]]]:
    result = run_worker(version, "query", {"path": str(db), "jobs": jobs})
    phases.child_peak(result.peak_rss_bytes)
    return {name: [set(ids) for ids in answers] for name, answers in result.data.items()}


def recall_checks(plans: dict[str, CollectionPlan], spaces: dict[str, str], *, source_version: str,
                  source_db: Path, target_version: str, target_db: Path, scratch: Path,
                  phases: PhaseLog) -> dict[str, dict[str, Any]]:
    """Recall@k of both indexes against exact neighbours of the source data, per collection."""
    jobs, truths = [], {}
    for name, plan in plans.items():
        if plan.count == 0:
            continue
        k = min(RECALL_K, plan.count)
        queries = _pick_queries(plan.files, plan.count)
        queries_file = scratch / f"queries-{name}.npy"
        np.save(queries_file, queries)
        truths[name] = (k, exact_neighbours(spaces[name], queries, plan.files, k))
        jobs.append({"collection": name, "queries_file": str(queries_file), "k": k})
    results: dict[str, dict[str, Any]] = {name: {"queries": 0, "passed": True} for name in plans}
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=2) as pool:
        source_future = pool.submit(_query_all, source_version, source_db, jobs, phases)
        target_future = pool.submit(_query_all, target_version, target_db, jobs, phases)
        source_hits, target_hits = source_future.result(), target_future.result()
    for name, (k, truth) in truths.items():
        source_recall = float(np.mean([len(h & t) / k for h, t in zip(source_hits[name], truth, strict=True)]))
        target_recall = float(np.mean([len(h & t) / k for h, t in zip(target_hits[name], truth, strict=True)]))
        results[name] = {
            "queries": len(truth), "k": k, "source_recall": round(source_recall, 4),
            "target_recall": round(target_recall, 4), "passed": target_recall >= source_recall - RECALL_SLACK,
        }
    return results


def _settings_problems(source: CollectionInfo, target: CollectionInfo) -> list[str]:
    """User metadata must match exactly, and so must every `hnsw:*` key the source set.

    The target may carry extra `hnsw:*` keys: a 1.x setting moved into a 0.x target can
    only live there. The index settings themselves are compared one by one below.
    """
    problems = []
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
        if target.index.get(name) != value:
            problems.append(f"index setting {name} differs: source {value!r}, target {target.index.get(name)!r}")
    return problems


def _collection_result(source: CollectionInfo, target: CollectionInfo, plan: CollectionPlan,
                       target_files: list[Path], recall: dict[str, Any]) -> dict[str, Any]:
    comparison = CollectionComparison()
    space = str(source.index.get("space", "l2"))
    for source_file, target_file in zip(plan.files, target_files, strict=True):
        compare_batches(exchange.read_batch(source_file), exchange.read_batch(target_file), space, comparison)
    problems = _settings_problems(source, target)
    if comparison.source.count != plan.count:
        problems.append(f"source export holds {comparison.source.count} records, chromadb counts {plan.count}")
    if not comparison.records_match:
        problems.append(f"records differ: {comparison.missing} missing, {comparison.extra} extra, "
                        f"{comparison.different} with different content")
    if not recall["passed"]:
        problems.append(f"nearest-neighbour recall fell from {recall['source_recall']} to {recall['target_recall']}")
    return {"collection": source.name, "passed": not problems, "problems": problems,
            "records": comparison.to_dict(), "index": {"source": source.index, "target": target.index},
            "recall": recall}


def verify_databases(source_db: Path, target_db: Path, *, source_version: str | None = None,
                     target_version: str | None = None, collections: list[str] | None = None,
                     batch_size: int = 5000, workers: int = 1, work_dir: Path | None = None,
                     phases: PhaseLog | None = None,
                     source_plans: dict[str, CollectionPlan] | None = None) -> dict[str, Any]:
    """Compare two databases; each side is read by `*_version` (default: the version that wrote it).

    Both sides are opened by chromadb, which writes to them: pass copies (the CLI does).
    `source_plans` with exported files lets the rebuild path reuse its export.
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
        extra = sorted(target_names - set(names))
        problems += [f"{name}: in the target but not in the source" for name in extra]
    present = [name for name in names if name in target_names]
    results = []
    with tempfile.TemporaryDirectory(prefix="chroma-migrate-verify-", dir=work_dir) as scratch_dir:
        scratch = Path(scratch_dir)
        plans = dict(source_plans or {})
        todo = {name: sources[name].dimension for name in present if name not in plans}
        if todo:
            fresh = plan_collections(source_version, Path(source_db), todo, batch_size, phases)
            exported = export_collections(source_version, Path(source_db), fresh, scratch / "source",
                                          workers=workers, phases=phases)
            for name, plan in fresh.items():
                plan.files = exported[name]
            plans.update(fresh)
        plans = {name: plans[name] for name in present}
        target_files = export_collections(target_version, Path(target_db), plans, scratch / "target",
                                          workers=workers, phases=phases)
        spaces = {name: str(sources[name].index.get("space", "l2")) for name in present}
        recalls = recall_checks(plans, spaces, source_version=source_version, source_db=Path(source_db),
                                target_version=target_version, target_db=Path(target_db), scratch=scratch,
                                phases=phases)
        for name in present:
            results.append(_collection_result(sources[name], target_info.collection(name), plans[name],
                                              target_files[name], recalls[name]))
    problems += [f"{r['collection']}: {p}" for r in results for p in r["problems"]]
    return {"passed": not problems, "problems": problems, "source_version": source_version,
            "target_version": target_version, "collections": results}
