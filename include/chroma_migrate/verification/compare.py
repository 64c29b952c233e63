"""Record-by-record comparison of two id-sorted batches, with the only tolerances chromadb forces.

Exact equality is the rule. Two differences are chromadb's own doing and are accepted as
equivalent, and counted apart: cosine embeddings go through normalise/denormalise on every
write (a few float32 ulps), and 1.x parses metadata floats with serde_json (at most 1 ulp).

`compare_native_ranges` is one verification process's share: it reads some id ranges of
both sides with the native reader and also keeps the exact nearest neighbours of the
recall queries among the source records it saw (the source's own answers and count come
from verify.py); `merge_shares` folds the shares together.
Its fast path decodes no record: a range whose ids and vector bytes are equal (numpy) and
whose typed metadata rows SQLite finds equal (native/stored_compare.py) is identical; any
other range, or one the write log changes, is compared record by record, which names the
records and fields. The content digest sums one BLAKE2b per such identical range (its ids
and embedding bytes; its rows were proved equal in SQLite) and one per record elsewhere
(id, embedding bytes, document, uri, canonical metadata): both sides use the same ranges,
so the sums stay comparable and independent of the order the ranges are read in.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.exchange import RecordBatch, record_digest
from chroma_migrate.native import NativeCollection, open_database
from chroma_migrate.native.collection import StoredRange
from chroma_migrate.native.stored_compare import StoredRowsComparer
from chroma_migrate.native.stored_records import stored_ids_between
from chroma_migrate.progress import report_progress

DIGEST_MODULUS = 2**128
SAMPLE_LIMIT = 10
# Relative to the largest component: about 8 float32 ulps.
COSINE_RELATIVE_TOLERANCE = 1e-6
METADATA_FLOAT_ULPS = 2


@dataclass
class SideDigest:
    """Order-independent digest: the sum of per-record hashes, so batches can come in any order."""

    count: int = 0
    total: int = 0

    def add(self, digest: bytes) -> None:
        self.count += 1
        self.total = (self.total + int.from_bytes(digest, "big")) % DIGEST_MODULUS

    @property
    def hex(self) -> str:
        return f"{self.total:032x}"


@dataclass
class CollectionComparison:
    source: SideDigest = field(default_factory=SideDigest)
    target: SideDigest = field(default_factory=SideDigest)
    identical: int = 0
    equivalent: int = 0
    equivalent_reasons: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    extra: int = 0
    different: int = 0
    missing_sample: list[str] = field(default_factory=list)
    extra_sample: list[str] = field(default_factory=list)
    different_sample: list[dict[str, Any]] = field(default_factory=list)
    vectors_by_files: int = 0  # identical records whose target vectors were proven by the files (vector_identity)

    def add_identical(self, source_digests: list[bytes], target_digests: list[bytes]) -> None:
        """Records equal on both sides; each side's digests were computed from that side's own batch."""
        for digest in source_digests:
            self.source.add(digest)
        for digest in target_digests:
            self.target.add(digest)
        self.identical += len(source_digests)

    def add_identical_range(self, count: int, source_digest: bytes, target_digest: bytes) -> None:
        """An id range stored identically on both sides, hashed once per side from its own bytes."""
        for side, digest in ((self.source, source_digest), (self.target, target_digest)):
            side.count += count
            side.total = (side.total + int.from_bytes(digest, "big")) % DIGEST_MODULUS
        self.identical += count

    def merge(self, other: CollectionComparison) -> None:
        """Fold in the comparison of other id ranges (another process's share)."""
        for mine, theirs in ((self.source, other.source), (self.target, other.target)):
            mine.count += theirs.count
            mine.total = (mine.total + theirs.total) % DIGEST_MODULUS
        for name in ("identical", "equivalent", "missing", "extra", "different", "vectors_by_files"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.equivalent_reasons.items():
            self.equivalent_reasons[reason] = self.equivalent_reasons.get(reason, 0) + count
        for name in ("missing_sample", "extra_sample", "different_sample"):
            getattr(self, name).extend(getattr(other, name)[:SAMPLE_LIMIT - len(getattr(self, name))])

    @property
    def records_match(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_count": self.source.count, "target_count": self.target.count,
            "source_digest": self.source.hex, "target_digest": self.target.hex,
            "digest_equal": self.source.hex == self.target.hex and self.source.count == self.target.count,
            "identical": self.identical, "equivalent": self.equivalent,
            "equivalent_reasons": self.equivalent_reasons,
            "missing": self.missing, "extra": self.extra, "different": self.different,
            "vectors_by_files": self.vectors_by_files,
            "missing_sample": self.missing_sample, "extra_sample": self.extra_sample,
            "different_sample": self.different_sample,
        }


def _floats_close(a: float, b: float) -> bool:
    if a == b:
        return True
    lo, hi = min(a, b), max(a, b)
    for _ in range(METADATA_FLOAT_ULPS):
        lo = math.nextafter(lo, math.inf)
    return lo >= hi


def _values_equivalent(a: Any, b: Any) -> bool:
    """Same structure and types; floats may differ by METADATA_FLOAT_ULPS."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return _floats_close(a, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_values_equivalent(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_values_equivalent(a[k], b[k]) for k in a)
    return a == b


def _embedding_verdict(a: np.ndarray, b: np.ndarray, space: str) -> str | None:
    """None if identical, a reason if equivalent, "different" otherwise."""
    if a.shape == b.shape and a.tobytes() == b.tobytes():
        return None
    if space == "cosine" and a.shape == b.shape:
        scale = float(np.max(np.abs(a))) or 1.0
        if float(np.max(np.abs(a - b))) <= COSINE_RELATIVE_TOLERANCE * scale:
            return "cosine embedding within float32 rounding of normalise/denormalise"
    return "different"


def compare_record(source: RecordBatch, i: int, target: RecordBatch, j: int, space: str,
                   ) -> tuple[str, list[str]]:
    """("identical" | "equivalent" | "different", reasons or differing field names)."""
    reasons: list[str] = []
    fields: list[str] = []
    verdict = _embedding_verdict(source.embeddings[i], target.embeddings[j], space)
    if verdict == "different":
        fields.append("embedding")
    elif verdict:
        reasons.append(verdict)
    if source.documents[i] != target.documents[j]:
        fields.append("document")
    if source.uris[i] != target.uris[j]:
        fields.append("uri")
    if source.metadatas[i] != target.metadatas[j]:
        left = json.loads(source.metadatas[i]) if source.metadatas[i] else None
        right = json.loads(target.metadatas[j]) if target.metadatas[j] else None
        if _values_equivalent(left, right):
            reasons.append("metadata float within 1 ulp (chromadb 1.x parses floats with serde_json)")
        else:
            fields.append("metadata")
    if fields:
        return "different", fields
    return ("equivalent", reasons) if reasons else ("identical", [])


def _digest(batch: RecordBatch, i: int) -> bytes:
    return record_digest(batch.ids[i], batch.embeddings[i], batch.documents[i], batch.uris[i], batch.metadatas[i])


def compare_batches(source: RecordBatch, target: RecordBatch, space: str, result: CollectionComparison) -> None:
    """Merge-join two id-sorted batches of the same id range into `result`."""
    i = j = 0
    while i < len(source) or j < len(target):
        if j >= len(target) or (i < len(source) and source.ids[i] < target.ids[j]):
            result.source.add(_digest(source, i))
            result.missing += 1
            if len(result.missing_sample) < SAMPLE_LIMIT:
                result.missing_sample.append(source.ids[i])
            i += 1
        elif i >= len(source) or target.ids[j] < source.ids[i]:
            result.target.add(_digest(target, j))
            result.extra += 1
            if len(result.extra_sample) < SAMPLE_LIMIT:
                result.extra_sample.append(target.ids[j])
            j += 1
        else:
            result.source.add(_digest(source, i))
            result.target.add(_digest(target, j))
            verdict, notes = compare_record(source, i, target, j, space)
            if verdict == "identical":
                result.identical += 1
            elif verdict == "equivalent":
                result.equivalent += 1
                for note in notes:
                    result.equivalent_reasons[note] = result.equivalent_reasons.get(note, 0) + 1
            else:
                result.different += 1
                if len(result.different_sample) < SAMPLE_LIMIT:
                    result.different_sample.append({"id": source.ids[i], "fields": notes})
            i += 1
            j += 1


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


Neighbours = list[list[tuple[float, str]]]


def exact_neighbours(space: str, queries: np.ndarray, batches: list[RecordBatch], k: int,
                     best: Neighbours | None = None) -> Neighbours:
    """Running brute-force top-k: feed it one batch at a time."""
    best = best if best is not None else [[] for _ in range(len(queries))]
    for batch in batches:
        _nearest_among(space, queries, batch.ids, batch.embeddings, k, best)
    return best


def _nearest_among(space: str, queries: np.ndarray, ids: list[str], vectors: np.ndarray, k: int,
                   best: Neighbours) -> Neighbours:
    """Fold the k nearest of these vectors into each query's running candidates."""
    if not ids:
        return best
    distances = _distances(space, queries, vectors)
    take = min(k, distances.shape[1])
    nearest = np.argpartition(distances, take - 1, axis=1)[:, :take]
    for row, candidates in enumerate(best):
        candidates.extend((float(distances[row][t]), ids[t]) for t in nearest[row])
        candidates.sort()
        del candidates[k:]
    return best


@dataclass
class RangeShare:
    """Some id ranges of one collection compared, and the exact neighbours among their source records."""

    comparison: CollectionComparison
    best: Neighbours | None
    nearest: list[list[str]] | None = None  # the source's own answers (verify.py asks its index)
    source_count: int | None = None


def compare_pair(source: RecordBatch, target: RecordBatch, space: str, result: CollectionComparison) -> None:
    """Equal batches (the usual case) are hashed once; others are compared record by record."""
    if exchange.same_records(source, target):
        result.add_identical(exchange.batch_digests(source), exchange.batch_digests(target))
    else:
        compare_batches(source, target, space, result)


def range_digest(ids: list[str], vectors: np.ndarray) -> bytes:
    """16-byte BLAKE2b of a range both sides store alike: its ids and embedding bytes, in one call each.
    (Its metadata rows were proved equal inside SQLite and never became Python objects.)"""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(b"\x00".join(record_id.encode() for record_id in ids))
    hasher.update(len(ids).to_bytes(8, "little"))
    hasher.update(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    return hasher.digest()


def _stored_alike(stored: StoredRange, target: NativeCollection, rows: StoredRowsComparer, low: str | None,
                  high: str | None) -> StoredRange | None:
    """The fast path: the target's range when it has the same ids, bit-identical vectors, and SQLite
    finds the same typed metadata rows; None otherwise."""
    other = target.stored_range(low, high)
    alike = (other is not None and other.ids == stored.ids and other.vectors.shape == stored.vectors.shape
             and np.array_equal(other.vectors.view(np.uint32), stored.vectors.view(np.uint32))
             and rows.same_rows(stored.segment, other.segment, low, high))
    return other if alike else None


def _ids_and_rows_alike(stored: StoredRange, target: NativeCollection, rows: StoredRowsComparer, low: str | None,
                        high: str | None) -> bool:
    """The fast path when the vectors are proven equal by their files (vector_identity.py): the target
    stores the same ids in the range, no write-log row changes it there, and SQLite finds the same
    typed metadata rows; its vectors are not read."""
    segment = target.facts.metadata_segment
    if not segment or any((low is None or i >= low) and (high is None or i < high) for i in target.changes.entries):
        return False
    return (stored_ids_between(target._sql, segment, low, high) == stored.ids
            and rows.same_rows(stored.segment, segment, low, high))


def compare_native_ranges(source_db: str, target_db: str, name: str, space: str,
                          ranges: list[tuple[str | None, str | None, str | None]], queries_file: str | None,
                          k: int, pages_alike: bool | None = None, progress_file: str | None = None,
                          vectors_alike: bool = False) -> RangeShare:
    """Read each range (low, high, source exchange file or None) on both sides natively and compare,
    keeping the exact neighbours of the queries among the source records seen. Runs in a
    verification worker process: everything in and out is plain and picklable.
    `pages_alike` passes on what the caller already proved of the two files (StoredRowsComparer);
    `vectors_alike` that the target's vectors are the source's (vector_identity.vectors_proven_alike),
    so the target's are not read: a range then needs the same ids and rows only.
    Each range compared is reported to `progress_file` (progress.py) as its source records.
    """
    result, best = CollectionComparison(), None
    queries = np.load(queries_file) if queries_file else None
    with (open_database(source_db) as source, open_database(target_db) as target,
          StoredRowsComparer(Path(source_db), Path(target_db), pages_alike) as rows):
        source_collection, target_collection = source.collection(name), target.collection(name)
        for low, high, source_file in ranges:
            stored = None if source_file else source_collection.stored_range(low, high)
            if stored is not None and queries is not None:
                best = _nearest_among(space, queries, stored.ids, stored.vectors, k,
                                      best if best is not None else [[] for _ in range(len(queries))])
            if stored is not None and vectors_alike and _ids_and_rows_alike(stored, target_collection, rows, low,
                                                                             high):
                digest = range_digest(stored.ids, stored.vectors)  # the target's bytes are these bytes
                result.add_identical_range(len(stored.ids), digest, digest)
                result.vectors_by_files += len(stored.ids)
                report_progress(progress_file, len(stored.ids))
                continue
            alike = _stored_alike(stored, target_collection, rows, low, high) if stored is not None else None
            if alike is not None:
                result.add_identical_range(len(stored.ids), range_digest(stored.ids, stored.vectors),
                                           range_digest(alike.ids, alike.vectors))
                report_progress(progress_file, len(stored.ids))
                continue
            source_batch = (exchange.read_batch(Path(source_file)) if source_file
                            else source_collection.read_range(low, high))
            if queries is not None and stored is None:
                best = exact_neighbours(space, queries, [source_batch], k, best)
            compare_pair(source_batch, target_collection.read_range(low, high), space, result)
            report_progress(progress_file, len(source_batch))
    return RangeShare(result, best)


def compare_exported_files(source_files: list[Path], target_files: list[Path], space: str,
                           queries: np.ndarray | None, k: int) -> RangeShare:
    """Exports of both sides: ids and hashes first, whole target batches only where they disagree."""
    result, best = CollectionComparison(), None
    for source_file, target_file in zip(source_files, target_files, strict=True):
        source_batch = exchange.read_batch(source_file)
        if queries is not None:
            best = exact_neighbours(space, queries, [source_batch], k, best)
        target_ids, target_digests = exchange.read_fingerprints(target_file)
        source_digests = exchange.batch_digests(source_batch)
        if target_ids == source_batch.ids and target_digests == source_digests:
            result.add_identical(source_digests, target_digests)
        else:
            compare_batches(source_batch, exchange.read_batch(target_file), space, result)
    return RangeShare(result, best)


def merge_shares(shares: list[RangeShare], k: int) -> RangeShare:
    merged = RangeShare(CollectionComparison(), None)
    for share in shares:
        merged.comparison.merge(share.comparison)
        if share.best is not None:
            merged.best = share.best if merged.best is None else [
                sorted(a + b)[:k] for a, b in zip(merged.best, share.best, strict=True)]
        if share.source_count is not None:
            merged.nearest, merged.source_count = share.nearest, share.source_count
    return merged
