"""One collection's VECTOR segment: persisted index plus write-log replay, checked while it opens.

Opening costs one pass over `data_level0.bin` for labels and deleted marks, the id map
from the pickle, and the cheap columns of the log rows above the watermark: all O(ids),
no vectors. Vectors are read per batch by `vectors_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.formats import FAMILY_04, FAMILY_RUST, DatabaseFormat
from chroma_migrate.native.hnsw_files import HnswFiles, check_sizes, normalise_round_trip, read_header
from chroma_migrate.native.id_map import PICKLE_FILE, IdMap, load_id_map
from chroma_migrate.native.replay import VectorSources, replay_vectors
from chroma_migrate.native.sqlite_source import ReadOnlySqlite
from chroma_migrate.native.write_log import entries_above, fetch_vectors, last_vectors_at_or_below

DEFAULT_0X_BATCH_SIZE = 100  # hnsw:batch_size when the segment never set it
SAMPLE = 3


@dataclass(frozen=True)
class VectorSegmentSpec:
    collection: str
    collection_id: str
    segment_id: str
    dimension: int
    space: str
    watermark: int | None  # max_seq_id row of the segment; None when it has none
    batch_size: int


def _sample(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids[:SAMPLE]) + (" ..." if len(ids) > SAMPLE else "")


class VectorSegment:
    """Every vector of one collection as get() would return it, fetched by id."""

    def __init__(self, sql: ReadOnlySqlite, db_path: Path, fmt: DatabaseFormat, spec: VectorSegmentSpec) -> None:
        self.sql, self.spec = sql, spec
        self.folder = Path(db_path) / spec.segment_id
        self.files: HnswFiles | None = None
        id_map = self._open_index()
        self.id_map = id_map
        self.watermark = spec.watermark if spec.watermark is not None else (id_map.legacy_max_seq_id or 0)
        self._refuse_index_ahead(id_map, fmt)
        self.recovered: set[str] = set()
        self.sources: VectorSources = replay_vectors(
            entries_above(sql, spec.collection_id, self.watermark), id_map.id_to_label, fmt.family,
            0 if fmt.family == FAMILY_RUST else spec.batch_size)

    def _open_index(self) -> IdMap:
        pickle_path = self.folder / PICKLE_FILE
        if not check_segment_files(self.folder, self.spec):
            return IdMap({}, 0, None, None)
        id_map = load_id_map(pickle_path, read_header(self.folder).element_count)
        if id_map.dimensionality and id_map.dimensionality != self.spec.dimension:
            raise CorruptDatabaseError("bad_header", pickle_path, f"describes {id_map.dimensionality}-dimensional "
                                                                  f"vectors, the collection has {self.spec.dimension}")
        self.files = HnswFiles(self.folder, self.spec.dimension, self.spec.space)
        self._check_labels(id_map)
        return id_map

    def _refuse_index_ahead(self, id_map: IdMap, fmt: DatabaseFormat) -> None:
        """0.x records in the pickle which log row the index has taken in: one the log does not know (0.4, whose
        log is never purged) or one above the segment's watermark (0.5/0.6) means the index files were written
        after this chroma.sqlite3: a copy taken while chromadb was flushing (1.x: `NativeCollection.check`)."""
        if self.files is None:
            return
        newest = id_map.newest_seq_id
        if fmt.family == FAMILY_04 and id_map.legacy_max_seq_id is not None:
            top = self.sql.rows("SELECT MAX(seq_id) FROM embeddings_queue")[0][0] or 0
            if id_map.legacy_max_seq_id > top:
                raise index_ahead(self.folder / PICKLE_FILE, self.spec.collection,
                                  f"says the index holds the write log up to row {id_map.legacy_max_seq_id}, "
                                  f"but the log of chroma.sqlite3 ends at row {top}")
        elif fmt.family != FAMILY_RUST and newest is not None and self.spec.watermark is not None \
                and newest > self.spec.watermark:
            raise index_ahead(self.folder / PICKLE_FILE, self.spec.collection,
                              f"maps ids written by write-log row {newest}, but chroma.sqlite3 says this index "
                              f"holds the log only up to row {self.spec.watermark}")

    def _check_labels(self, id_map: IdMap) -> None:
        assert self.files is not None
        mapped = np.fromiter(id_map.id_to_label.values(), dtype=np.uint64, count=len(id_map.id_to_label))
        live = self.files.live_labels()
        absent = np.setdiff1d(mapped, live, assume_unique=True)
        if len(absent):
            by_label = {label: record_id for record_id, label in id_map.id_to_label.items()}
            ids = [by_label[int(label)] for label in absent[:SAMPLE]]
            raise CorruptDatabaseError(
                "label_not_in_index", self.folder / "data_level0.bin",
                f"(collection {self.spec.collection!r}) has no live element for {len(absent)} labels that "
                "index_metadata.pickle maps "
                f"(ids {_sample(ids)}): the index files and the pickle are from different flushes")
        orphans = np.setdiff1d(live, mapped, assume_unique=True)
        if len(orphans):
            raise CorruptDatabaseError(
                "label_not_in_pickle", self.folder / PICKLE_FILE,
                f"(collection {self.spec.collection!r}) does not map {len(orphans)} labels that data_level0.bin holds "
                "as live elements (labels "
                f"{', '.join(str(int(x)) for x in orphans[:SAMPLE])}): the index files and the pickle are from "
                "different flushes")

    def has(self, record_id: str) -> bool:
        return self.sources.has(record_id)

    def recover(self, ids: list[str]) -> list[str]:
        """Find vectors for records the index lost in the log below the watermark; the ids still without one.

        chromadb 0.4.24 drops an ADD of an id deleted earlier in the same batch
        (chroma-core/chroma#1987): the record stays in the METADATA segment, its vector in
        the log only, and no version's get() returns it again. 0.4 never purges its log, so
        the vector is still there; it would have gone through the index like its batch.
        """
        found = last_vectors_at_or_below(self.sql, self.spec.collection_id, self.watermark, ids) if ids else {}
        for record_id, seq_id in found.items():
            self.sources.set(record_id, seq_id, raw=False)
            self.recovered.add(record_id)
        return [record_id for record_id in ids if record_id not in found]

    def vectors_for(self, ids: list[str]) -> np.ndarray:
        """float32 (len(ids), dim), bit-exact with the writing version's get()."""
        dim = self.spec.dimension
        out = np.empty((len(ids), dim), dtype=np.float32)
        index_rows, labels, log_rows, seq_ids, raw = [], [], [], [], []
        missing = []
        unsorted = ids  # the ids whose source (index, log or neither) is still to be found
        if not self.sources.from_log and not self.sources.removed:  # the usual, compacted segment: one lookup each
            persisted = self.sources.persisted
            labels = [persisted.get(record_id) for record_id in ids]
            if None not in labels:
                index_rows, unsorted = list(range(len(ids))), []
            else:
                labels = []
        for row, record_id in enumerate(unsorted):
            logged = self.sources.from_log.get(record_id)
            if logged is not None:
                log_rows.append(row)
                seq_ids.append(logged[0])
                raw.append(logged[1])
                continue
            label = self.sources.label_of(record_id)
            if label is None:
                missing.append(record_id)
            else:
                index_rows.append(row)
                labels.append(label)
        if missing:
            still = self.recover(missing)
            if not still:
                return self.vectors_for(ids)
            raise CorruptDatabaseError(
                "vector_missing", self.folder,
                f"holds no vector for {len(still)} records of collection {self.spec.collection!r} "
                f"(ids {_sample(still)}), and neither does the write log: the records exist only as metadata "
                "(or the index files are older than chroma.sqlite3: a copy taken while chromadb was flushing)",
                "Restore the database from a backup; re-adding those records with their vectors also repairs it.")
        if index_rows:
            assert self.files is not None
            positions = self.files.positions_of(np.asarray(labels, dtype=np.uint64))
            out[index_rows] = self.files.vectors_at(positions)
        if log_rows:
            found = fetch_vectors(self.sql, seq_ids, dim)
            lost = [s for s in seq_ids if s not in found]
            if lost:
                raise CorruptDatabaseError("bad_log_vector", self.sql.path,
                                           f"lost write-log rows {lost[:SAMPLE]} while they were read: the database "
                                           "is being written; read a quiet copy")
            vectors = np.stack([found[s] for s in seq_ids])
            round_trip = ~np.asarray(raw, dtype=bool)
            if self.spec.space == "cosine" and round_trip.any():
                vectors[round_trip] = normalise_round_trip(vectors[round_trip])
            out[log_rows] = vectors
        return out


def index_ahead(pickle_path: Path, collection: str, problem: str) -> CorruptDatabaseError:
    return CorruptDatabaseError(
        "index_ahead_of_sqlite", pickle_path,
        f"(collection {collection!r}) {problem}: the index files were written after this chroma.sqlite3, so they "
        "hold vectors of writes the database does not know (the folder was copied while chromadb was writing)",
        "Copy the whole folder again while nothing writes to it (the compactor's lock keeps writers out), or "
        "restore it from a backup; nothing was modified.")


def check_segment_files(folder: Path, spec: VectorSegmentSpec) -> bool:
    """Cheap checks of a vector segment's files; True when it was flushed (has a pickle), False when it never was.

    A folder without `index_metadata.pickle` was never flushed: its files are an empty
    pre-allocated index and the log holds every vector. A segment with a watermark was
    flushed, so its folder and pickle must be there.
    """
    pickle_path = folder / PICKLE_FILE
    if pickle_path.is_file():
        check_sizes(folder, spec.dimension, spec.space)
        return True
    if spec.watermark:
        missing = folder if not folder.is_dir() else pickle_path
        kind = "missing_segment_folder" if missing == folder else "missing_index_metadata"
        raise CorruptDatabaseError(
            kind, missing, f"is missing, but collection {spec.collection!r} flushed its vector index up to "
                           f"write-log row {spec.watermark}, so those vectors are lost",
            "The copy of this database is incomplete: copy the whole folder again, segment folders included, or "
            "restore it from a backup.")
    return False


def batch_size_of(segment_metadata: dict[str, object] | None, collection_metadata: dict[str, object] | None) -> int:
    """0.x's hnsw:batch_size: from the segment's metadata (copied at creation), else the collection's."""
    for source in (segment_metadata or {}, collection_metadata or {}):
        value = source.get("hnsw:batch_size")
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_0X_BATCH_SIZE
