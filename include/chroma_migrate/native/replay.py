"""Write-log replay: what each id ends up as once a version has applied the log above a watermark.

Vectors (the VECTOR segment) follow the writing version's own rules, because they decide
not only which vector wins but in which form get() hands it back:
- 1.x applies every row to the index, so a log vector comes back after the cosine
  normalise/denormalise round trip.
- 0.x collects rows in a batch and applies it to the index once it is full; what is still
  in the last, unfilled batch is served raw from its brute-force buffer. 0.4 counts a
  batch in distinct changed ids, 0.5/0.6 in log rows. One deliberate difference: an ADD
  of an id deleted earlier in the same batch is applied, as 0.5+ does. 0.4.24 drops it
  (chroma-core/chroma#1987) and then cannot return the record at all; reading the log's
  vector is the only way to get such a record out.

Records (the METADATA segment) follow the same rules for every version: ADD only if the id
is absent, UPSERT always, UPDATE only if present, DELETE; metadata of an UPDATE or of an
UPSERT of an existing id merges into the existing keys, a null value deleting its key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chroma_migrate.native.formats import FAMILY_04, FAMILY_RUST
from chroma_migrate.native.write_log import ADD, DELETE, UPDATE, UPSERT, LogEntry


@dataclass
class VectorSources:
    """Where get() takes each id's vector from: the persisted index, or a log row (raw or round-tripped)."""

    persisted: Mapping[str, int]  # id -> hnsw label, as index_metadata.pickle has it
    from_log: dict[str, tuple[int, bool]] = field(default_factory=dict)  # id -> (seq_id, served raw)
    removed: set[str] = field(default_factory=set)  # persisted ids the log deleted

    def has(self, record_id: str) -> bool:
        return record_id in self.from_log or (record_id in self.persisted and record_id not in self.removed)

    def label_of(self, record_id: str) -> int | None:
        if record_id in self.from_log or record_id in self.removed:
            return None
        return self.persisted.get(record_id)

    def remove(self, record_id: str) -> None:
        self.from_log.pop(record_id, None)
        if record_id in self.persisted:
            self.removed.add(record_id)

    def set(self, record_id: str, seq_id: int, raw: bool) -> None:
        self.from_log[record_id] = (seq_id, raw)

    def ids(self) -> Iterable[str]:
        yield from (i for i in self.persisted if i not in self.removed and i not in self.from_log)
        yield from self.from_log


class _PendingBatch:
    """chromadb 0.x's Batch, reduced to what decides its length and its written and deleted ids."""

    def __init__(self) -> None:
        self.written: dict[str, int] = {}  # id -> seq_id of the row that wrote it last
        self.deleted: set[str] = set()
        self.last_operation: dict[str, int] = {}
        self.upsert_adds: set[str] = set()

    def __len__(self) -> int:
        return len(self.written) + len(self.deleted)

    def apply(self, entry: LogEntry, exists_already: bool) -> None:
        record_id = entry.record_id
        if entry.operation == DELETE:
            if record_id in self.written:
                del self.written[record_id]
                previous = self.last_operation.pop(record_id)
                if previous == UPDATE or (previous == UPSERT and record_id not in self.upsert_adds):
                    self.deleted.add(record_id)
                self.upsert_adds.discard(record_id)
            else:
                self.deleted.add(record_id)
            return
        self.written[record_id] = entry.seq_id
        self.last_operation[record_id] = entry.operation
        self.deleted.discard(record_id)
        if entry.operation == UPSERT and not exists_already:
            self.upsert_adds.add(record_id)


def replay_vectors(entries: Iterable[LogEntry], persisted: Mapping[str, int], family: str, batch_size: int,
                   ) -> VectorSources:
    """Apply the log rows above the vector watermark to the persisted id map, the writing version's way."""
    sources = VectorSources(persisted)
    if family == FAMILY_RUST:
        for entry in entries:
            exists = sources.has(entry.record_id)
            if entry.operation == DELETE:
                sources.remove(entry.record_id)
            elif entry.has_vector and (entry.operation == UPSERT or (entry.operation == ADD and not exists)
                                       or (entry.operation == UPDATE and exists)):
                sources.set(entry.record_id, entry.seq_id, raw=False)
        return sources
    _replay_0x(entries, sources, family, batch_size)
    return sources


def _replay_0x(entries: Iterable[LogEntry], sources: VectorSources, family: str, batch_size: int) -> None:
    counts_rows = family != FAMILY_04
    initialized = len(sources.persisted) > 0  # 0.x loads the index only when the pickle maps some id
    batch, buffered, rows_in_batch = _PendingBatch(), set(), 0
    for entry in entries:
        rows_in_batch += 1
        initialized = initialized or entry.has_vector  # the first vector creates the index
        if not initialized:
            continue
        record_id, operation = entry.record_id, entry.operation
        in_buffer = record_id in buffered
        exists = in_buffer or sources.has(record_id)
        if operation == DELETE:
            if exists:
                batch.apply(entry, False)
                buffered.discard(record_id)
        elif entry.has_vector and (
                (operation == UPDATE and exists) or operation == UPSERT
                or (operation == ADD and (not exists or record_id in batch.deleted))):
            batch.apply(entry, exists)
            buffered.add(record_id)
        full = rows_in_batch >= batch_size if counts_rows else len(batch) >= batch_size
        if full:
            for record_id in batch.deleted:
                if sources.has(record_id):
                    sources.remove(record_id)
            for record_id, seq_id in batch.written.items():
                sources.set(record_id, seq_id, raw=False)
            batch, buffered, rows_in_batch = _PendingBatch(), set(), 0
    # get() serves the unapplied batch from the brute-force buffer: raw vectors, and its deletes hidden.
    for record_id, seq_id in batch.written.items():
        sources.set(record_id, seq_id, raw=True)
    for record_id in batch.deleted:
        sources.remove(record_id)


@dataclass
class RecordChanges:
    """Log rows above the metadata watermark, per id, and whether each id exists once they are applied."""

    entries: dict[str, list[LogEntry]]
    in_table: set[str]
    exists_after: dict[str, bool]

    def added(self) -> list[str]:
        return sorted(i for i, exists in self.exists_after.items() if exists and i not in self.in_table)

    def deleted(self) -> list[str]:
        return sorted(i for i, exists in self.exists_after.items() if not exists and i in self.in_table)


def plan_record_changes(entries: Iterable[LogEntry], in_table: Callable[[list[str]], set[str]]) -> RecordChanges:
    by_id: dict[str, list[LogEntry]] = {}
    for entry in entries:
        by_id.setdefault(entry.record_id, []).append(entry)
    stored = in_table(list(by_id)) if by_id else set()
    exists_after = {}
    for record_id, rows in by_id.items():
        exists = record_id in stored
        for entry in rows:
            if entry.operation == DELETE:
                exists = False
            elif entry.operation in (ADD, UPSERT):
                exists = True
        exists_after[record_id] = exists
    return RecordChanges(by_id, stored, exists_after)


def apply_record_changes(values: dict[str, Any] | None, rows: list[LogEntry],
                         payloads: Mapping[int, dict[str, Any] | None]) -> dict[str, Any] | None:
    """One id's stored values (None: absent) after its log rows; payloads are the rows' parsed metadata."""
    for entry in rows:
        payload = payloads.get(entry.seq_id) or {}
        if entry.operation == DELETE:
            values = None
        elif values is None and entry.operation in (ADD, UPSERT):
            values = {key: value for key, value in payload.items() if value is not None}
        elif values is not None and entry.operation in (UPDATE, UPSERT):
            for key, value in payload.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
    return values
