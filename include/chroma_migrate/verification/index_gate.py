"""Whether the target's vector index serves every record: checks that do not depend on chance.

Recall@k at a collection's own search ef is a property of its index parameters and of
chance in how a graph was built (chromadb 0.4.24's own `query()` gives ~0.85 on hard data
at ef 10, a fresh 1.5.9 build of the same records ~0.87), so it is measured and reported,
never a verdict. What decides:
- **self-retrieval**: every sampled query is a stored source vector (drawn from every batch),
  so its own record, or a record with a bit-identical vector, must be among the target's
  answers. A miss in the target's own answers is looked up again by walking the target's
  graph natively with a wide ef; only a vector neither finds is a problem, unless the index
  health check found its record among the elements no search path reaches and judged those
  (hnswlib's neighbour pruning orphans 0.1-0.6% of the elements of sound indexes, so a sample
  of 32 hits one in a few percent of correct migrations: the health check, which sees every
  element and compares them with the source's graph where it was carried over, decides those).
  A miss the source's own graph also makes, walked the same way with the same wide ef, is the
  graph the source already had (a sound hnswlib index holds a few elements a beam search cannot
  reach although links lead to them: one in 32 sampled at 200,000 records), not something the
  migration did: it is noted, and only a miss the source's graph does not make is a problem.
- **index health** (`native/hnsw_health.py`): every mapped id resolves to a live element,
  every live element is reachable from the entry point, every link points inside the index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate.native import open_database
from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.nearest import nearest_ids

RECALL_QUERIES = 32
RECALL_K = 10
WIDE_EF = 400  # the second look at a missed self: far beyond any default search ef
SELF_EPSILON = 1e-5  # distance under which an exact neighbour is the query's own vector (or its twin)


@dataclass
class SelfRetrieval:
    """How many sampled stored vectors the target finds as their own nearest neighbours."""

    checked: int = 0
    found_by_target: int = 0
    found_by_graph_walk: int = 0
    missed: list[int] = field(default_factory=list)  # query rows found by neither
    orphans: list[int] = field(default_factory=list)  # missed rows whose records no search path reaches
    missed_by_source_too: list[int] = field(default_factory=list)  # rows the source's graph cannot find either

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "found_by_target": self.found_by_target,
                "found_by_graph_walk": self.found_by_graph_walk, "missed": len(self.missed),
                "unreachable": len(self.orphans), "missed_by_source_too": len(self.missed_by_source_too)}


def recall(hits: list[list[str]] | None, truth: list[set[str]], k: int) -> float:
    if not hits:
        return 0.0
    return float(np.mean([len(set(h) & t) / k for h, t in zip(hits, truth, strict=True)]))


def own_vectors(best: list[list[tuple[float, str]]], space: str) -> list[set[str]]:
    """Per query, the records whose vector is the query itself (distance ~0 to it). Empty in `ip`
    space, where a stored vector need not be its own nearest neighbour."""
    if space == "ip":
        return [set() for _ in best]
    return [{record_id for distance, record_id in candidates if distance <= SELF_EPSILON} for candidates in best]


def self_retrieval(space: str, best: list[list[tuple[float, str]]], answers: list[list[str]] | None,
                   target_db: Path, name: str, queries_file: Path | None, k: int,
                   unreachable: frozenset[str] = frozenset(), source_db: Path | None = None,
                   same_graph: bool = False) -> SelfRetrieval:
    """Count the queries whose own record the target answers; walk the target's graph for the rest.
    `unreachable` holds the ids the health check found no search path to: a miss whose records
    are all among them is set aside as an orphan for that check's verdict. With `source_db`, a
    miss the source's graph also makes is set aside as the source's own. `same_graph` says the
    target's segment folder and write log are the source's byte for byte: walking the source's
    graph would read the very bytes the target's walk read, so its misses are the source's."""
    own = own_vectors(best, space)
    result = SelfRetrieval()
    answers = answers or [[] for _ in own]
    misses = []
    for row, (mine, answer) in enumerate(zip(own, answers, strict=True)):
        if not mine:
            continue
        result.checked += 1
        if mine & set(answer):
            result.found_by_target += 1
        else:
            misses.append(row)
    if misses and queries_file is not None:
        queries = np.load(queries_file)[misses]
        with open_database(target_db) as target:
            walked = nearest_ids(target.collection(name), queries, k, ef=WIDE_EF)
        unfound = [row for row, answer in zip(misses, walked, strict=True) if not own[row] & set(answer)]
        result.found_by_graph_walk = len(misses) - len(unfound)
        misses = unfound
    result.orphans = [row for row in misses if own[row] <= unreachable]
    misses = [row for row in misses if not own[row] <= unreachable]
    if misses and queries_file is not None and source_db is not None:
        result.missed_by_source_too = list(misses) if same_graph else _missed_by_source(
            source_db, name, np.load(queries_file)[misses], misses, own, k)
        misses = [row for row in misses if row not in result.missed_by_source_too]
    result.missed = misses
    return result


def _missed_by_source(source_db: Path, name: str, queries: np.ndarray, rows: list[int], own: list[set[str]],
                      k: int) -> list[int]:
    """The rows whose own records the source's graph (and its log) does not answer either, walked with the
    same wide ef. A source graph the native walk cannot read excuses nothing: every miss stays the target's."""
    try:
        with open_database(source_db) as source:
            walked = nearest_ids(source.collection(name), queries, k, ef=WIDE_EF)
    except CorruptDatabaseError:
        return []
    return [row for row, answer in zip(rows, walked, strict=True) if not own[row] & set(answer)]


def self_retrieval_problem(found: SelfRetrieval, best: list[list[tuple[float, str]]]) -> str | None:
    if not found.missed:
        return None
    sample = ", ".join(sorted({record_id for row in found.missed[:3] for _d, record_id in best[row][:1]}))
    return (f"{len(found.missed)} of {found.checked} sampled stored vectors are not found as their own nearest "
            f"neighbour in the target's index, neither in its answers nor walking its graph with ef {WIDE_EF} "
            f"(e.g. {sample})")
