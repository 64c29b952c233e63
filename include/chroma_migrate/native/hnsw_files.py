"""The hnswlib files of one vector segment: header, level-0 elements (labels, deleted marks, vectors), norms.

Reads use plain positioned reads, never mmap: mapped pages would count as this process's
memory, and the files of a large index are far bigger than one batch. One sequential pass
at open collects every element's label and deleted mark (8 + 4 bytes each); vectors are
then read per batch, only for the elements asked for.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.reading import note_reading

HEADER_FILE = "header.bin"
DATA_FILE = "data_level0.bin"
LENGTH_FILE = "length.bin"
HEADER_LAYOUT = struct.Struct("<iQQQQQQiIQQQdQ")  # 100 bytes, hnswlib's saveIndex order
DELETED_MARK = 0x10000  # bit in an element's uint32 link-count word
SCAN_BYTES = 8 << 20  # bytes read per step of the label scan
RUN_GAP = 4  # elements this close together are fetched with one read
COSINE_EPSILON = np.float32(1e-30)
# Bounds no real index comes near, checked before anything is allocated from a header field:
MAX_LINKS = 0xFFFF  # the link-count word has 16 bits
MAX_DIMENSION = 1 << 16  # chromadb's widest common embeddings have 3,072
MAX_LEVEL = 128  # hnswlib draws levels as -ln(U) / ln(M): about 53 at most for M = 2


@dataclass(frozen=True)
class HnswHeader:
    version: int
    offset_level0: int
    max_elements: int
    element_count: int
    element_size: int
    label_offset: int
    data_offset: int
    max_level: int
    enterpoint: int
    max_m: int
    max_m0: int
    m: int
    mult: float
    ef_construction: int

    @property
    def dimension(self) -> int:
        return (self.label_offset - self.data_offset) // 4


def read_header(folder: Path) -> HnswHeader:
    path = folder / HEADER_FILE
    note_reading(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptDatabaseError("bad_header", path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(raw) < HEADER_LAYOUT.size:
        raise CorruptDatabaseError("bad_header", path, f"has {len(raw)} bytes, an hnswlib header has "
                                                       f"{HEADER_LAYOUT.size}")
    header = HnswHeader(*HEADER_LAYOUT.unpack_from(raw))
    consistent = (header.data_offset == 4 + 4 * header.max_m0 and header.label_offset > header.data_offset
                  and (header.label_offset - header.data_offset) % 4 == 0
                  and header.element_size == header.label_offset + 8 and header.element_count <= header.max_elements
                  and header.max_m0 <= MAX_LINKS and header.max_m <= MAX_LINKS and header.dimension <= MAX_DIMENSION
                  and -1 <= header.max_level <= MAX_LEVEL)
    if not consistent:
        raise CorruptDatabaseError("bad_header", path, f"is inconsistent (element size {header.element_size}, "
                                                       f"label offset {header.label_offset}, data offset "
                                                       f"{header.data_offset}, maxM0 {header.max_m0}, "
                                                       f"maxM {header.max_m}, "
                                                       f"top level {header.max_level})")
    return header


def normalise_round_trip(vectors: np.ndarray) -> np.ndarray:
    """What a cosine index hands back for x: (x / (|x| + 1e-30)) * |x|, in float32 as hnswlib computes it.

    The norm is a sequential float32 sum of squares (hnswlib's loop), not numpy's pairwise sum.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not len(vectors):
        return vectors
    total = np.zeros(len(vectors), dtype=np.float32)
    for column in vectors.T:
        total += column * column
    norms = np.sqrt(total)
    stored = vectors * (np.float32(1) / (norms + COSINE_EPSILON))[:, None]
    return stored * norms[:, None]


def check_sizes(folder: Path, dimension: int, space: str) -> HnswHeader:
    """Header sane, data_level0.bin a whole number of elements and at least as many as the header says,
    length.bin long enough for a cosine index: everything that can be checked without reading the elements."""
    folder = Path(folder)
    header = read_header(folder)
    if dimension and header.dimension != dimension:
        raise CorruptDatabaseError("bad_header", folder / HEADER_FILE, f"describes {header.dimension}-dimensional "
                                                                       f"vectors, the collection has {dimension}")
    data_path = folder / DATA_FILE
    size = _size(data_path, "data_level0_truncated")
    if size % header.element_size:
        raise CorruptDatabaseError(
            "data_level0_size", data_path,
            f"has {size} bytes, not a whole number of {header.element_size}-byte elements (it was cut or overwritten)")
    if size // header.element_size < header.element_count:
        raise CorruptDatabaseError("data_level0_truncated", data_path,
                                   f"holds {size // header.element_size} elements but header.bin says "
                                   f"{header.element_count}")
    if space == "cosine" and _size(folder / LENGTH_FILE, "length_truncated") < 4 * header.element_count:
        raise CorruptDatabaseError("length_truncated", folder / LENGTH_FILE,
                                   f"holds fewer than the {header.element_count} norms the index needs")
    return header


def _size(path: Path, kind: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CorruptDatabaseError(kind, path, f"cannot be read ({exc.strerror or exc})") from exc


class HnswFiles:
    """Level-0 data of a persisted index, addressed by hnswlib label."""

    def __init__(self, folder: Path, dimension: int, space: str) -> None:
        self.folder = Path(folder)
        self.header = check_sizes(self.folder, dimension, space)
        self.space = space
        self.data_path = self.folder / DATA_FILE
        self.count = self.header.element_count
        self.norms = self._read_norms() if space == "cosine" else None
        self.labels, self.deleted = self._scan_labels()
        live = ~self.deleted
        order = np.argsort(self.labels[live], kind="stable")
        self._sorted_labels = self.labels[live][order]
        self._sorted_positions = np.flatnonzero(live)[order]

    def _read_norms(self) -> np.ndarray:
        path = self.folder / LENGTH_FILE
        note_reading(path)
        with open(path, "rb") as handle:
            return np.frombuffer(handle.read(4 * self.count), dtype="<f4")

    def _scan_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Every element's label and deleted mark, in one sequential pass of bounded memory."""
        element, header = self.header.element_size, self.header
        labels = np.empty(self.count, dtype=np.uint64)
        deleted = np.empty(self.count, dtype=bool)
        step = max(1, SCAN_BYTES // element)
        note_reading(self.data_path)
        with open(self.data_path, "rb") as handle:
            for start in range(0, self.count, step):
                n = min(step, self.count - start)
                raw = handle.read(n * element)
                if len(raw) < n * element:
                    raise CorruptDatabaseError("data_level0_truncated", self.data_path,
                                               f"ended after {start + len(raw) // element} elements")
                rows = np.frombuffer(raw, dtype=np.uint8).reshape(n, element)
                labels[start:start + n] = rows[:, header.label_offset:header.label_offset + 8].copy().view("<u8")[:, 0]
                marks = rows[:, 0:4].copy().view("<u4")[:, 0]
                deleted[start:start + n] = (marks & DELETED_MARK) != 0
        return labels, deleted

    def live_labels(self) -> np.ndarray:
        """Labels of every element not marked deleted, sorted."""
        return self._sorted_labels

    def positions_of(self, labels: np.ndarray) -> np.ndarray:
        """Element position of each label; -1 where the index holds no live element with that label."""
        labels = np.asarray(labels, dtype=np.uint64)
        if not len(self._sorted_labels):
            return np.full(len(labels), -1, dtype=np.int64)
        where = np.minimum(np.searchsorted(self._sorted_labels, labels), len(self._sorted_labels) - 1)
        return np.where(self._sorted_labels[where] == labels, self._sorted_positions[where], -1)

    def raw_elements(self, positions: np.ndarray) -> np.ndarray:
        """The raw level-0 bytes of these elements, (len(positions), element_size), in the order asked."""
        element = self.header.element_size
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), element), dtype=np.uint8)
        if not len(positions):
            return out
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        note_reading(self.data_path)
        fd = os.open(self.data_path, os.O_RDONLY)
        # One read per run of nearby elements: a run ends where the next position is more than RUN_GAP on.
        ends = [*(np.flatnonzero(np.diff(ordered) > RUN_GAP) + 1).tolist(), len(ordered)]
        try:
            run_start = 0
            for i in ends:
                first, last = int(ordered[run_start]), int(ordered[i - 1])
                raw = os.pread(fd, (last - first + 1) * element, first * element)
                if len(raw) < (last - first + 1) * element:
                    raise CorruptDatabaseError("data_level0_truncated", self.data_path,
                                               f"ended before element {last} while it was read")
                rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, element)
                out[order[run_start:i]] = rows[ordered[run_start:i] - first]
                run_start = i
        finally:
            os.close(fd)
        return out

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """The vectors get() returns for these elements (cosine: stored times norm, in float32)."""
        offset, dim = self.header.data_offset, self.header.dimension
        rows = self.raw_elements(positions)
        out = np.ascontiguousarray(rows[:, offset:offset + 4 * dim]).view("<f4")
        if self.norms is not None and len(out):
            out = out * self.norms[np.asarray(positions, dtype=np.int64)][:, None]
        return out
