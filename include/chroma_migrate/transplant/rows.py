"""The METADATA segment's rows, written straight into a target the target's chromadb created.

What chromadb's own add() leaves in SQLite, per record: one `embeddings` row (the user id,
the METADATA segment, a seq_id), one `embedding_metadata` row per value (the document as
`chroma:document`, the uri as `chroma:uri`, then every metadata key in its typed column:
string, int, float or bool), 1.5's `embedding_metadata_array` rows for list values (one
per element, in order) and a full-text row (rowid = the record's row id) for its document.

Watermarks: SQLite gives the next write `MAX(seq_id) + 1` of `embeddings_queue` (no
AUTOINCREMENT in any version), and 0.x cannot start a segment whose watermark is 0 over an
empty log (it asks `MAX(seq_id)` of the empty table). So before the writer runs, the target's
chromadb adds and deletes one probe record (`worker/transplant_ops.seed_write_log`): the log's
last row is then one chromadb wrote, and every record and watermark is set to its seq_id, so
the first write after the migration is above them all and is applied once, and nothing is
replayed twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from chroma_migrate.exchange import RecordBatch
from chroma_migrate.native.formats import FAMILY_04, FAMILY_RUST

DOCUMENT_KEY = "chroma:document"
URI_KEY = "chroma:uri"
ARRAY_TABLE = "embedding_metadata_array"
FULLTEXT_TABLE = "embedding_fulltext_search"


def encoded_seq_id(family: str, seq_id: int) -> int | bytes:
    """A seq_id as the family stores it: 0.x an 8-byte big-endian BLOB, 1.x an INTEGER."""
    return seq_id if family == FAMILY_RUST else seq_id.to_bytes(8, "big")


def _typed_row(row_id: int, key: str, value: Any) -> tuple[int, str, Any, Any, Any, Any]:
    """(id, key, string_value, int_value, float_value, bool_value) of one scalar value."""
    if isinstance(value, str):
        return row_id, key, value, None, None, None
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return row_id, key, None, None, None, int(value)
    if isinstance(value, int):
        return row_id, key, None, value, None, None
    if isinstance(value, float):
        return row_id, key, None, None, value, None
    raise TypeError(f"metadata key {key!r} holds a {type(value).__name__}, which no chromadb version stores")


class MetadataRows:
    """Appends records to one collection's METADATA segment in a target database (one transaction per batch)."""

    def __init__(self, conn: sqlite3.Connection, segment_id: str, family: str, with_arrays: bool,
                 watermark: int, *, stores_uris: bool = True) -> None:
        self.conn, self.segment_id, self.family, self.with_arrays = conn, segment_id, family, with_arrays
        self.stores_uris = stores_uris
        self.seq_id = encoded_seq_id(family, watermark)
        self.next_row = (conn.execute("SELECT MAX(id) FROM embeddings").fetchone()[0] or 0) + 1
        self.written = 0

    def _rows(self, batch: RecordBatch, first_row: int) -> Iterator[tuple[str, tuple]]:
        for offset, record_id in enumerate(batch.ids):
            row_id = first_row + offset
            yield "embeddings", (row_id, self.segment_id, record_id, self.seq_id)
            document, uri = batch.documents[offset], batch.uris[offset]
            if document is not None:
                yield "embedding_metadata", _typed_row(row_id, DOCUMENT_KEY, document)
                yield FULLTEXT_TABLE, (row_id, document)
            if uri is not None:
                if not self.stores_uris:
                    raise TypeError(f"record {record_id!r} has a uri, which this target version cannot store "
                                    "(URIs arrived in chromadb 0.4.22)")
                yield "embedding_metadata", _typed_row(row_id, URI_KEY, uri)
            text = batch.metadatas[offset]
            for key, value in (json.loads(text) if text else {}).items():
                if isinstance(value, list):
                    if not self.with_arrays:
                        raise TypeError(f"record {record_id!r}: metadata key {key!r} holds a list, which this "
                                        "target version cannot store")
                    for element in value:
                        yield ARRAY_TABLE, _typed_row(row_id, key, element)
                else:
                    yield "embedding_metadata", _typed_row(row_id, key, value)

    def append(self, batch: RecordBatch) -> None:
        """Write one batch of records (sorted by id, as the native reader gives them)."""
        if not len(batch):
            return
        grouped: dict[str, list[tuple]] = {"embeddings": [], "embedding_metadata": [], ARRAY_TABLE: [],
                                           FULLTEXT_TABLE: []}
        for table, row in self._rows(batch, self.next_row):
            grouped[table].append(row)
        with self.conn:
            self.conn.executemany("INSERT INTO embeddings (id, segment_id, embedding_id, seq_id) VALUES (?, ?, ?, ?)",
                                  grouped["embeddings"])
            self.conn.executemany("INSERT INTO embedding_metadata (id, key, string_value, int_value, float_value, "
                                  "bool_value) VALUES (?, ?, ?, ?, ?, ?)", grouped["embedding_metadata"])
            if grouped[ARRAY_TABLE]:
                self.conn.executemany(f"INSERT INTO {ARRAY_TABLE} (id, key, string_value, int_value, float_value, "
                                      "bool_value) VALUES (?, ?, ?, ?, ?, ?)", grouped[ARRAY_TABLE])
            self.conn.executemany(f"INSERT INTO {FULLTEXT_TABLE} (rowid, string_value) VALUES (?, ?)",
                                  grouped[FULLTEXT_TABLE])
        self.next_row += len(batch)
        self.written += len(batch)


def write_log_end(conn: sqlite3.Connection) -> int:
    """The seq_id of the log's last row (the seeded probe's delete)."""
    last = conn.execute("SELECT MAX(seq_id) FROM embeddings_queue").fetchone()[0]
    if not last:
        raise ValueError("the target's write log is empty: its chromadb did not seed it")
    return int(last)


def set_watermarks(conn: sqlite3.Connection, family: str, metadata_segment: str, vector_segment: str | None,
                   watermark: int) -> None:
    """Both segments have applied everything up to `watermark` (0.4 keeps the vector's in its pickle)."""
    segments = [metadata_segment] if family == FAMILY_04 or not vector_segment else [metadata_segment, vector_segment]
    with conn:
        conn.executemany("INSERT OR REPLACE INTO max_seq_id (segment_id, seq_id) VALUES (?, ?)",
                         [(segment, encoded_seq_id(family, watermark)) for segment in segments])


def set_dimension(conn: sqlite3.Connection, collection_id: str, dimension: int | None) -> None:
    """chromadb records a collection's dimension at its first add; the writer adds without chromadb."""
    with conn:
        conn.execute("UPDATE collections SET dimension = ? WHERE id = ?", (dimension, collection_id))
