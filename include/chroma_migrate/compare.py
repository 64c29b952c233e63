"""Record-by-record comparison of two id-sorted batches, with the only tolerances chromadb forces.

Exact equality is the rule. Two differences are chromadb's own doing and are accepted as
equivalent, and counted apart: cosine embeddings go through normalise/denormalise on every
write (a few float32 ulps), and 1.x parses metadata floats with serde_json (at most 1 ulp).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chroma_migrate.exchange import RecordBatch, record_digest

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
