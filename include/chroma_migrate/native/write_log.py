"""The write log (`embeddings_queue`): rows of one collection above a segment's watermark.

Replay needs the rows in two passes: a cheap one (seq id, operation, id, whether a vector
is there) to decide what each id ends up as, and a fetch by seq id of just the vectors
and metadata a batch needs. Neither holds more than the rows above the watermark.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.sqlite_source import ReadOnlySqlite

ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
OPERATIONS = {ADD: "ADD", UPDATE: "UPDATE", UPSERT: "UPSERT", DELETE: "DELETE"}
ENCODINGS = {"FLOAT32": "<f4", "INT32": "<i4"}


@dataclass(frozen=True)
class LogEntry:
    """One row of the log, without its payload."""

    seq_id: int
    operation: int
    record_id: str
    has_vector: bool
    has_metadata: bool


def decode_watermark(raw: object) -> int:
    """0.5/0.6 store a segment's max seq id as 8 big-endian bytes, 1.x as an INTEGER."""
    if raw is None:
        return 0
    if isinstance(raw, bytes | bytearray | memoryview):
        return int.from_bytes(bytes(raw), "big")
    return int(raw)


def entries_above(sql: ReadOnlySqlite, collection_id: str, watermark: int) -> Iterator[LogEntry]:
    """Rows of this collection with seq_id > watermark, in log order (the seq_id is the row id)."""
    rows = sql.stream(
        "SELECT seq_id, operation, id, vector IS NOT NULL, metadata IS NOT NULL FROM embeddings_queue "
        "WHERE seq_id > ? AND topic LIKE ? ORDER BY seq_id", (watermark, f"%/{collection_id}"))
    for seq_id, operation, record_id, has_vector, has_metadata in rows:
        if type(operation) is not int or operation not in OPERATIONS:
            raise CorruptDatabaseError("bad_log_vector", sql.path, f"write-log row {seq_id} has unknown "
                                                                   f"operation {operation!r:.40}")
        if not isinstance(record_id, str):
            raise CorruptDatabaseError("bad_log_vector", sql.path, f"write-log row {seq_id} has the id "
                                                                   f"{record_id!r:.40}, not a text id")
        yield LogEntry(seq_id, operation, record_id, bool(has_vector), bool(has_metadata))


def last_vectors_at_or_below(sql: ReadOnlySqlite, collection_id: str, watermark: int, ids: list[str],
                             ) -> dict[str, int]:
    """For each id, the seq id of the row that last set its vector at or below the watermark (none if a
    later row deleted it): where a vector the index should hold, but lost, can still be found."""
    last: dict[str, int | None] = {}
    for seq_id, operation, record_id, has_vector in sql.rows_for_keys(
            "SELECT seq_id, operation, id, vector IS NOT NULL FROM embeddings_queue "
            "WHERE seq_id <= ? AND topic LIKE ? AND id IN ({keys}) ORDER BY seq_id", ids,
            [watermark, f"%/{collection_id}"]):
        if operation == DELETE:
            last[record_id] = None
        elif has_vector:
            last[record_id] = seq_id
    return {record_id: seq_id for record_id, seq_id in last.items() if seq_id is not None}


def fetch_vectors(sql: ReadOnlySqlite, seq_ids: list[int], dimension: int) -> dict[int, np.ndarray]:
    """The float32 vectors of these log rows, decoded as chromadb decodes them."""
    vectors = {}
    for seq_id, blob, encoding in sql.rows_for_keys(
            "SELECT seq_id, vector, encoding FROM embeddings_queue WHERE seq_id IN ({keys})", seq_ids):
        dtype = ENCODINGS.get(encoding or "FLOAT32") if isinstance(encoding, str | None) else None
        if dtype is None or not isinstance(blob, bytes) or len(blob) != 4 * dimension:
            what = f"{len(blob)} bytes" if isinstance(blob, bytes) else f"a {type(blob).__name__}, not a BLOB"
            raise CorruptDatabaseError(
                "bad_log_vector", sql.path,
                f"write-log row {seq_id} holds a {encoding!r:.20} vector of {what}; the collection "
                f"has {dimension} dimensions")
        vectors[seq_id] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    return vectors


def fetch_metadata(sql: ReadOnlySqlite, seq_ids: list[int]) -> dict[int, str | None]:
    return dict(sql.rows_for_keys("SELECT seq_id, metadata FROM embeddings_queue WHERE seq_id IN ({keys})", seq_ids))
