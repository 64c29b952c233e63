"""The Parquet exchange format batches travel in between runtimes (see docs/DESIGN.md).

One row per record: `id`, `embedding` (fixed-size list of float32, bit-exact), `document`
and `uri` (nullable), `metadata` (canonical JSON, or null for no metadata). JSON already
keeps int, float, bool, str and lists apart, and Python's float repr round-trips exactly.

Imported by the runtime workers too: stdlib, numpy and pyarrow only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1


# One encoder for every call: json.dumps would build a new one each time, a third of the cost.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_metadata(metadata: dict[str, Any] | None) -> str | None:
    """Sorted keys, no whitespace, exact floats; None (no metadata) stays None."""
    if metadata is None:
        return None
    return _CANONICAL.encode(metadata)


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def schema_for(dimension: int) -> pa.Schema:
    # Arrow has no zero-width fixed-size list: an empty collection of unknown dimension
    # travels as a variable-size list with no rows.
    embedding_type = pa.list_(pa.float32(), dimension) if dimension else pa.list_(pa.float32())
    return pa.schema([
        ("id", pa.string()),
        ("embedding", embedding_type),
        ("document", pa.string()),
        ("uri", pa.string()),
        ("metadata", pa.string()),
        # 16-byte hash of the record's exact content (record_digest), computed where the batch is
        # written so that verification compares hashes first and whole records only where they differ.
        ("digest", pa.binary(16)),
    ], metadata={b"chroma_migrate_exchange": str(FORMAT_VERSION).encode()})


@dataclass
class RecordBatch:
    """Records of one batch, sorted by id; embeddings as one float32 matrix."""

    ids: list[str]
    embeddings: np.ndarray
    documents: list[str | None]
    uris: list[str | None]
    metadatas: list[str | None]  # canonical JSON

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0

    def sorted_by_id(self) -> RecordBatch:
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        return RecordBatch(
            [self.ids[i] for i in order], self.embeddings[order] if len(order) else self.embeddings,
            [self.documents[i] for i in order], [self.uris[i] for i in order],
            [self.metadatas[i] for i in order],
        )


def empty_batch(dimension: int) -> RecordBatch:
    return RecordBatch([], np.zeros((0, dimension), dtype=np.float32), [], [], [])


def pick_query_vectors(batch: RecordBatch, count: int) -> np.ndarray:
    """Evenly spaced records of a batch: recall queries shaped like the data itself."""
    rows = sorted({int(r) for r in np.linspace(0, len(batch) - 1, num=min(count, len(batch)))}) if len(batch) else []
    return batch.embeddings[rows] if rows else batch.embeddings[:0]


def write_batch(batch: RecordBatch, path: Path) -> None:
    dimension = batch.dimension
    flat = pa.array(np.ascontiguousarray(batch.embeddings, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table({
        "id": pa.array(batch.ids, type=pa.string()),
        "embedding": (pa.FixedSizeListArray.from_arrays(flat, dimension) if dimension
                      else pa.array([], type=pa.list_(pa.float32()))),
        "document": pa.array(batch.documents, type=pa.string()),
        "uri": pa.array(batch.uris, type=pa.string()),
        "metadata": pa.array(batch.metadatas, type=pa.string()),
        "digest": pa.array(batch_digests(batch), type=pa.binary(16)),
    }, schema=schema_for(dimension))
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_batch(path: Path) -> RecordBatch:
    table = pq.read_table(path)
    dimension = getattr(table.schema.field("embedding").type, "list_size", 0)
    column = table.column("embedding").combine_chunks()
    values = column.values.to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, np.float32)
    return RecordBatch(
        table.column("id").to_pylist(),
        np.asarray(values, dtype=np.float32).reshape(len(column), dimension),
        table.column("document").to_pylist(),
        table.column("uri").to_pylist(),
        table.column("metadata").to_pylist(),
    )


def read_fingerprints(path: Path) -> tuple[list[str], list[bytes]]:
    """Only ids and digests: what verification needs when two batches agree."""
    table = pq.read_table(path, columns=["id", "digest"])
    return table.column("id").to_pylist(), table.column("digest").to_pylist()


def batch_digests(batch: RecordBatch) -> list[bytes]:
    """record_digest of every record, hashing exactly the same bytes with one hasher call per record."""
    embeddings = np.ascontiguousarray(batch.embeddings, dtype="<f4")
    width = embeddings.shape[1] * 4 if embeddings.ndim == 2 else 0
    raw = memoryview(embeddings.tobytes())
    width_prefix = width.to_bytes(8, "little")
    digests = []
    for i, record_id in enumerate(batch.ids):
        key = record_id.encode()
        document, uri, metadata = (_optional(batch.documents[i]), _optional(batch.uris[i]),
                                   _optional(batch.metadatas[i]))
        digests.append(hashlib.blake2b(b"".join((
            len(key).to_bytes(8, "little"), key, width_prefix, raw[i * width:(i + 1) * width],
            len(document).to_bytes(8, "little"), document, len(uri).to_bytes(8, "little"), uri,
            len(metadata).to_bytes(8, "little"), metadata)), digest_size=16).digest())
    return digests


def record_digest(record_id: str, embedding: np.ndarray, document: str | None, uri: str | None,
                  metadata: str | None) -> bytes:
    """16-byte hash of one record's exact content; fields are length-prefixed so none can bleed."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in (record_id.encode(), np.ascontiguousarray(embedding, dtype="<f4").tobytes(),
                 _optional(document), _optional(uri), _optional(metadata)):
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.digest()


def same_records(a: RecordBatch, b: RecordBatch) -> bool:
    """Field for field equality, at C speed: embeddings as bytes, the rest as lists."""
    if a.ids != b.ids or a.documents != b.documents or a.uris != b.uris or a.metadatas != b.metadatas:
        return False
    left, right = np.ascontiguousarray(a.embeddings, "<f4"), np.ascontiguousarray(b.embeddings, "<f4")
    return left.shape == right.shape and left.tobytes() == right.tobytes()


def _optional(text: str | None) -> bytes:
    return b"\x00" if text is None else b"\x01" + text.encode()
