"""The VECTOR segment's files: the source's graph carried over, or a graph built with hnswlib.

Both write the four hnswlib files (`header.bin`, `data_level0.bin`, `length.bin`,
`link_lists.bin`) that every supported version reads, with `chroma-hnswlib`, the library
and the settings chromadb itself builds with; the id map (`index_metadata.pickle`) is
written afterwards by the target's own runtime (`worker/transplant_ops.py`).

- **Carried** (`CarriedGraph`): the source's files are copied as they are, so every stored
  vector, norm and link stays bit for bit. What the source's write log holds above the
  index's watermark (records only in the log, updated vectors, deletes) is applied to the
  copy with hnswlib afterwards, the way chromadb applies a batch: a new id gets the next
  label, an updated id keeps its label, a deleted id is marked deleted and unmapped.
- **Built** (`BuiltGraph`): a fresh index of the collection's settings, filled batch by
  batch with hnswlib's parallel `add_items` on every core.

Memory: the id map (as the native reader holds it), one batch of vectors, and, for a build
or a carried graph with log changes, the index itself, which hnswlib keeps in memory.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from chroma_migrate.exchange import RecordBatch
from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.hnsw_files import DATA_FILE, HEADER_FILE, LENGTH_FILE
from chroma_migrate.native.id_map import PICKLE_FILE, load_id_map
from chroma_migrate.native.write_log import fetch_vectors

LINKS_FILE = "link_lists.bin"
INDEX_FILES = (HEADER_FILE, DATA_FILE, LENGTH_FILE, LINKS_FILE)


def _hnswlib():
    """Imported on use: only a transplant needs the compiled library."""
    import hnswlib

    return hnswlib


def worker_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def index_input(source: NativeCollection, batch: RecordBatch, rows: list[int]) -> np.ndarray:
    """The vectors to hand hnswlib for these rows of a batch.

    A cosine index stores x / |x| and its norm, and get() multiplies them back, so a vector
    that went through an index once comes back a few ulps away from x. Records still in the
    source's write log are therefore given to hnswlib as the log holds them (x itself): the
    target's get() then returns exactly what the source's 1.x get() returns (its index made
    the same round trip). Records from the source's index have no unrounded form left.
    """
    vectors = np.ascontiguousarray(batch.embeddings[rows], dtype=np.float32)
    logged = source.vectors.sources.from_log
    if source.space != "cosine" or not logged:
        return vectors
    from_log = [(position, logged[batch.ids[row]][0]) for position, row in enumerate(rows) if batch.ids[row] in logged]
    if from_log:
        found = fetch_vectors(source.vectors.sql, [seq_id for _, seq_id in from_log], vectors.shape[1])
        for position, seq_id in from_log:
            vectors[position] = found[seq_id]
    return vectors


class GraphWriter(ABC):
    """Receives a collection's records batch by batch (in id order) and leaves its index files in `folder`."""

    def __init__(self, folder: Path, space: str, dimension: int) -> None:
        self.folder, self.space, self.dimension = Path(folder), space, dimension
        self.id_to_label: dict[str, int] = {}
        self.total_elements_added = 0

    @abstractmethod
    def add(self, batch: RecordBatch) -> None: ...

    @abstractmethod
    def finish(self) -> None:
        """Write the index files (nothing is left open)."""


class BuiltGraph(GraphWriter):
    """A new graph: labels 1..n in id order, vectors added with all cores."""

    def __init__(self, folder: Path, source: NativeCollection, capacity: int, m: int, ef_construction: int) -> None:
        super().__init__(folder, source.space, int(source.dimension or 0))
        self.source = source
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index = _hnswlib().Index(space=self.space, dim=self.dimension)
        self.index.init_index(max_elements=max(capacity, 1), M=m, ef_construction=ef_construction,
                              is_persistent_index=True, persistence_location=str(self.folder))
        self.index.set_num_threads(worker_threads())

    def add(self, batch: RecordBatch) -> None:
        if not len(batch):
            return
        labels = np.arange(self.total_elements_added + 1, self.total_elements_added + 1 + len(batch), dtype=np.uint64)
        self.index.add_items(index_input(self.source, batch, list(range(len(batch)))), labels)
        self.id_to_label.update(zip(batch.ids, labels.tolist(), strict=True))
        self.total_elements_added += len(batch)

    def finish(self) -> None:
        self.index.persist_dirty()
        self.index.close_file_handles()


class CarriedGraph(GraphWriter):
    """The source's graph, copied, with the write log's tail applied to the copy."""

    def __init__(self, folder: Path, source: NativeCollection) -> None:
        super().__init__(folder, source.space, int(source.dimension or 0))
        self.source = source
        segment = source.vectors
        assert segment.files is not None, "a graph is carried only from a flushed index"
        self.sources = segment.sources
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in INDEX_FILES:
            shutil.copyfile(segment.files.folder / name, self.folder / name)
        persisted = load_id_map(segment.files.folder / PICKLE_FILE, segment.files.header.element_count)
        labels = segment.files.labels
        self.total_elements_added = max(int(persisted.total_elements_added or 0),
                                        int(labels.max()) if len(labels) else 0)
        self.element_count = segment.files.header.element_count
        self.index = None
        self.changed = 0

    def _open(self):
        """hnswlib on the copy, with room for every record the log may add."""
        if self.index is None:
            self.index = _hnswlib().Index(space=self.space, dim=self.dimension)
            self.index.load_index(str(self.folder), max_elements=self.element_count + len(self.sources.from_log) + 1,
                                  is_persistent_index=True)
        return self.index

    def add(self, batch: RecordBatch) -> None:
        changed_rows, changed_labels = [], []
        for row, record_id in enumerate(batch.ids):
            label = self.sources.persisted.get(record_id)
            if record_id not in self.sources.from_log:
                assert label is not None and record_id not in self.sources.removed
                self.id_to_label[record_id] = label
                continue
            if label is None or record_id in self.sources.removed:  # new, or deleted and added again: a new label
                self.total_elements_added += 1
                label = self.total_elements_added
            changed_rows.append(row)
            changed_labels.append(label)
            self.id_to_label[record_id] = label
        if changed_rows:
            self._open().add_items(index_input(self.source, batch, changed_rows),
                                   np.asarray(changed_labels, dtype=np.uint64))
            self.changed += len(changed_rows)

    def finish(self) -> None:
        """Mark deleted every persisted element whose id no longer maps to it: deleted in the log, or
        deleted and added again under a new label (as chromadb does)."""
        for record_id, label in self.sources.persisted.items():
            if self.id_to_label.get(record_id) != label:
                self._open().mark_deleted(label)
                self.changed += 1
        if self.index is not None:
            self.index.persist_dirty()
            self.index.close_file_handles()
