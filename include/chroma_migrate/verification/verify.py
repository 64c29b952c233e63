"""Prove a target database holds what the source holds, collection by collection.

Both sides are read in the same id ranges, one batch at a time, so memory stays bounded
by the batch size. By default the native reader reads them in place (no copy, no chromadb
process); `reader="runtime"` has each side exported by its own chromadb instead (each on a
copy: chromadb writes to what it opens). Checked: counts, id sets, an order-independent
content digest with a per-record explanation of any difference (natively, ranges stored
alike on both sides are proved equal inside SQLite and with numpy, see compare.py), collection metadata,
index settings, and nearest-neighbour recall of queries picked from the source data,
against exact neighbours of the source data: the source answered through its own index
(walked natively, or by its chromadb), the target always through the target's chromadb.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile
from chroma_migrate.batches import CollectionPlan, QuerySet, export_collections, plan_collections, process_pool
from chroma_migrate.collection_spec import schema_customisations
from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import CollectionInfo, DatabaseInfo, describe_database
from chroma_migrate.native import NativeCollection, open_database
from chroma_migrate.native.hnsw_files import read_header
from chroma_migrate.native.hnsw_health import IndexHealth, check_index_health
from chroma_migrate.native.nearest import nearest_ids
from chroma_migrate.native.stored_compare import StoredRowsComparer
from chroma_migrate.phases import PhaseLog
from chroma_migrate.progress import watched_progress_file
from chroma_migrate.verification import behaviour, fulltext, fulltext_queries, index_gate, text_sample
from chroma_migrate.verification.accounting import cached_account, compare_accounts
from chroma_migrate.verification.compare import (
    RangeShare,
    compare_exported_files,
    compare_native_ranges,
    exact_neighbours,
    merge_shares,
)
from chroma_migrate.verification.text_sample import TextAnswers
from chroma_migrate.verification.vector_identity import vectors_proven_alike
from chroma_migrate.worker_client import run_worker

READERS = ("native", "runtime")
__all__ = ["exact_neighbours", "recall_tolerance", "verify_databases"]

RECALL_QUERIES = index_gate.RECALL_QUERIES
RECALL_K = index_gate.RECALL_K
RECALL_SLACK = 0.05
# Two independently built HNSW graphs differ by chance; at 0.x's default search ef 10 on
# hard data recall sits near 0.5 and one estimate from 32 × 10 neighbours varies by about
# ±0.03. A drop must exceed three standard deviations of the difference (and at least
# RECALL_SLACK) to count: a broken index falls far further.
RECALL_SIGMAS = 3.0


def query_sets_for(names: list[str], scratch: Path) -> dict[str, QuerySet]:
    """Where each collection's queries go; `pick_queries` draws them from the source's every batch."""
    return {name: QuerySet(scratch / f"queries-{zlib.crc32(name.encode()):08x}.npy", RECALL_K)
            for name in names}


def _ask(version: str, db: Path, query_sets: dict[str, QuerySet], phases: PhaseLog) -> dict[str, list]:
    jobs = query_jobs(query_sets)
    if not jobs:
        return {}
    result = run_worker(version, "query", {"path": str(db), "jobs": jobs})
    phases.child_peak(result.peak_rss_bytes)
    return result.data


def recall_tolerance(recall: float, samples: int) -> float:
    """How far the target's recall may fall below the source's by chance alone."""
    spread = (2 * recall * (1 - recall) / max(samples, 1)) ** 0.5  # std. dev. of a difference of two estimates
    return max(RECALL_SLACK, RECALL_SIGMAS * spread)


def _same_typed(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down: True is not 1, 1 is not 1.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_typed(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_typed(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _settings_problems(source: CollectionInfo, target: CollectionInfo) -> tuple[list[str], list[str]]:
    """Problems and notes. The collection id, the user metadata (with its types), every `hnsw:*`
    key the source set, the index settings, the embedding function, spann settings and the 1.3+
    schema's index choices must match; the target may carry extra `hnsw:*` keys (a 1.x setting
    moved into a 0.x target can only live there).

    One difference is a note, not a problem: a search ef the source never set is 0.x's
    default 10, and chromadb 1.x's own upgrade gives such a collection its default 100.
    """
    problems, notes = [], []
    if source.id != target.id:
        problems.append(f"collection id differs: source {source.id}, target {target.id}")
    source_meta, target_meta = source.metadata or {}, target.metadata or {}
    user = {k: v for k, v in source_meta.items() if not k.startswith("hnsw:")}
    target_user = {k: v for k, v in target_meta.items() if not k.startswith("hnsw:")}
    if not _same_typed(user, target_user):
        problems.append(f"collection metadata differs: source {user}, target {target_user}")
    for key, value in source_meta.items():
        if key.startswith("hnsw:") and (key not in target_meta or not _same_typed(target_meta[key], value)):
            problems.append(f"collection metadata {key} differs: source {value!r}, target {target_meta.get(key)!r}")
    for name, value in source.index.items():
        got = target.index.get(name)
        if _same_typed(got, value) or (isinstance(got, int | float) and isinstance(value, int | float)
                                       and not isinstance(got, bool) and got == value):
            continue
        if name == "search_ef" and "hnsw:search_ef" not in source_meta and not source.configuration:
            notes.append(f"search_ef {value} (0.x default, never set) became {got} (chromadb 1.x default)")
        else:
            problems.append(f"index setting {name} differs: source {value!r}, target {got!r}")
    for part in ("embedding_function", "spann"):
        if not _same_typed(getattr(source, part), getattr(target, part)):
            problems.append(f"{part.replace('_', ' ')} differs: source {getattr(source, part)!r}, "
                            f"target {getattr(target, part)!r}")
    if source.schema is not None and target.schema is not None:
        chosen, kept = schema_customisations(source.schema), schema_customisations(target.schema)
        if chosen != kept:
            problems.append(f"schema index choices differ: source {chosen or 'defaults'}, target {kept or 'defaults'}")
    return problems, notes


def collection_verdict(source: CollectionInfo, target: CollectionInfo, share: RangeShare, source_count: int,
                       source_nearest: Callable[[], list[list[str]] | None],
                       target_nearest: Callable[[], list[list[str]] | None], target_db: Path,
                       queries_file: Path | None, health: IndexHealth | None = None,
                       source_db: Path | None = None, same_graph: bool = False) -> dict[str, Any]:
    """Records (the merged comparison), settings and the index gate of one collection: its report
    and problems. Recall is reported beside the gate (see index_gate.py), never a verdict.

    The nearest-neighbour answers are asked for last, so they may still be on their way.
    """
    comparison = share.comparison
    recall: dict[str, Any] = {"queries": 0}
    nearest_changes = behaviour.nearest_changes(None, None, [], "l2", RECALL_K)  # none asked (yet)
    problems, notes = _settings_problems(source, target)
    if share.best is not None and source_count:
        k = min(RECALL_K, source_count)
        truth = [{record_id for _, record_id in candidates[:k]} for candidates in share.best]
        answered, walked = target_nearest(), source_nearest()
        source_recall, target_recall = index_gate.recall(walked, truth, k), index_gate.recall(answered, truth, k)
        # What readers see, beside the verdict: queries whose top-k ids differ between the two sides.
        nearest_changes = behaviour.nearest_changes(walked, answered, share.best,
                                                    str(source.index.get("space", "l2")), k)
        allowed = recall_tolerance(source_recall, len(truth) * k)
        found = index_gate.self_retrieval(str(source.index.get("space", "l2")), share.best, answered, target_db,
                                          source.name, queries_file, k, _orphans(health), source_db, same_graph)
        recall = {"queries": len(truth), "k": k, "source_recall": round(source_recall, 4),
                  "target_recall": round(target_recall, 4), "allowed_drop": round(allowed, 4),
                  "self_retrieval": found.to_dict()}
        if target_recall < source_recall - allowed:
            notes.append(f"recall@{k} at the collection's search ef is {target_recall:.3f} in the target and "
                         f"{source_recall:.3f} walking the source's graph: a property of the index parameters "
                         "(every stored vector sampled was still found)")
        if problem := index_gate.self_retrieval_problem(found, share.best):
            problems.append(problem)
        if found.missed_by_source_too:
            notes.append(f"{len(found.missed_by_source_too)} of {found.checked} sampled stored vectors are found by "
                         f"neither the target's graph nor the source's own, walked with ef {index_gate.WIDE_EF}: "
                         "elements the source's graph already could not reach")
        if found.orphans:
            notes.append(f"{len(found.orphans)} of {found.checked} sampled stored vectors belong to elements no "
                         "search path reaches; the index health check judges those")
    if health is not None:
        problems += health.problems
        recall["index_health"] = {key: value for key, value in health.to_dict().items()
                                  if key not in ("problems", "unreachable_ids")}
    if comparison.source.count != source_count:
        problems.append(f"source read holds {comparison.source.count} records, its count is {source_count}")
    if not comparison.records_match:
        problems.append(f"records differ: {comparison.missing} missing, {comparison.extra} extra, "
                        f"{comparison.different} with different content")
    elif not comparison.equivalent and (comparison.source.hex, comparison.source.count) != (
            comparison.target.hex, comparison.target.count):
        # Each side hashed its own bytes; with no tolerated difference they must agree.
        problems.append(f"content digests differ: source {comparison.source.hex} ({comparison.source.count} "
                        f"records), target {comparison.target.hex} ({comparison.target.count} records)")
    return {"collection": source.name, "passed": not problems, "problems": problems, "notes": notes,
            "records": comparison.to_dict(), "index": {"source": source.index, "target": target.index},
            "recall": recall, "nearest_changes": nearest_changes}


def _orphans(health: IndexHealth | None) -> frozenset[str]:
    """The ids no search path reaches, when the health check judged them (its verdict stands for them)."""
    return frozenset(health.unreachable_ids) if health is not None else frozenset()


def _database_problems(source: DatabaseInfo, target: DatabaseInfo) -> list[str]:
    """Every tenant and database of the source (empty ones too) is in the target with its id (the
    accounting compares the names too, from its own SQL; the ids are checked only here)."""
    def keyed(info: DatabaseInfo) -> dict[tuple[str, str], str]:
        return {(d["tenant"], d["name"]): d["id"] for d in info.databases}

    problems = [f"tenant {t!r}: missing in the target" for t in source.tenants if t not in target.tenants]
    theirs = keyed(target)
    for (tenant, name), database_id in keyed(source).items():
        if (tenant, name) not in theirs:
            problems.append(f"database {tenant}/{name}: missing in the target")
        elif database_id and theirs[(tenant, name)] != database_id:
            problems.append(f"database {tenant}/{name}: id differs: source {database_id}, target "
                            f"{theirs[(tenant, name)]}")
    return problems


def pick_queries(db: Path, plans: dict[str, CollectionPlan], query_sets: dict[str, QuerySet]) -> None:
    """Save each collection's queries, stored source vectors drawn evenly from every batch (only those
    records' vectors are read), unless already there."""
    with open_database(db) as native:
        for name, query in query_sets.items():
            if query.file.is_file() or name not in plans:
                continue
            collection, batches = native.collection(name), plans[name].batches
            wanted = query.pick or RECALL_QUERIES
            shares = [0] * len(batches)
            for position in np.linspace(0, len(batches) - 1, num=wanted).astype(int) if batches else []:
                shares[position] += 1
            picked = [collection.sample_vectors(batch.low, batch.high, count)
                      for batch, count in zip(batches, shares, strict=True) if count]
            dimension = int(collection.dimension or 0)
            np.save(query.file, np.concatenate(picked) if picked else np.zeros((0, dimension), np.float32))


def query_jobs(query_sets: dict[str, QuerySet]) -> list[dict[str, Any]]:
    """The recall queries as the runtime workers take them."""
    return [{"collection": name, "queries_file": str(q.file), "k": q.k} for name, q in query_sets.items()
            if q.file.is_file()]


@dataclass
class VerifyRequest:
    """What to compare, and what a migration already has in hand so nothing is read twice.

    `*_version` is the chromadb that answers for each side (default: its writer). Native reading
    (the default) reads both sides in place and leaves them byte-identical; the target's recall
    answers come from `target_nearest` (the migration's own target process answered them) or
    from the target's chromadb on a scratch copy. Runtime reading exports each side with its own
    chromadb, which writes to them: pass copies. `source_plans` (an export of the source that
    picked and answered `query_sets`) lets a rebuild reuse its export; `source_info` spares
    describing the source again, `plans` (the source's id ranges at `batch_size`, not exported)
    cutting them again; `text` holds the where / where_document answers the migration's target
    process gave (text_sample.TextAnswers). `sample_queries` are the operator's own queries per
    collection (behaviour.py), asked of copies of both sides in `work_dir`; their changed answers
    join `report["behaviour"]`, never the verdict.
    """

    source_db: Path
    target_db: Path
    source_version: str | None = None
    target_version: str | None = None
    collections: list[str] | None = None
    batch_size: int = 5000
    workers: int = 1
    work_dir: Path | None = None
    reader: str = "native"
    phases: PhaseLog | None = None
    source_info: DatabaseInfo | None = None
    plans: dict[str, CollectionPlan] | None = None
    source_plans: dict[str, CollectionPlan] | None = None
    query_sets: dict[str, QuerySet] | None = None
    target_nearest: dict[str, list[list[str]]] | None = None
    text: TextAnswers | None = None
    sample_queries: dict[str, list[dict[str, Any]]] | None = None
    source_side: SourceSide | None = None


@dataclass
class SourceSide:
    """What verification reads of the source alone, read while the target is being made (a
    migration's target process leaves this process idle): per collection its count and its own
    graph's answers to the recall queries, and its index health, the baseline of a carried graph."""

    answers: dict[str, tuple[int, list[list[str]] | None]]
    baselines: dict[str, IndexHealth]


def read_source_side(source_db: Path, names: list[str], query_sets: dict[str, QuerySet]) -> SourceSide:
    """The source's share of `verify_databases`, computed ahead (the same functions it calls itself)."""
    with open_database(source_db) as source:
        baselines = {name: check_index_health(source.collection(name), name) for name in names}
        return SourceSide(_answers_of(source, names, query_sets), baselines)


def verify_databases(request: VerifyRequest) -> dict[str, Any]:
    """Compare two databases, every layer (see the module docstring); the report as a dict."""
    source_db, target_db, reader, batch_size = request.source_db, request.target_db, request.reader, request.batch_size
    collections, workers, work_dir, text = request.collections, request.workers, request.work_dir, request.text
    source_plans, plans, query_sets = request.source_plans, request.plans, request.query_sets
    target_nearest, source_info, phases = request.target_nearest, request.source_info, request.phases
    source_version, target_version = request.source_version, request.target_version
    if reader not in READERS:
        raise MigrationError(f"Unknown reader {reader!r}.", f"Use one of {', '.join(READERS)}.")
    sample_queries = behaviour.validate_sample_queries(request.sample_queries)
    phases = phases or PhaseLog()
    source_info = source_info or describe_database(source_db)
    with ThreadPoolExecutor(max_workers=1) as describing:
        # Describing the target (its SQL account, the closed-world refusal, and a quick_check) takes
        # seconds at a million records: it runs beside the comparison, which needs only its names.
        described = describing.submit(describe_database, target_db)
        target_names = _target_names(target_db, described)
        if target_version is None or reader == "runtime":  # the runtime reader's chromadb writes to the target
            target_version = target_version or described.result().reader_version
        source_version = source_version or source_info.reader_version
        names = collections or [c.name for c in source_info.collections]
        behaviour.check_sample_collections(sample_queries, names)
        sources = {name: source_info.collection(name) for name in names}
        present = [name for name in names if name in target_names]
        target_info = _Described(described)
        with tempfile.TemporaryDirectory(prefix="chroma-migrate-verify-", dir=work_dir) as scratch_dir:
            scratch = Path(scratch_dir)
            dimensions = {name: sources[name].dimension for name in present}
            known = source_plans if source_plans is not None else plans
            plans = ({name: known[name] for name in present} if known is not None
                     else plan_collections(Path(source_db), dimensions, batch_size))
            query_sets = query_sets if query_sets is not None else query_sets_for(present, scratch)
            text_found: dict[str, Any] = {}
            try:
                with ThreadPoolExecutor(max_workers=3) as sampling:
                    asked = behaviour.start_sample_queries(sampling, sample_queries, Path(source_db),
                                                           Path(target_db), source_version, target_version, scratch)
                    if reader == "runtime":
                        results = _compare_runtime(sources, target_info, present, plans, Path(source_db),
                                                   Path(target_db), source_version, target_version, query_sets,
                                                   source_plans is None, workers, phases, scratch)
                    else:
                        results, text_found = _compare_native(
                            sources, target_info, present, plans, Path(source_db), Path(target_db), source_version,
                            target_version, query_sets, target_nearest, source_plans is not None, workers, phases,
                            scratch, text, request.source_side)
                    sample = (behaviour.compare_sample_answers(sample_queries, asked.result(), source_version,
                                                               target_version)
                              if asked and sample_queries else (0, [], []))
            except BaseException:
                described.result()  # a refusal of the target explains a failed read of it best
                raise
        full_target = described.result()
    problems = [f"{name}: missing in the target" for name in names if name not in target_names]
    if not collections:
        problems += _database_problems(source_info, full_target)
    # The first layer, independent of the native reader and the exchange files: SQL counts of both files.
    account_notes: list[str] = []
    problems += [f"accounting: {problem}" for problem in compare_accounts(
        cached_account(source_db), cached_account(target_db), collections, notes=account_notes)]
    if not collections:
        problems += [f"{name}: in the target but not in the source" for name in sorted(target_names - set(names))]
    problems += [f"{r['collection']}: {p}" for r in results for p in r["problems"]]
    problems += text_found.get("problems", [])
    seen = behaviour.build_behaviour(results, text_found, sample, source_version, target_version)
    return {"passed": not problems, "problems": problems, "source_version": source_version,
            "target_version": target_version, "reader": reader, "collections": results,
            "behaviour": seen, "behaviour_changes": behaviour.behaviour_strings(seen), "fulltext": text_found,
            "accounting_notes": account_notes}


def _target_names(target_db: Path, described: Future) -> set[str]:
    """The target's collections, from a cheap read of its file; where even that fails, the
    description's refusal names the problem."""
    try:
        with dbfile.open_readonly(Path(target_db)) as conn:
            return dbfile.collection_names(conn)
    except Exception:
        described.result()
        raise


class _Described:
    """The target's description as the comparison asks for it: at its verdicts, when it is done."""

    def __init__(self, described: Future) -> None:
        self._described = described

    def collection(self, name: str) -> CollectionInfo:
        return self._described.result().collection(name)


def _compare_native(sources: dict[str, CollectionInfo], target_info: Any, present: list[str],
                    plans: dict[str, CollectionPlan], source_db: Path, target_db: Path, source_version: str,
                    target_version: str, query_sets: dict[str, QuerySet],
                    target_nearest: dict[str, list[list[str]]] | None, exported: bool, workers: int,
                    phases: PhaseLog, scratch: Path, text: TextAnswers | None, side: SourceSide | None = None,
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both sides read in place by the native reader, the id ranges shared among `workers` processes.

    Meanwhile this process counts the source and walks its hnsw graph for its recall
    answers (unless `side` holds them, read while the target was made); the target's chromadb
    answers on a scratch copy unless the migration already asked it.
    """
    pick_queries(source_db, plans, {name: query_sets[name] for name in present if name in query_sets})
    pages_alike, vectors_alike = None, dict.fromkeys(present, False)
    if not exported:  # proved once here rather than by every worker (it reads both tables' pages)
        with StoredRowsComparer(source_db, target_db) as rows:
            pages_alike = rows.pages_alike
        with open_database(source_db) as source, open_database(target_db) as target:
            vectors_alike = {name: vectors_proven_alike(source.collection(name), target.collection(name), source_db,
                                                        target_db) for name in present}
    if pages_alike and all(vectors_alike.values()):
        # Nothing of the target is read but its ids: a range is the source's ids, vectors and exact
        # neighbours, lighter than starting a worker process that loads the id maps again.
        workers = 1
    jobs = []
    for name in present:
        plan, query = plans[name], query_sets.get(name)
        files: list[Path | None] = list(plan.files) if exported else [None] * len(plan.batches)
        ranges = [(b.low, b.high, str(f) if f else None) for b, f in zip(plan.batches, files, strict=True)]
        queries = str(query.file) if query and query.file.is_file() else None
        for position in range(min(workers, len(ranges))):
            jobs.append((name, str(sources[name].index.get("space", "l2")), ranges[position::workers], queries))
    with (watched_progress_file(phases.progress) as progress_file, _range_pool(workers) as pool,
          ThreadPoolExecutor(max_workers=3) as asking):
        # The worker processes first: they may be forked, which is only safe before any thread starts.
        futures = [pool.submit(compare_native_ranges, str(source_db), str(target_db), name, space, group, queries,
                               RECALL_K, pages_alike, progress_file, vectors_alike[name])
                   for name, space, group, queries in jobs]
        # chromadb writes to what it opens, and must not race the native reads: it gets its own copy,
        # unless the migration's own target process already answered everything.
        answered_in_passing = target_nearest is not None and text is not None and text.target_answers is not None
        copy = None if answered_in_passing else scratch / "target-for-queries"
        copied = asking.submit(shutil.copytree, target_db, copy) if copy else None
        asked = (asking.submit(lambda: (copied.result(), _ask(target_version, copy, query_sets, phases))[1])
                 if target_nearest is None and copied else None)
        # After the recall answers: two chromadb processes never open one copy at once.
        texts = asking.submit(lambda: (copied and copied.result(), asked and asked.result(), _text_answers(
            source_db, target_db, copy, plans, present, source_version, target_version, scratch, text))[2])
        source_answers = side.answers if side is not None else _source_answers(source_db, present, query_sets)
        health = index_health(source_db, target_db, present, side.baselines if side is not None else None,
                              vectors_alike)
        by_name: dict[str, list[RangeShare]] = {}
        for job, future in zip(jobs, futures, strict=True):
            by_name.setdefault(job[0], []).append(future.result())
        answered = asked.result() if asked else (target_nearest or {})
        text_report = texts.result()
    results = []
    for name in present:
        share = merge_shares(by_name[name], RECALL_K)
        share.source_count, share.nearest = source_answers[name]
        source_nearest = plans[name].nearest if plans[name].nearest is not None else share.nearest
        query = query_sets.get(name)
        results.append(collection_verdict(sources[name], target_info.collection(name), share,
                                          share.source_count or 0, lambda n=source_nearest: n,
                                          lambda n=name: answered.get(n), target_db,
                                          query.file if query and query.file.is_file() else None, health[name],
                                          source_db, vectors_alike[name]))
    return results, text_report


def index_health(source_db: Path, target_db: Path, names: list[str],
                 baselines: dict[str, IndexHealth] | None = None,
                 same_files: dict[str, bool] | None = None) -> dict[str, IndexHealth]:
    """Each target index's deterministic health. A graph the migration carried over (the same vector
    segment on both sides: an upgrade) must still reach every id the source's reached; a graph built
    anew is judged alone (hnswlib's pruning leaves a few elements unreachable in sound indexes).
    `baselines` are the source's own health, when already read (`read_source_side`). Where
    `same_files` says the target's segment folder and write log are the source's, byte for byte
    (vector_identity.vectors_proven_alike), the check would read the very bytes the source's did:
    the source's health is the target's."""
    found = {}
    with open_database(source_db) as source, open_database(target_db) as target:
        for name in names:
            mine, theirs = source.collection(name), target.collection(name)
            baseline = None
            if _graph_carried(mine, theirs, source_db, target_db):
                baseline = (baselines or {}).get(name) or check_index_health(mine, name)
            if baseline is not None and (same_files or {}).get(name):
                found[name] = _health_of_same_files(baseline, Path(target_db) / str(theirs.facts.vector_segment))
                continue
            found[name] = check_index_health(theirs, name, baseline if baseline and baseline.passed else None)
    return found


def _health_of_same_files(source: IndexHealth, target_folder: Path) -> IndexHealth:
    note = ("the target's segment folder and write log are the source's, byte for byte: the source's "
            "health check stands for it")
    return replace(source, folder=str(target_folder), unreachable_ids=list(source.unreachable_ids),
                   problems=list(source.problems), notes=[*source.notes, note])


def _graph_carried(source: NativeCollection, target: NativeCollection, source_db: Path, target_db: Path) -> bool:
    """The same vector segment holding as many elements on both sides: the graph was carried over
    unchanged. An upgrade that applied pending log rows inserted elements, and hnswlib's inserts
    re-prune their neighbours' links, so such a graph is judged alone."""
    segment = source.facts.vector_segment
    if not segment or segment != target.facts.vector_segment:
        return False
    try:
        counts = {read_header(db / segment).element_count for db in (Path(source_db), Path(target_db))}
    except (OSError, MigrationError):  # no flushed index on a side: nothing carried to compare
        return False
    return len(counts) == 1


def _text_answers(source_db: Path, target_db: Path, target_copy: Path | None, plans: dict[str, CollectionPlan],
                  present: list[str], source_version: str, target_version: str, scratch: Path,
                  text: TextAnswers | None) -> dict[str, Any]:
    """The full-text index of the target checked in SQL (read-only, in place), and where /
    where_document queries on a sample of every batch answered by the target, a fresh database of
    its version and one of the source's: the answers the migration's target process gave (`text`),
    or else asked now of the target's copy. Problems block; differences between the two versions'
    fresh answers are behaviour changes."""
    segments = {name: segment for name, segment in fulltext.metadata_segments(target_db).items() if name in present}
    index = fulltext.check_fulltext(target_db, segments, scratch_dir=scratch)
    if text is not None and text.target_answers is not None:
        answers = text.report()
    else:
        assert target_copy is not None
        checks = text_sample.source_samples(source_db, {name: plans[name] for name in present}, scratch)
        answers = fulltext_queries.check_text_queries(target_copy, target_version, checks, scratch,
                                                      source_version=source_version)
    compared = sum(part.get("compared", 0) for part in answers.collections.values())
    return {"problems": index.problems + answers.problems, "behaviour_changes": answers.notes,
            "changes": answers.changes, "compared": compared, "notes": index.notes, "skipped": answers.skipped,
            "seconds": {**index.seconds, **answers.seconds}}


def _source_answers(db: Path, names: list[str], query_sets: dict[str, QuerySet],
                    ) -> dict[str, tuple[int, list[list[str]] | None]]:
    """Each collection's count and the source's own answers to its recall queries, its hnsw graph walked natively."""
    with open_database(db) as native:
        return _answers_of(native, names, query_sets)


def _answers_of(native: Any, names: list[str], query_sets: dict[str, QuerySet],
                ) -> dict[str, tuple[int, list[list[str]] | None]]:
    """`_source_answers` on a database already open (read_source_side opens the source once for both parts)."""
    answers = {}
    for name in names:
        collection, query = native.collection(name), query_sets.get(name)
        count = collection.count
        asked = query is not None and query.file.is_file() and count
        answers[name] = (count, nearest_ids(collection, np.load(query.file), RECALL_K) if asked else None)
    return answers


class _InProcess:
    """The executor interface, run right here: one verification worker needs no process of its own.

    Each call runs when its result is first asked for, not when it is submitted, so that the
    threads started after the submissions (the full-text checks, the target's answers) work
    beside it instead of after it."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def submit(self, function: Callable[..., Any], *args: Any) -> _Deferred:
        return _Deferred(function, args)


class _Deferred:
    """A call made on the first `result()`; an exception is raised there, as a pool's future would."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._call: Callable[[], Any] | None = lambda: function(*args)
        self._done: Future = Future()

    def result(self) -> Any:
        if self._call is not None:
            call, self._call = self._call, None
            try:
                self._done.set_result(call())
            except BaseException as exc:
                self._done.set_exception(exc)
        return self._done.result()


def _range_pool(workers: int) -> Any:
    return _InProcess() if workers <= 1 else process_pool(workers)


def _compare_runtime(sources: dict[str, CollectionInfo], target_info: Any, present: list[str],
                     plans: dict[str, CollectionPlan], source_db: Path, target_db: Path, source_version: str,
                     target_version: str, query_sets: dict[str, QuerySet], export_source: bool, workers: int,
                     phases: PhaseLog, scratch: Path) -> list[dict[str, Any]]:
    """Each side exported by its own chromadb (both opened by chromadb: the caller passes copies)."""
    pick_queries(source_db, plans, {name: query_sets[name] for name in present if name in query_sets})
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Both sides at once. When the source picks the queries during this export, the
        # target answers them afterwards; otherwise its export answers them too.
        source_side = pool.submit(
            export_collections, source_version, source_db, plans, scratch / "source", workers=workers,
            phases=phases, queries=query_sets, export_with="runtime",
        ) if export_source else None
        target_side = pool.submit(
            export_collections, target_version, target_db, plans, scratch / "target", workers=workers,
            phases=phases, queries=None if source_side else query_sets, export_with="runtime",
        )
        source_exports = source_side.result() if source_side else plans
        target_exports = target_side.result()
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(_ask, target_version, target_db, query_sets, phases) if source_side else None
        results = []
        for name in present:
            source_plan, target_plan, query = source_exports[name], target_exports[name], query_sets.get(name)
            vectors = np.load(query.file) if query and query.file.is_file() else None
            share = compare_exported_files(source_plan.files, target_plan.files,
                                           str(sources[name].index.get("space", "l2")), vectors, RECALL_K)

            def target_answers(name=name, target_plan=target_plan) -> list[list[str]] | None:
                return asked.result().get(name) if asked else target_plan.nearest

            results.append(collection_verdict(sources[name], target_info.collection(name), share, source_plan.count,
                                              lambda p=source_plan: p.nearest, target_answers, target_db,
                                              query.file if query and query.file.is_file() else None))
    return results
