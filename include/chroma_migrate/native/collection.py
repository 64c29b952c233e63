"""One collection read natively: its facts, its final id set, and its records in id-range batches.

Batches are id ranges, `low <= id < high`, over the ids as they stand after the write log
is applied: the same ranges the engine plans from the METADATA segment and that
verification compares on both sides. Each batch reads its records with one range query,
then fetches its vectors by hnsw label (or log row), so memory follows the batch size,
never the collection size. Labels are not contiguous in id order, so a batch's vector
reads are scattered; adjacent elements are still read together.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile
from chroma_migrate.exchange import RecordBatch, empty_batch, pick_query_vectors
from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.formats import DatabaseFormat
from chroma_migrate.native.id_map import PICKLE_FILE
from chroma_migrate.native.replay import RecordChanges, apply_record_changes, plan_record_changes
from chroma_migrate.native.sqlite_source import ReadOnlySqlite
from chroma_migrate.native.stored_records import (
    ARRAY_TABLE,
    ids_in_table,
    stored_count,
    stored_ids,
    stored_ids_between,
    stored_records,
)
from chroma_migrate.native.values import log_metadata_parser, split_record
from chroma_migrate.native.vector_segment import (
    VectorSegment,
    VectorSegmentSpec,
    batch_size_of,
    check_segment_files,
    index_ahead,
)
from chroma_migrate.native.write_log import entries_above, fetch_metadata


@dataclass
class NativeCollectionInfo:
    """What inspect reports about a collection (the engine's `inspection.CollectionInfo`).

    `name` is the qualified name (`tenant/database/name` outside the default tenant and
    database); `collection_name` is what chromadb calls it inside its database.
    """

    name: str
    id: str
    records: int
    dimension: int | None
    index: dict[str, Any]
    metadata: dict[str, Any] | None
    configuration: dict[str, Any] | None
    list_metadata_keys: dict[str, int] = field(default_factory=dict)
    tenant: str = dbfile.DEFAULT_TENANT
    database: str = dbfile.DEFAULT_DATABASE
    collection_name: str = ""
    embedding_function: dict[str, Any] | None = None
    spann: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredRange:
    """One id range as stored, for verification's fast path: the METADATA segment holding its rows,
    its ids and their vectors as get() returns them."""

    segment: str
    ids: list[str]
    vectors: np.ndarray


def _in_range(record_id: str, low: str | None, high: str | None) -> bool:
    return (low is None or record_id >= low) and (high is None or record_id < high)


class NativeCollection:
    def __init__(self, sql: ReadOnlySqlite, db_path: Path, fmt: DatabaseFormat, facts: dbfile.CollectionFacts,
                 watermarks: dict[str, int], segment_metadata: dict[str, dict[str, Any]]) -> None:
        self._sql, self._db_path, self._format, self.facts = sql, Path(db_path), fmt, facts
        self._watermarks, self._segment_metadata = watermarks, segment_metadata
        self.name, self.id = facts.name, facts.id
        self.dimension = facts.dimension
        self.metadata = facts.metadata
        self.index = dbfile.index_settings(facts, trust_config=fmt.is_rust_core)
        self.space = str(self.index.get("space", "l2"))
        self._parse_log_metadata = log_metadata_parser(fmt.is_rust_core)
        self._with_arrays = ARRAY_TABLE in sql.tables()

    @cached_property
    def changes(self) -> RecordChanges:
        """Log rows the METADATA segment has not applied yet (none, in every healthy database seen)."""
        segment = self.facts.metadata_segment
        if not segment:
            return RecordChanges({}, set(), {})
        entries = entries_above(self._sql, self.id, self._watermarks.get(segment, 0))
        return plan_record_changes(entries, lambda ids: ids_in_table(self._sql, segment, ids))

    def _vector_spec(self) -> VectorSegmentSpec:
        segment = self.facts.vector_segment or ""
        return VectorSegmentSpec(
            self.name, self.id, segment, int(self.dimension or 0), self.space, self._watermarks.get(segment),
            batch_size_of(self._segment_metadata.get(segment), self.metadata))

    @cached_property
    def vectors(self) -> VectorSegment:
        return VectorSegment(self._sql, self._db_path, self._format, self._vector_spec())

    def check_segment_files(self) -> None:
        """The cheap file checks (folder, pickle, header, sizes) without reading any element."""
        spec = self._vector_spec()
        if spec.segment_id:
            check_segment_files(self._db_path / spec.segment_id, spec)

    @property
    def count(self) -> int:
        stored = stored_count(self._sql, self.facts.metadata_segment) if self.facts.metadata_segment else 0
        return stored + len(self.changes.added()) - len(self.changes.deleted())

    @property
    def info(self) -> NativeCollectionInfo:
        return NativeCollectionInfo(
            name=self.name, id=self.id, records=self.count, dimension=self.dimension, index=self.index,
            metadata=self.metadata, configuration=self.facts.config_json if self._format.is_rust_core else None,
            list_metadata_keys=self.facts.list_metadata_keys, tenant=self.facts.tenant, database=self.facts.database,
            collection_name=self.facts.bare_name or self.name,
            embedding_function=dbfile.embedding_function_of(self.facts) if self._format.is_rust_core else None,
            spann=dbfile.spann_of(self.facts) if self._format.is_rust_core else None,
            schema=self.facts.schema_json)

    def ids(self) -> Iterator[str]:
        """Every id after the log is applied, in order, streamed."""
        deleted = set(self.changes.deleted())
        stored = stored_ids(self._sql, self.facts.metadata_segment) if self.facts.metadata_segment else iter(())
        yield from heapq.merge((i for i in stored if i not in deleted), self.changes.added())

    def boundaries(self, batch_size: int) -> list[str]:
        """Every batch_size-th id: the lower bounds of batches 2..n."""
        return [record_id for position, record_id in enumerate(self.ids()) if position and not position % batch_size]

    def read_range(self, low: str | None, high: str | None) -> RecordBatch:
        """Records with low <= id < high, sorted by id, exactly as the writing version's get() returns them."""
        dimension = int(self.dimension or 0)
        if not self.facts.metadata_segment:
            return empty_batch(dimension)
        records = stored_records(self._sql, self.facts.metadata_segment, low, high, self._with_arrays)
        self._apply_log(records, low, high)
        if not records:
            return empty_batch(dimension)
        ids = sorted(records)
        vectors = self.vectors.vectors_for(ids)
        documents, uris, metadatas = [], [], []
        for record_id in ids:
            document, uri, metadata = split_record(records[record_id])
            documents.append(document)
            uris.append(uri)
            metadatas.append(metadata)
        return RecordBatch(ids, vectors, documents, uris, metadatas)

    def stored_range(self, low: str | None, high: str | None) -> StoredRange | None:
        """The range's stored ids and their vectors, without decoding any metadata; None where the
        write log changes the range (only `read_range` applies it) or there is no METADATA segment."""
        segment = self.facts.metadata_segment
        if not segment or any(_in_range(i, low, high) for i in self.changes.entries):
            return None
        ids = stored_ids_between(self._sql, segment, low, high)
        vectors = (np.ascontiguousarray(self.vectors.vectors_for(ids), dtype="<f4") if ids
                   else np.zeros((0, int(self.dimension or 0)), dtype=np.float32))
        return StoredRange(segment, ids, vectors)

    def sample_vectors(self, low: str | None, high: str | None, count: int) -> np.ndarray:
        """Vectors of `count` evenly spaced records of the range, exactly as get() returns them;
        only those records' vectors are read (unless the write log changes the range)."""
        segment = self.facts.metadata_segment
        if not segment or count <= 0:
            return np.zeros((0, int(self.dimension or 0)), dtype=np.float32)
        if any(_in_range(i, low, high) for i in self.changes.entries):
            return pick_query_vectors(self.read_range(low, high), count)
        ids = stored_ids_between(self._sql, segment, low, high)
        if not ids:
            return np.zeros((0, int(self.dimension or 0)), dtype=np.float32)
        rows = sorted({int(r) for r in np.linspace(0, len(ids) - 1, num=min(count, len(ids)))})
        return np.ascontiguousarray(self.vectors.vectors_for([ids[r] for r in rows]), dtype=np.float32)

    def _apply_log(self, records: dict[str, dict[str, Any]], low: str | None, high: str | None) -> None:
        touched = [i for i in self.changes.entries if _in_range(i, low, high)]
        if not touched:
            return
        seq_ids = [e.seq_id for i in touched for e in self.changes.entries[i] if e.has_metadata]
        payloads = {}
        for seq_id, text in fetch_metadata(self._sql, seq_ids).items():
            try:
                payloads[seq_id] = self._parse_log_metadata(text)
            except (ValueError, TypeError, RecursionError) as exc:
                raise CorruptDatabaseError("bad_log_metadata", self._sql.path,
                                           f"write-log row {seq_id} holds metadata that is not JSON ({exc})") from exc
            if payloads[seq_id] is not None and not isinstance(payloads[seq_id], dict):
                raise CorruptDatabaseError("bad_log_metadata", self._sql.path,
                                           f"write-log row {seq_id} holds {type(payloads[seq_id]).__name__} metadata, "
                                           "not a JSON object")
        for record_id in touched:
            values = apply_record_changes(records.get(record_id), self.changes.entries[record_id], payloads)
            if values is None:
                records.pop(record_id, None)
            else:
                records[record_id] = values

    def iter_batches(self, batch_size: int) -> Iterator[RecordBatch]:
        """The whole collection in batches of about batch_size records, in id order."""
        bounds: list[str | None] = [None, *self.boundaries(batch_size), None]
        for low, high in itertools.pairwise(bounds):
            yield self.read_range(low, high)

    def check(self) -> int:
        """Open everything and prove every record has a vector, without reading the vectors. Returns the count."""
        count, missing = 0, []
        sources = self.vectors.sources
        from_index = {i for i in sources.persisted if sources.label_of(i) is not None}
        for record_id in self.ids():
            count += 1
            from_index.discard(record_id)
            if not self.vectors.has(record_id):
                missing.append(record_id)
        if from_index:  # the index serves ids the database has never heard of: it was written after it
            ghosts = sorted(from_index)
            raise index_ahead(self.vectors.folder / PICKLE_FILE, self.name,
                              f"maps {len(ghosts)} ids that chroma.sqlite3 does not hold, not even as deletes in "
                              f"its write log (ids {', '.join(repr(i) for i in ghosts[:3])})")
        still = self.vectors.recover(missing) if missing else []
        if still:
            self.vectors.vectors_for(still)  # raises vector_missing with the file and the ids
        return count

    @property
    def recovered(self) -> int:
        """Records whose vector the index lost and the log still had (only known once they were read)."""
        return len(self.vectors.recovered) if "vectors" in self.__dict__ else 0
