"""Compare the target's where/where_document answers with a fresh database of the same records.

A sample of each collection (taken from every exchange batch, bounded) is written into a fresh
database of the target's version, and the same queries run on both, restricted to the sampled
ids (worker/text_ops.py). The target answering differently from its own version on the same
records is a problem: the migration broke its full-text index or metadata. Running the sample
in the source's version too tells behaviour changes between the versions, which are notes for
the approver and never a failure.

Measured on fresh databases of each version (same records; 0.x runs on Python's sqlite3,
SQLite 3.40.1 here, so its answers follow that library): 0.x finds no document for `$contains`
of a string under 3 characters but of 3 or more UTF-8 bytes (an emoji, "東", "fé": SQLite's
trigram LIKE), treats `%` and `_` as wildcards, and 0.5/0.6 return every record for
`$not_contains` of such a string; `$not_contains` excludes records without a document in
0.4.24 and includes them from 0.5.23; `$ne`/`$nin` exclude records without the key in 0.4.24
and include them from 0.5.23; `$regex` exists from 1.0. `$contains` is case-sensitive in
every version.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from chroma_migrate import dbfile, exchange
from chroma_migrate.exchange import RecordBatch
from chroma_migrate.worker_client import run_worker

SAMPLE_LIMIT = 200
# Part of the sample kept for records that bring something the evenly spaced ones lack
# (a missing document, an emoji, a metadata key of a new type).
FEATURE_SHARE = 0.2
SHOWN_IDS = 3
ABSENT_TEXT = "§no-such-text§"


@dataclass(frozen=True)
class TextQuery:
    """One get() filter; `key` names it across versions, `label` is what a person reads."""

    key: str
    where: dict[str, Any] | None = None
    where_document: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        parts = []
        if self.where:
            parts.append("where " + json.dumps(self.where, ensure_ascii=False))
        if self.where_document:
            parts.append("where_document " + json.dumps(self.where_document, ensure_ascii=False))
        return " ".join(parts)

    @property
    def kind(self) -> str:
        """Which filter readers pass: a full-text one whenever the query holds one."""
        return "where_document" if self.where_document else "where"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "where": self.where, "where_document": self.where_document}


@dataclass
class TextCheckInput:
    """A collection to check: its label (qualified name), exchange files and collection metadata."""

    label: str
    batch_files: Sequence[Path]
    metadata: dict[str, Any] | None = None
    tenant: str | None = None
    database: str | None = None
    name: str | None = None

    def where_it_lives(self) -> tuple[str, str, str]:
        tenant, database, name = dbfile.split_qualified(self.label)
        return self.tenant or tenant, self.database or database, self.name or name


@dataclass
class TextQueryReport:
    """Problems block a migration; notes (behaviour changes) and skipped queries inform the approver."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # The same findings as data: {collection, key, query, ids only on one side}.
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: TextQueryReport) -> None:
        for name in ("problems", "notes", "skipped", "mismatches", "changes"):
            getattr(self, name).extend(getattr(other, name))
        self.collections.update(other.collections)

    def to_json(self) -> dict[str, Any]:
        return {"problems": self.problems, "notes": self.notes, "skipped": self.skipped,
                "collections": self.collections, "seconds": self.seconds, "mismatches": self.mismatches,
                "changes": self.changes}


# ---------------------------------------------------------------- sampling

def _features(document: str | None, metadata: dict[str, Any] | None, uri: str | None) -> set[str]:
    """What a record brings to the queries: document kinds and metadata key types."""
    found = {"no document"} if document is None else {"document"}
    if document is not None:
        if any(_is_emoji(ch) for ch in document):
            found.add("emoji")
        if any(ord(ch) > 127 for ch in document):
            found.add("non-ascii")
        if "%" in document or "_" in document:
            found.add("wildcard")
    if not metadata:
        found.add("no metadata")
    for key, value in (metadata or {}).items():
        found.add(f"{key}:{type(value).__name__}")
    if uri is not None:
        found.add("uri")
    return found


def _quotas(sizes: list[int], budget: int) -> list[int]:
    """Evenly spaced picks per batch in proportion to its size (largest remainders)."""
    total = sum(sizes)
    if total <= budget:
        return list(sizes)
    exact = [budget * size / total for size in sizes]
    quotas = [int(share) for share in exact]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - quotas[i], reverse=True)
    for i in order[:budget - sum(quotas)]:
        quotas[i] += 1
    return quotas


def sample_records(batch_files: Sequence[Path], limit: int = SAMPLE_LIMIT) -> RecordBatch:
    """At most `limit` records from every batch: first records that bring a feature no earlier one
    has (a missing document, an emoji, a metadata key of a new type), then evenly spaced ones.

    The first pass reads no embeddings; the second holds one batch in memory at a time.
    """
    files = [Path(f) for f in batch_files]
    sizes: list[int] = []
    special: list[set[int]] = []
    covered: set[str] = set()
    reserve = int(limit * FEATURE_SHARE)
    for file in files:
        table = pq.read_table(file, columns=["document", "uri", "metadata"])
        sizes.append(table.num_rows)
        rows: set[int] = set()
        columns = zip(table.column("document").to_pylist(), table.column("metadata").to_pylist(),
                      table.column("uri").to_pylist(), strict=True)
        for row, (document, metadata, uri) in enumerate(columns):
            if reserve <= 0:
                break
            features = _features(document, exchange.parse_metadata(metadata), uri)
            if not features <= covered:
                covered |= features
                rows.add(row)
                reserve -= 1
        special.append(rows)
    chosen = sum(len(rows) for rows in special)
    quotas = _quotas(sizes, max(limit - chosen, 0))
    picked = []
    for file, size, quota, rows in zip(files, sizes, quotas, special, strict=True):
        rows = rows | ({int(r) for r in np.linspace(0, size - 1, num=quota)} if quota else set())
        if rows:
            picked.append(_rows(exchange.read_batch(file), sorted(rows)))
    return _concat(picked)


def _rows(batch: RecordBatch, rows: list[int]) -> RecordBatch:
    return RecordBatch([batch.ids[i] for i in rows], batch.embeddings[rows], [batch.documents[i] for i in rows],
                       [batch.uris[i] for i in rows], [batch.metadatas[i] for i in rows])


def _concat(parts: list[RecordBatch]) -> RecordBatch:
    parts = [p for p in parts if len(p)]
    if not parts:
        return exchange.empty_batch(0)
    joined = RecordBatch([i for p in parts for i in p.ids], np.concatenate([p.embeddings for p in parts]),
                         [d for p in parts for d in p.documents], [u for p in parts for u in p.uris],
                         [m for p in parts for m in p.metadatas])
    return joined.sorted_by_id()


# ---------------------------------------------------------------- queries

def _is_emoji(ch: str) -> bool:
    """Pictographs and the older emoji blocks (dingbats, miscellaneous symbols)."""
    return ord(ch) >= 0x1F000 or 0x2600 <= ord(ch) <= 0x27BF


def _closest_to(counts: dict[str, int], target: float) -> str | None:
    """The candidate whose match count is nearest `target` (ties: the smaller string)."""
    useful = {text: n for text, n in counts.items() if n}
    return min(useful, key=lambda text: (abs(useful[text] - target), text)) if useful else None


def _document_queries(documents: list[str]) -> tuple[list[TextQuery], list[str]]:
    if not documents:
        return [], ["where_document queries: no sampled record has a document"]
    queries, reasons = [], []
    quarter, half = len(documents) / 4, len(documents) / 2

    def count(text: str) -> int:
        return sum(text in doc for doc in documents)

    words = sorted({w for doc in documents for w in doc.split() if len(w) >= 3})[:300]
    word = _closest_to({w: count(w) for w in words}, quarter) or documents[0][:3]
    chars = sorted({ch for doc in documents for ch in doc if ch.isascii() and ch.isalnum()})
    char = _closest_to({ch: count(ch) for ch in chars}, half)
    pairs = sorted({doc[i:i + 2] for doc in documents for i in range(len(doc) - 1) if not doc[i:i + 2].isspace()})
    wide = [p for p in pairs if any(ord(ch) > 127 for ch in p)]
    pair = _closest_to({p: count(p) for p in (wide or pairs)[:300]}, quarter)
    emojis = Counter(ch for doc in documents for ch in doc if _is_emoji(ch))
    emoji = min(emojis, key=lambda ch: (-emojis[ch], ch)) if emojis else None
    absent = ABSENT_TEXT
    while count(absent):
        absent += "§"
    queries.append(TextQuery("contains_word", where_document={"$contains": word}))
    if char:
        queries.append(TextQuery("contains_1_char", where_document={"$contains": char}))
    if pair:
        queries.append(TextQuery("contains_2_chars", where_document={"$contains": pair}))
    if emoji:
        queries.append(TextQuery("contains_emoji", where_document={"$contains": emoji}))
        queries.append(TextQuery("not_contains_emoji", where_document={"$not_contains": emoji}))
    else:
        reasons.append("$contains of an emoji: no sampled document holds one")
    for wildcard in ("%", "_"):
        if count(wildcard):
            queries.append(TextQuery(f"contains_{'percent' if wildcard == '%' else 'underscore'}",
                                     where_document={"$contains": wildcard}))
    queries.append(TextQuery("contains_absent", where_document={"$contains": absent}))
    queries.append(TextQuery("not_contains_word", where_document={"$not_contains": word}))
    other = {"$contains": emoji or pair or char or absent}
    queries.append(TextQuery("and", where_document={"$and": [{"$contains": word}, {"$not_contains": char or absent}]}))
    queries.append(TextQuery("or", where_document={"$or": [{"$contains": word}, other]}))
    if word.isalnum():
        queries.append(TextQuery("regex", where_document={"$regex": f"^{word[:3]}"}))
    return queries, reasons


def _metadata_queries(metadatas: list[dict[str, Any]]) -> tuple[list[TextQuery], list[str]]:
    """One filter per value type present, on the key of that type most records hold."""
    by_type: dict[str, Counter] = {"str": Counter(), "int": Counter(), "float": Counter(), "bool": Counter()}
    for metadata in metadatas:
        for key, value in metadata.items():
            kind = type(value).__name__
            if kind in by_type:
                by_type[kind][key] += 1
    distinct = {key: len({json.dumps(m[key]) for m in metadatas if key in m}) for keys in by_type.values()
                for key in keys}
    # The key most records hold, preferring one with several values (an $in of one value tells little).
    key_of = {kind: min(keys, key=lambda k: (distinct[k] < 2, -keys[k], k)) for kind, keys in by_type.items() if keys}
    values = {kind: [m[key] for m in metadatas if type(m.get(key)).__name__ == kind] for kind, key in key_of.items()}
    queries, reasons = [], []
    if "str" in key_of:
        common = [value for value, _ in Counter(values["str"]).most_common(3)]
        key = key_of["str"]
        queries.append(TextQuery("str_eq", where={key: {"$eq": common[0]}}))
        queries.append(TextQuery("str_ne", where={key: {"$ne": common[0]}}))
        queries.append(TextQuery("str_in", where={key: {"$in": common[:2]}}))
    else:
        reasons.append("str metadata filters: no sampled record has a str value")
    if "int" in key_of:
        ints = sorted(values["int"])
        key = key_of["int"]
        queries.append(TextQuery("int_gt", where={key: {"$gt": ints[len(ints) // 2]}}))
        queries.append(TextQuery("int_nin", where={key: {"$nin": sorted(set(ints))[:2]}}))
    else:
        reasons.append("int metadata filters: no sampled record has an int value")
    if "float" in key_of:
        floats = sorted(set(values["float"]))
        middle = len(floats) // 2
        # Between two stored values, never on one: 1.x may store a float 1 ulp from Python's parse.
        threshold = floats[0] if len(floats) == 1 else (floats[middle - 1] + floats[middle]) / 2
        queries.append(TextQuery("float_lt", where={key_of["float"]: {"$lt": threshold}}))
    else:
        reasons.append("float metadata filters: no sampled record has a float value")
    if "bool" in key_of:
        queries.append(TextQuery("bool_eq", where={key_of["bool"]: {"$eq": True}}))
    else:
        reasons.append("bool metadata filters: no sampled record has a bool value")
    return queries, reasons


def build_queries(sample: RecordBatch) -> tuple[list[TextQuery], list[str]]:
    """Queries shaped by the sampled records, and why some kinds were not built."""
    documents = [doc for doc in sample.documents if doc is not None]
    metadatas = [m for m in (exchange.parse_metadata(text) for text in sample.metadatas) if m]
    queries, reasons = _document_queries(documents)
    where_queries, where_reasons = _metadata_queries(metadatas)
    queries += where_queries
    reasons += where_reasons
    if where_queries and documents:
        # Two broad filters (about half the records each), so that the combination selects some.
        broad = {q.key: q for q in queries}
        where = (broad.get("int_gt") or broad.get("bool_eq") or where_queries[0]).where
        document = (broad.get("contains_1_char") or queries[0]).where_document
        queries.append(TextQuery("where_and_document", where=where, where_document=document))
    return queries, reasons


# ---------------------------------------------------------------- running and comparing

@dataclass
class PreparedJob:
    """A collection's sample on disk and its queries: what the workers of both versions run."""

    check: TextCheckInput
    sample_file: Path
    sample_size: int
    queries: list[TextQuery]
    reasons: list[str]

    def to_job(self) -> dict[str, Any]:
        tenant, database, name = self.check.where_it_lives()
        space = (self.check.metadata or {}).get("hnsw:space")
        return {"label": self.check.label, "collection": name, "tenant": tenant, "database": database,
                "sample_file": str(self.sample_file), "metadata": {"hnsw:space": space} if space else None,
                "queries": [q.to_json() for q in self.queries]}


def prepare_jobs(checks: Sequence[TextCheckInput], scratch: Path, limit: int = SAMPLE_LIMIT) -> list[PreparedJob]:
    """Sample every collection (all its batches) and build its queries; empty ones are left out."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    prepared = []
    for number, check in enumerate(checks):
        sample = sample_records(check.batch_files, limit)
        if not len(sample):
            continue
        queries, reasons = build_queries(sample)
        sample_file = scratch / f"text-sample-{number:04d}.parquet"
        exchange.write_batch(sample, sample_file)
        prepared.append(PreparedJob(check, sample_file, len(sample), queries, reasons))
    return prepared


def _shown(ids: set[str]) -> str:
    ordered = sorted(ids)
    return ", ".join(ordered[:SHOWN_IDS]) + (f" (+{len(ordered) - SHOWN_IDS} more)" if len(ordered) > SHOWN_IDS else "")


def compare_text_answers(prepared: PreparedJob, target_answers: dict[str, Any], target_version: str,
                         source_answers: dict[str, Any] | None = None, source_version: str | None = None,
                         ) -> TextQueryReport:
    """Target against a fresh database of its version (problems), and the source version's fresh
    answers against the target version's (notes). Queries a version rejects are skipped with its error."""
    label, size = prepared.check.label, prepared.sample_size
    report = TextQueryReport()
    report.skipped += [f"{label}: {reason}" for reason in prepared.reasons]
    compared = 0
    by_key = {a["key"]: a for a in target_answers.get("answers", [])}
    unanswered = [q.label for q in prepared.queries if q.key not in by_key or "target" not in by_key[q.key]]
    if unanswered and not target_answers.get("error") and not target_answers.get("target_error"):
        # A query the target was never asked proves nothing: silence must not pass for agreement.
        report.problems.append(f"{label}: the target gave no answer to {len(unanswered)} of "
                               f"{len(prepared.queries)} queries (e.g. {unanswered[0]})")
    source_by_key = {a["key"]: a for a in (source_answers or {}).get("answers", [])}
    for error, version in ((target_answers.get("error"), target_version),
                           ((source_answers or {}).get("error"), source_version)):
        if error:
            report.skipped.append(f"{label}: no fresh {version} database of the sample could be built: {error}")
    if target_answers.get("target_error"):
        report.problems.append(f"{label}: the target cannot answer queries on this collection "
                               f"({target_answers['target_error']})")
    for query in prepared.queries:
        answer = by_key.get(query.key)
        if answer is None:
            continue
        if answer.get("fresh_error"):
            report.skipped.append(f"{label}: {query.label} skipped: chromadb {target_version} rejects it "
                                  f"({answer['fresh_error']})")
            continue
        fresh = set(answer["fresh"])
        if "target" in answer:
            if answer.get("target_error"):
                report.problems.append(f"{label}: {query.label} fails on the target ({answer['target_error']}) "
                                       f"but a fresh {target_version} database of the same records answers it")
            elif set(answer["target"]) != fresh:
                target = set(answer["target"])
                report.mismatches.append({"collection": label, "key": query.key, "query": query.label,
                                          "only_target": sorted(target - fresh), "only_fresh": sorted(fresh - target)})
                report.problems.append(
                    f"{label}: {query.label} selects {len(target)} of {size} sampled records on the target and "
                    f"{len(fresh)} on a fresh {target_version} database of the same records "
                    f"(only on the target: {_shown(target - fresh) or '-'}; "
                    f"only fresh: {_shown(fresh - target) or '-'})")
        source = source_by_key.get(query.key)
        if source is None:
            continue
        if source.get("fresh_error"):
            report.skipped.append(f"{label}: {query.label} not compared with {source_version}: chromadb "
                                  f"{source_version} rejects it ({source['fresh_error']})")
        else:
            compared += 1
            if set(source["fresh"]) == fresh:
                continue
            before = set(source["fresh"])
            note = (f"{label}: {query.label} matches {len(before)} of {size} sampled records in {source_version} "
                    f"and {len(fresh)} in {target_version} (only in {source_version}: "
                    f"{_shown(before - fresh) or '-'}; only in {target_version}: {_shown(fresh - before) or '-'})")
            report.changes.append({"collection": label, "key": query.key, "query": query.label, "kind": query.kind,
                                   "sample_size": size, "source": sorted(before), "target": sorted(fresh),
                                   "text": note})
            report.notes.append(note)
    # `compared`: the queries both versions answered, so a change among them would have been seen.
    report.collections[label] = {"sample_size": size, "queries": len(prepared.queries), "compared": compared,
                                 "asked_of": target_answers.get("asked_of", "target")}
    return report


def check_text_queries(target_db: Path, target_version: str, checks: Sequence[TextCheckInput], scratch: Path, *,
                       source_version: str | None = None, limit: int = SAMPLE_LIMIT) -> TextQueryReport:
    """Sample, run the target version's worker on the target (which chromadb opens, and 1.x writes
    to: pass a database the engine owns) and, in parallel, the source version's on a fresh copy
    of the sample only; then compare. Returns problems, notes, skipped queries and costs."""
    return run_text_jobs(target_db, target_version, prepare_jobs(checks, Path(scratch), limit), scratch,
                         source_version=source_version)


def run_text_jobs(target_db: Path, target_version: str, prepared: Sequence[PreparedJob], scratch: Path, *,
                  source_version: str | None = None) -> TextQueryReport:
    """The workers and the comparison of `check_text_queries`, for jobs prepared beforehand."""
    report = TextQueryReport()
    if not prepared:
        return report
    jobs = [p.to_job() for p in prepared]
    scratch_dir = str(scratch)
    with ThreadPoolExecutor(max_workers=2) as pool:
        target_run = pool.submit(run_worker, target_version, "text_queries",
                                 {"path": str(target_db), "jobs": jobs, "scratch_dir": scratch_dir})
        source_run = (pool.submit(run_worker, source_version, "text_queries",
                                  {"path": None, "jobs": jobs, "scratch_dir": scratch_dir})
                      if source_version and source_version != target_version else None)
        target_result = target_run.result()
        source_result = source_run.result() if source_run else None
    report.seconds[f"worker {target_version}"] = round(target_result.seconds, 3)
    if source_result:
        report.seconds[f"worker {source_version}"] = round(source_result.seconds, 3)
    for item in prepared:
        label = item.check.label
        target_answers = target_result.data["jobs"].get(label, {})
        source_answers = source_result.data["jobs"].get(label) if source_result else None
        part = compare_text_answers(item, target_answers, target_version, source_answers,
                                    source_version if source_result else None)
        report.extend(part)
        report.collections[label] = {**part.collections[label], "seconds": {
            target_version: target_answers.get("seconds"),
            **({source_version: source_answers.get("seconds")} if source_answers else {})}}
    return report
