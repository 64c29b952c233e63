"""The reader gate: which declared readers (services pinned to a chromadb version) can read a snapshot.

Opening a database with another version can fail loudly (a panic, a KeyError) or quietly
(no error, but missing or wrong records), so each reader smoke-reads a copy in its own
runtime and its answer is compared with what the native reader, independent of chromadb,
says the database holds: counts, a sample of ids, their content digests, and whether a
query by each sampled record's stored vector finds that record. No shortcut for any
version: the target version itself is smoke-read too.

    report = check_readers(db, {"search-api": "1.3.7", "lambda": "1.0.20"}, work_dir)
    report.breaking()  # ["lambda"]
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile
from chroma_migrate.content_digest import content_digest, metadata_from_json
from chroma_migrate.errors import MigrationError
from chroma_migrate.native import NativeCollection, open_database
from chroma_migrate.native.nearest import nearest_ids
from chroma_migrate.native.stored_records import ARRAY_TABLE
from chroma_migrate.worker_client import run_worker

MAX_PARALLEL_READERS = 2
QUERY_K = 5
# HNSW is approximate: a correct reader may miss a record's own vector now and then, a broken
# one misses most of them (or all: wrong vectors, an empty index).
MIN_OWN_HIT_SHARE = 0.8
LIST_VALUED_SAMPLES = 5  # records with list metadata added to each collection's sample
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_REASON_CHARS = 400


# ---------------------------------------------------------------- the expected side (native)

@dataclass
class ExpectedCollection:
    """What a correct reader must see in one collection, read natively (no chromadb)."""

    name: str
    count: int
    digests: dict[str, str]  # sampled id -> content_digest(document, metadata)
    query_ids: list[str]  # sampled ids the collection's own index finds by their stored vector
    vectors: np.ndarray = field(repr=False)  # the stored vectors of query_ids, in that order


def _evenly_spaced(count: int, size: int) -> set[int]:
    """Positions of `size` ids spread over `count` sorted ids, first and last included."""
    if count <= 0 or size <= 0:
        return set()
    return {int(p) for p in np.linspace(0, count - 1, num=min(size, count))}


def _list_valued_ids(db: Path, collection: NativeCollection) -> set[str]:
    """A few ids holding list-valued metadata: 1.2-1.4 read such a collection without an error but
    silently drop the list keys, so the sample must hold some wherever they exist."""
    segment = collection.facts.metadata_segment
    if not collection.facts.list_metadata_keys or not segment:
        return set()
    with dbfile.open_readonly(db) as conn:
        rows = conn.execute(
            f"SELECT DISTINCT e.embedding_id FROM embeddings e JOIN {ARRAY_TABLE} m ON m.id = e.id "
            "WHERE e.segment_id = ? ORDER BY e.embedding_id LIMIT ?", (segment, LIST_VALUED_SAMPLES))
        return {row[0] for row in rows}


def _sample_ranges(collection: NativeCollection, sample_size: int, must_have: set[str]) -> list[tuple[str, str | None]]:
    """One-id ranges [id, next id) of the evenly spaced ids and of those that must be in the sample.

    The ids are streamed twice (count, then pick) so memory stays bounded by the sample, never
    by the collection."""
    wanted = _evenly_spaced(sum(1 for _ in collection.ids()), sample_size)
    ranges: list[tuple[str, str | None]] = []
    pending: str | None = None
    for position, record_id in enumerate(collection.ids()):
        if pending is not None:
            ranges.append((pending, record_id))
            pending = None
        if position in wanted or record_id in must_have:
            pending = record_id
    if pending is not None:
        ranges.append((pending, None))
    return ranges


def _sampled_records(db: Path, collection: NativeCollection,
                     sample_size: int) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Digest and stored vector of each sampled record, each read as its one-id range."""
    digests, vectors = {}, {}
    for low, high in _sample_ranges(collection, sample_size, _list_valued_ids(db, collection)):
        batch = collection.read_range(low, high)
        record_id = batch.ids[0]
        digests[record_id] = content_digest(batch.documents[0], metadata_from_json(batch.metadatas[0]))
        vectors[record_id] = batch.embeddings[0]
    return digests, vectors


def _findable(collection: NativeCollection, vectors: dict[str, np.ndarray]) -> list[str]:
    """Sampled ids whose own vector the collection's index finds natively: in an ip space (or with
    twins) a record is not always its own nearest neighbour, so only these can prove anything."""
    if not vectors:
        return []
    ids = list(vectors)
    answers = nearest_ids(collection, np.stack([vectors[i] for i in ids]), QUERY_K)
    return [record_id for record_id, found in zip(ids, answers, strict=True) if record_id in found]


def expected_collection(db: Path, collection: NativeCollection, sample_size: int) -> ExpectedCollection:
    """One collection's count, sampled digests and the sampled vectors its own index finds."""
    digests, vectors = _sampled_records(db, collection, sample_size)
    query_ids = _findable(collection, vectors)
    dimension = int(collection.dimension or 0)
    stacked = (np.stack([vectors[i] for i in query_ids]).astype(np.float32) if query_ids
               else np.zeros((0, dimension), np.float32))
    return ExpectedCollection(collection.name, collection.count, digests, query_ids, stacked)


def expected_contents(db: Path, sample_size: int) -> dict[str, ExpectedCollection]:
    """The expected side of every collection of every tenant and database."""
    with open_database(db) as native:
        return {c.name: expected_collection(db, c, sample_size) for c in native.collections()}


# ---------------------------------------------------------------- the verdict (pure)

@dataclass
class CollectionCheck:
    """One collection as one reader saw it, and the problems found (empty: it reads correctly)."""

    name: str
    expected_count: int
    count: int | None = None
    sampled: int = 0
    missing: list[str] = field(default_factory=list)
    content_differs: list[str] = field(default_factory=list)
    queries: int = 0
    own_found: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _first(ids: list[str]) -> str:
    return f" (first: {ids[0]})" if ids else ""


def _query_problem(check: CollectionCheck, hits: Mapping[str, bool], wanted: list[str]) -> str | None:
    check.queries = len(wanted)
    check.own_found = sum(1 for record_id in wanted if hits.get(record_id))
    if not wanted or check.own_found >= MIN_OWN_HIT_SHARE * len(wanted):
        return None
    return (f"a query by its own stored vector returns the record in the top {QUERY_K} for only "
            f"{check.own_found} of {len(wanted)} sampled records")


def check_collection(expected: ExpectedCollection, seen: Mapping[str, Any] | None) -> CollectionCheck:
    """Compare one collection's smoke-read answer with the native expectation."""
    check = CollectionCheck(expected.name, expected.count, sampled=len(expected.digests))
    if seen is None:
        check.problems.append("was not read at all")
        return check
    check.count, check.error = seen.get("count"), seen.get("error")
    returned: Mapping[str, str] = seen.get("returned") or {}
    if check.error:
        check.problems.append(f"fails: {check.error}")
    if check.count is not None and check.count != expected.count:
        check.problems.append(f"count() is {check.count}, the database holds {expected.count}")
    if check.error and not returned:
        return check  # the failing step already explains why nothing else could be checked
    check.missing = [i for i in expected.digests if i not in returned]
    check.content_differs = [i for i, digest in expected.digests.items() if i in returned and returned[i] != digest]
    if check.missing:
        check.problems.append(f"get() returns {len(expected.digests) - len(check.missing)} of "
                              f"{len(expected.digests)} sampled ids{_first(check.missing)}")
    if check.content_differs:
        check.problems.append(f"document or metadata differ for {len(check.content_differs)} of "
                              f"{len(expected.digests)} sampled records{_first(check.content_differs)}")
    if not check.error:
        problem = _query_problem(check, seen.get("own_hits") or {}, expected.query_ids)
        if problem:
            check.problems.append(problem)
    return check


def _listing_problem(expected: Mapping[str, ExpectedCollection], answer: Mapping[str, Any]) -> str | None:
    """A reader listing fewer collections than the file holds sees a different database."""
    if answer.get("list_error"):
        return f"list_collections() fails: {answer['list_error']}"
    listed = answer.get("listed")
    if listed is None:
        return None
    absent = sorted(set(expected) - set(listed))
    if not absent:
        return None
    return f"list_collections() shows {len(set(expected) & set(listed))} of {len(expected)} collections " \
           f"(absent: {', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''})"


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


def judge(expected: Mapping[str, ExpectedCollection],
          answer: Mapping[str, Any]) -> tuple[bool, str, list[CollectionCheck]]:
    """(can_read, reason, per-collection checks) of one smoke_read answer: a pure function, so
    every way of failing is testable without a runtime."""
    if answer.get("open_error"):
        return False, _short(f"cannot open the database: {answer['open_error']}"), []
    seen = answer.get("collections") or {}
    checks = [check_collection(item, seen.get(name)) for name, item in sorted(expected.items())]
    listing = _listing_problem(expected, answer)
    if not listing and all(check.ok for check in checks):
        return True, f"reads all {len(checks)} collections correctly", checks
    return False, _short(_summary(checks, listing)), checks


def _summary(checks: list[CollectionCheck], listing: str | None) -> str:
    """The first problem, naming its collection; one sentence when every collection fails alike."""
    failing = [check for check in checks if check.problems]
    if len(failing) > 1 and len(failing) == len(checks) and len({tuple(c.problems) for c in failing}) == 1:
        return f"every collection ({len(checks)}) {'; '.join(failing[0].problems)}"
    problems = [f"collection {c.name!r} {p}" for c in failing for p in c.problems]
    if listing:
        problems.append(listing)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


# ---------------------------------------------------------------- running the readers

@dataclass
class ReaderRow:
    """One declared reader's verdict."""

    reader: str
    version: str
    can_read: bool
    reason: str
    collections: list[CollectionCheck] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["seconds"] = round(self.seconds, 2)
        for item, check in zip(row["collections"], self.collections, strict=True):
            item["ok"] = check.ok
        return row


@dataclass
class ReaderGateReport:
    """Every declared reader's verdict on one database."""

    db: str
    rows: list[ReaderRow]

    def breaking(self) -> list[str]:
        """The readers that cannot read the database."""
        return [row.reader for row in self.rows if not row.can_read]

    def to_dict(self) -> dict[str, Any]:
        return {"db": self.db, "can_all_read": not self.breaking(), "breaking": self.breaking(),
                "readers": [row.to_dict() for row in self.rows]}

    def _cells(self) -> list[list[str]]:
        return [[row.reader, row.version, "yes" if row.can_read else "NO", row.reason] for row in self.rows]

    def render_text(self) -> str:
        header = ["reader", "version", "can read", "why"]
        lines = [header, *self._cells()]
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(line[:3], widths, strict=True)), line[3]])
                         for line in lines)

    def render_markdown(self) -> str:
        def escape(cell: str) -> str:
            return cell.replace("|", "\\|")
        lines = ["| reader | version | can read | why |", "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(escape(c) for c in cells) + " |" for cells in self._cells()]
        return "\n".join(lines)


def validate_readers(readers: Mapping[str, str]) -> None:
    """Reject a readers mapping the gate cannot act on, before any copy or process."""
    for name, version in readers.items():
        if not isinstance(name, str) or not name.strip():
            raise MigrationError(f"A reader has an empty name (version {version!r}).",
                                 "Give every reader a non-empty name, e.g. readers: {search-api: 1.3.7}.")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise MigrationError(f"Reader {name!r} has version {version!r}, which is not of the form X.Y.Z.",
                                 f"Pin reader {name!r} to an exact chromadb release, e.g. 1.3.7.")


def _write_queries(expected: Mapping[str, ExpectedCollection], scratch: Path) -> dict[str, str]:
    """The query vectors of each collection as a .npy file, written once per gate run."""
    files = {}
    for position, (name, item) in enumerate(sorted(expected.items())):
        files[name] = str(scratch / f"queries-{position:04d}.npy")
        np.save(files[name], item.vectors)
    return files


def _job_args(expected: Mapping[str, ExpectedCollection], copy: Path, queries: Mapping[str, str]) -> dict[str, Any]:
    """The smoke_read arguments (counts and digests travel along for the record; the engine compares)."""
    wanted = {name: {"count": item.count, "ids": list(item.digests), "digests": item.digests,
                     "query_ids": item.query_ids, "queries_file": queries[name], "k": QUERY_K}
              for name, item in expected.items()}
    return {"path": str(copy), "expected": wanted}


def _smoke_read(version: str, db: Path, expected: Mapping[str, ExpectedCollection], queries: Mapping[str, str],
                copy: Path) -> dict[str, Any]:
    """Run smoke_read on a private copy (1.x writes to whatever it opens), then drop the copy."""
    shutil.copytree(db, copy)
    try:
        return run_worker(version, "smoke_read", _job_args(expected, copy, queries)).data
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _check_reader(reader: str, version: str, db: Path, expected: Mapping[str, ExpectedCollection],
                  queries: Mapping[str, str], copy: Path) -> ReaderRow:
    """One reader's row; a worker crash or an unbuildable version is a 'cannot read', never a crash."""
    started = time.perf_counter()
    try:
        answer = _smoke_read(version, db, expected, queries, copy)
    except MigrationError as exc:  # WorkerFailedError, UnsupportedVersionError, a failed runtime build
        return ReaderRow(reader, version, False, _short(exc.problem), [], time.perf_counter() - started)
    can_read, reason, checks = judge(expected, answer)
    return ReaderRow(reader, version, can_read, reason, checks, time.perf_counter() - started)


def check_readers(db: Path, readers: Mapping[str, str], work_dir: Path, *, sample_size: int = 20) -> ReaderGateReport:
    """Smoke-read `db` with every declared reader (name -> chromadb version), at most two at a time."""
    validate_readers(readers)
    db = Path(db)
    expected = expected_contents(db, sample_size)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="reader-gate-", dir=work_dir))
    try:
        queries = _write_queries(expected, scratch)
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_READERS) as pool:
            futures = [pool.submit(_check_reader, reader, version, db, expected, queries, scratch / f"copy-{slot:03d}")
                       for slot, (reader, version) in enumerate(readers.items())]
            rows = [future.result() for future in futures]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ReaderGateReport(str(db), rows)
