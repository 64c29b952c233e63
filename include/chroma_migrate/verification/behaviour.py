"""What readers will see differently: the answers that change between the versions, measured.

The same records can answer differently in another chromadb version (0.x and 1.x disagree on
some `where_document` filters, 1.x searches its graph with a wider ef by default, a rebuilt
graph finds other near neighbours). The approver must see that before the pointer moves, so
verification measures it and reports it here; it is never a verification failure.

Three sources feed `report["behaviour"]`:
- the where / where_document queries built from a sample of each collection and answered by a
  fresh database of each version (fulltext_queries.py), kinds "where" and "where_document";
- the recall queries (sampled stored vectors): the source's nearest neighbours walking its own
  graph against the target version's `query()`, kind "nearest", one summary per collection;
- the operator's own `sample_queries`, asked of a copy of the source in the source's version
  and of a copy of the target in the target's (worker op `sample_queries`), kind "sample".
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError, WorkerFailedError
from chroma_migrate.worker_client import run_worker

SAMPLE_KEYS = ("name", "where", "where_document", "near_ids", "n_results")
MAX_NEAR_IDS = 100
MAX_RESULTS = 1000
SHOWN_IDS = 3  # ids named in a sentence
KEPT_IDS = 5  # ids kept in an entry's only_source / only_target
EXAMPLES = 3  # differing nearest-neighbour queries kept per collection
FIX = "Correct the sample queries file; each query is {\"name\": ..., and any of \"where\", \"where_document\", " \
      "\"near_ids\" (with an optional \"n_results\")}."

SampleQueries = dict[str, list[dict[str, Any]]]


# ---------------------------------------------------------------- the operator's queries: validation

def validate_sample_queries(sample_queries: Any) -> SampleQueries | None:
    """Refuse malformed sample queries before any work, naming the query; returns them unchanged."""
    if sample_queries is None:
        return None
    if not isinstance(sample_queries, dict):
        raise MigrationError(f"sample queries must map collection names to lists of queries, got "
                             f"{type(sample_queries).__name__}.", FIX)
    for collection, queries in sample_queries.items():
        if not isinstance(collection, str) or not collection:
            raise MigrationError(f"sample queries: {collection!r} is not a collection name.", FIX)
        if not isinstance(queries, list) or not queries:
            raise MigrationError(f"sample queries for {collection}: expected a non-empty list of queries.", FIX)
        names = [_validate_query(collection, position, query) for position, query in enumerate(queries)]
        if len(set(names)) < len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise MigrationError(f"sample queries for {collection}: the name {twice[0]!r} is used twice.",
                                 "Give every query of a collection its own name.")
    return sample_queries


def _validate_query(collection: str, position: int, query: Any) -> str:
    """One query's shape; returns its name. Filters' contents are left to each chromadb version."""
    where = f"sample query {collection}[{position}]"
    if not isinstance(query, dict):
        raise MigrationError(f"{where} is a {type(query).__name__}, not an object.", FIX)
    name = query.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MigrationError(f"{where} has no \"name\" (a non-empty string).", FIX)
    where = f"sample query {name!r} of {collection}"
    unknown = sorted(set(query) - set(SAMPLE_KEYS))
    if unknown:
        raise MigrationError(f"{where} has unknown key(s) {', '.join(unknown)}.",
                             f"Use only {', '.join(SAMPLE_KEYS)}.")
    if not any(query.get(key) is not None for key in ("where", "where_document", "near_ids")):
        raise MigrationError(f"{where} asks nothing: give it \"where\", \"where_document\" or \"near_ids\".", FIX)
    for key in ("where", "where_document"):
        if key in query and (not isinstance(query[key], dict) or not query[key]):
            raise MigrationError(f"{where}: \"{key}\" must be a non-empty object, got {query[key]!r}.", FIX)
    _validate_nearest(where, query)
    return name


def _validate_nearest(where: str, query: dict[str, Any]) -> None:
    near = query.get("near_ids")
    if "near_ids" in query and (not isinstance(near, list) or not near or len(near) > MAX_NEAR_IDS
                                or not all(isinstance(i, str) and i for i in near)):
        raise MigrationError(f"{where}: \"near_ids\" must be a list of 1 to {MAX_NEAR_IDS} record ids, "
                             f"got {near!r}.", FIX)
    if "n_results" not in query:
        return
    if "near_ids" not in query:
        raise MigrationError(f"{where}: \"n_results\" needs \"near_ids\" (a get() answer is compared whole).",
                             "Drop n_results, or add near_ids.")
    count = query["n_results"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RESULTS:
        raise MigrationError(f"{where}: \"n_results\" must be a whole number from 1 to {MAX_RESULTS}, "
                             f"got {count!r}.", FIX)


def check_sample_collections(sample_queries: SampleQueries | None, names: list[str]) -> None:
    """Every collection a sample query names is among the ones verified."""
    unknown = sorted(set(sample_queries or {}) - set(names))
    if unknown:
        raise MigrationError(f"sample queries name collection(s) not verified here: {', '.join(unknown)}.",
                             f"Use the names of the source's collections ({', '.join(names) or 'none'}).")


def load_sample_queries(path: Path | None) -> SampleQueries | None:
    """A `--sample-queries` JSON file, read and validated (a bad file is refused before any work)."""
    if path is None:
        return None
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MigrationError(f"Cannot read the sample queries file {path}: {exc.strerror or exc}.",
                             "Check the path.") from exc
    except json.JSONDecodeError as exc:
        raise MigrationError(f"The sample queries file {path} is not JSON: {exc}.", FIX) from exc
    return validate_sample_queries(loaded)


# ---------------------------------------------------------------- the operator's queries: running

def start_sample_queries(pool: ThreadPoolExecutor, sample_queries: SampleQueries | None, source_db: Path,
                         target_db: Path, source_version: str, target_version: str, scratch: Path,
                         ) -> Future | None:
    """Copy both databases now (before anything else opens them), then ask each version on `pool`."""
    if not sample_queries:
        return None
    jobs = [{"collection": name, "queries": queries} for name, queries in sample_queries.items()]
    copies = {"source": scratch / "sample-source", "target": scratch / "sample-target"}
    shutil.copytree(source_db, copies["source"])
    shutil.copytree(target_db, copies["target"])
    asked = {side: pool.submit(_ask_copy, version, copies[side], jobs)
             for side, version in (("source", source_version), ("target", target_version))}
    return pool.submit(lambda: {side: future.result() for side, future in asked.items()})


def _ask_copy(version: str, copy: Path, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """One version's answers on its own copy (removed after); a failed process becomes an error."""
    try:
        return run_worker(version, "sample_queries", {"path": str(copy), "jobs": jobs}).data
    except WorkerFailedError as exc:
        return {"error": exc.problem}
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def compare_sample_answers(sample_queries: SampleQueries, answers: dict[str, Any], source_version: str,
                           target_version: str) -> tuple[int, list[dict[str, Any]], list[str]]:
    """Queries compared, the changed ones (kind "sample") and notes on what could not be compared."""
    compared, changed, notes = 0, [], []
    for side, version in (("source", source_version), ("target", target_version)):
        if answers.get(side, {}).get("error"):
            notes.append(f"sample queries could not run on the {side} in chromadb {version}: "
                         f"{answers[side]['error']}")
    if any(answers.get(side, {}).get("error") for side in ("source", "target")):
        return 0, [], notes
    for collection, queries in sample_queries.items():
        mine, theirs = (answers[side]["collections"].get(collection, {}) for side in ("source", "target"))
        if mine.get("error") or theirs.get("error"):
            notes.append(f"{collection}: sample queries not compared: the collection could not be opened "
                         f"({mine.get('error') or theirs.get('error')})")
            continue
        before = {a["name"]: a for a in mine.get("answers", [])}
        after = {a["name"]: a for a in theirs.get("answers", [])}
        for query in queries:
            mine_answer, their_answer = before.get(query["name"]), after.get(query["name"])
            if not mine_answer or not their_answer:
                notes.append(f"{collection}: sample query {query['name']!r} got no answer from the "
                             f"{'source' if not mine_answer else 'target'}")
                continue
            entry, note = _compare_one(collection, query["name"], mine_answer, their_answer, source_version,
                                       target_version)
            compared += not (mine_answer.get("error") and their_answer.get("error"))
            changed += [entry] if entry else []
            notes += [note] if note else []
    return compared, changed, notes


def _compare_one(collection: str, name: str, before: dict[str, Any], after: dict[str, Any], source_version: str,
                 target_version: str) -> tuple[dict[str, Any] | None, str | None]:
    """A changed entry when the answers differ (an error on one side only is a change too)."""
    label = f"sample query {name!r}"
    if before.get("error") and after.get("error"):
        return None, f"{collection}: {label} fails in both versions ({after['error']})"
    missing = sorted(set(before.get("missing", [])) | set(after.get("missing", [])))
    note = f"{collection}: {label}: near_ids not in the collection: {_shown(missing)}" if missing else None
    if before.get("error") or after.get("error"):
        entry = _entry(collection, "sample", label, _count(before), _count(after), set(), set())
        failed, version = (before, source_version) if before.get("error") else (after, target_version)
        entry["error"] = failed["error"]
        entry["text"] = f"{collection}: {label} fails in chromadb {version} only ({failed['error']})"
        return entry, note
    lost, gained = _answer_difference(before, after)
    if not lost and not gained and before.get("digest") == after.get("digest"):
        return None, note
    entry = _entry(collection, "sample", label, _count(before), _count(after), lost, gained)
    entry["text"] = (f"{collection}: {label} answers {_count(before)} records in {source_version} and "
                     f"{_count(after)} in {target_version} (only in {source_version}: {_shown(lost) or '-'}; "
                     f"only in {target_version}: {_shown(gained) or '-'})")
    return entry, note


def _count(answer: dict[str, Any]) -> int | None:
    return None if answer.get("error") else answer.get("count")


def _answer_difference(before: dict[str, Any], after: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Ids only in the source's answer and only in the target's (per near id for nearest queries)."""
    if "nearest" in before or "nearest" in after:
        mine, theirs = before.get("nearest", {}), after.get("nearest", {})
        lost = {i for near in mine for i in set(mine[near]) - set(theirs.get(near, []))}
        gained = {i for near in theirs for i in set(theirs[near]) - set(mine.get(near, []))}
        return lost, gained
    mine_ids, their_ids = set(before.get("ids", [])), set(after.get("ids", []))
    return mine_ids - their_ids, their_ids - mine_ids


# ---------------------------------------------------------------- nearest neighbours

def nearest_changes(source: list[list[str]] | None, target: list[list[str]] | None,
                    best: list[list[tuple[float, str]]], space: str, k: int) -> dict[str, Any]:
    """The recall queries whose top-k ids differ between the source's graph and the target's query().

    `best` (exact neighbours, distance and id) names each query by the record it was drawn from.
    """
    if not source or not target:
        return {"queries": 0, "k": k, "differing": 0, "examples": []}
    from chroma_migrate.verification import index_gate  # numpy: configuration.py imports this module at parse time

    own = index_gate.own_vectors(best, space) if best else [set() for _ in source]
    differing = []
    for row, (mine, theirs) in enumerate(zip(source, target, strict=True)):
        lost, gained = set(mine[:k]) - set(theirs[:k]), set(theirs[:k]) - set(mine[:k])
        if lost or gained:
            name = min(own[row]) if row < len(own) and own[row] else f"#{row}"
            differing.append({"query": name, "lost": sorted(lost), "gained": sorted(gained)})
    return {"queries": len(source), "k": k, "differing": len(differing), "examples": differing[:EXAMPLES]}


def nearest_entry(collection: str, found: dict[str, Any], source_version: str | None,
                  target_version: str | None) -> dict[str, Any] | None:
    """One summary entry for a collection whose nearest-neighbour answers differ."""
    if not found.get("differing"):
        return None
    examples = found["examples"]
    lost = {i for example in examples for i in example["lost"]}
    gained = {i for example in examples for i in example["gained"]}
    label = f"nearest-neighbour queries (k={found['k']})"
    # The counts of a nearest entry are the queries each side answered; `differing` how many differ.
    entry = _entry(collection, "nearest", label, found["queries"], found["queries"], lost, gained)
    entry.update(queries=found["queries"], differing=found["differing"], examples=examples)
    first = examples[0]
    entry["text"] = (f"{collection}: {found['differing']} of {found['queries']} {label} answer differently "
                     f"(the source's graph in {source_version or 'the source'}, the target's query() in "
                     f"{target_version or 'the target'}); e.g. query {first['query']}: lost "
                     f"{_shown(set(first['lost'])) or '-'}; gained {_shown(set(first['gained'])) or '-'}")
    return entry


# ---------------------------------------------------------------- the section

def text_entry(change: dict[str, Any]) -> dict[str, Any]:
    """A where / where_document change of fulltext_queries.py as a behaviour entry."""
    before, after = set(change["source"]), set(change["target"])
    entry = _entry(change["collection"], change.get("kind") or _kind_of(change["query"]), change["query"],
                   len(before), len(after), before - after, after - before)
    entry["sample_size"] = change.get("sample_size")
    entry["text"] = change.get("text") or f"{change['collection']}: {change['query']} answers differently"
    return entry


def _kind_of(label: str) -> str:
    return "where_document" if "where_document" in label else "where"


def build_behaviour(results: list[dict[str, Any]], text_found: dict[str, Any], sample: tuple[int, list, list],
                    source_version: str | None, target_version: str | None) -> dict[str, Any]:
    """`report["behaviour"]`: how many queries both sides answered, the changed ones, and notes."""
    sample_compared, sample_changed, sample_notes = sample
    nearest = [nearest_entry(r["collection"], r.get("nearest_changes") or {}, source_version, target_version)
               for r in results]
    # The operator's own queries first, then one line per collection of nearest neighbours, then the
    # queries built from the sample (the longest list): a cut rendering keeps what matters most.
    changed = sample_changed + [entry for entry in nearest if entry]
    changed += [text_entry(change) for change in text_found.get("changes", [])]
    queries = (int(text_found.get("compared") or 0) + sample_compared
               + sum((r.get("nearest_changes") or {}).get("queries", 0) for r in results))
    notes = _search_ef_notes(results) + sample_notes
    return {"queries": queries, "changed": changed, "notes": notes}


def _search_ef_notes(results: list[dict[str, Any]]) -> list[str]:
    """A search ef that changed: nearest-neighbour answers at the collection's default differ in quality."""
    notes = []
    for result in results:
        if not (result.get("records") or {}).get("target_count"):
            continue  # an empty collection answers nothing either way
        index = result.get("index") or {}
        before, after = (index.get(side, {}).get("search_ef") for side in ("source", "target"))
        if before is not None and after is not None and before != after:
            notes.append(f"{result['collection']}: query() searches with ef {after} instead of {before}: "
                         "readers may get other (usually closer) nearest neighbours")
    return notes


def behaviour_strings(behaviour: dict[str, Any]) -> list[str]:
    """The sentences of `report["behaviour_changes"]`, from the same entries."""
    return [entry["text"] for entry in behaviour.get("changed", [])]


def summary_line(behaviour: dict[str, Any] | None) -> str:
    """The section's verdict in one line: how much was measured and whether anything changed."""
    if not behaviour or not behaviour.get("queries"):
        return "not measured (no query was answered by both sides)"
    changed = len(behaviour.get("changed", []))
    return (f"{changed} change(s) among {behaviour['queries']} queries asked of both versions" if changed
            else f"none ({behaviour['queries']} queries asked of both versions answer alike)")


def _entry(collection: str, kind: str, query: str, source_count: int | None, target_count: int | None,
           only_source: set[str], only_target: set[str]) -> dict[str, Any]:
    return {"collection": collection, "kind": kind, "query": query, "source_count": source_count,
            "target_count": target_count, "only_source": sorted(only_source)[:KEPT_IDS],
            "only_target": sorted(only_target)[:KEPT_IDS]}


def _shown(ids: set[str] | list[str]) -> str:
    ordered = sorted(ids)
    more = f" (+{len(ordered) - SHOWN_IDS} more)" if len(ordered) > SHOWN_IDS else ""
    return ", ".join(ordered[:SHOWN_IDS]) + more
