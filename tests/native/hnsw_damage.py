"""Fixtures and file surgery for the index-health tests: real databases, damaged on a copy.

The surgery reads the hnswlib files with its own small parser (struct and numpy, written
from the format, not from the module under test), so a bug in the check cannot hide the
same bug here. Every function works on a copy the test made and returns what it changed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate.native import open_database

HEADER = struct.Struct("<iQQQQQQiIQQQdQ")
DELETED = 0x10000
COUNT_MASK = 0xFFFF


def churn_spec(seed: int = 0, records: int = 3000) -> dict[str, Any]:
    """Many small index flushes (batch 10, sync 20) under adds, upserts, updates, deletes and re-adds, l2, dim 64."""
    return {"seed": seed, "collections": [{
        "name": "churn", "kind": "line", "dim": 64, "records": records,
        "metadata": {"hnsw:space": "l2", "hnsw:batch_size": 10, "hnsw:sync_threshold": 20}}]}


def segment_folder(db: Path, collection: str) -> Path:
    with open_database(db) as native:
        return native.collection(collection).vectors.folder


@dataclass
class Index:
    """One segment folder's level-0 link words and upper-level layout, as plain arrays."""

    folder: Path
    count: int
    element_size: int
    max_m: int
    max_m0: int
    max_level: int
    enterpoint: int
    words: np.ndarray  # (count, 1 + maxM0) uint32: the count word, then the neighbour ids
    levels: np.ndarray  # top level per element
    upper: list[tuple[int, int]]  # (element, byte offset of its size word in link_lists.bin) for levels >= 1

    @property
    def live(self) -> np.ndarray:
        return (self.words[:, 0] & DELETED) == 0

    def neighbours(self, element: int) -> np.ndarray:
        return self.words[element, 1:1 + int(self.words[element, 0] & COUNT_MASK)]


def read_index(folder: Path) -> Index:
    fields = HEADER.unpack((folder / "header.bin").read_bytes()[:HEADER.size])
    count, element_size, max_level, enterpoint, max_m, max_m0 = (fields[3], fields[4], fields[7], fields[8],
                                                                  fields[9], fields[10])
    raw = np.fromfile(folder / "data_level0.bin", dtype=np.uint8, count=count * element_size)
    words = raw.reshape(count, element_size)[:, :4 * (1 + max_m0)].copy().view("<u4")
    links = (folder / "link_lists.bin").read_bytes()
    levels = np.zeros(count, dtype=np.int64)
    upper, offset = [], 0
    for element in range(count):
        (size,) = struct.unpack_from("<I", links, offset)
        if size:
            levels[element] = size // (4 * (max_m + 1))
            upper.append((element, offset))
        offset += 4 + size
    assert offset == len(links), "link_lists.bin of a real database parses to its end"
    return Index(folder, count, element_size, max_m, max_m0, max_level, enterpoint, words, levels, upper)


def write_words(index: Index, elements: np.ndarray) -> None:
    """Write these elements' link words back into data_level0.bin, leaving their vectors and labels alone."""
    with open(index.folder / "data_level0.bin", "r+b") as handle:
        for element in np.unique(elements):
            handle.seek(int(element) * index.element_size)
            handle.write(index.words[element].tobytes())


def pick(index: Index, fraction: float, seed: int, *, level0_only: bool = False) -> np.ndarray:
    """ceil(fraction × live) live elements other than the entry point (only elements without upper levels if asked)."""
    eligible = index.live.copy()
    eligible[index.enterpoint] = False
    if level0_only:
        eligible &= index.levels == 0
    candidates = np.flatnonzero(eligible)
    wanted = int(np.ceil(fraction * index.live.sum()))
    return np.sort(np.random.default_rng(seed).choice(candidates, wanted, replace=False))


def cut_off(folder: Path, fraction: float = 0.01, seed: int = 0, *, spare_stranded: bool = True) -> np.ndarray:
    """Remove every level-0 link pointing at 1% of live elements (ones without upper levels, so no path is left).

    A victim whose removal would leave some live element without any level-0 link is spared
    (unless asked not to): that would be a second fault, an unlinked element, named on its own.
    """
    index = read_index(folder)
    victims = pick(index, fraction, seed, level0_only=True)
    while True:
        doomed = np.zeros(index.count, dtype=bool)
        doomed[victims] = True
        stranded = [e for e in np.flatnonzero(index.live)
                    if len(index.neighbours(e)) and doomed[index.neighbours(e)].all()]
        if not stranded or not spare_stranded:
            break
        victims = np.setdiff1d(victims, np.concatenate([index.neighbours(e) for e in stranded]))
    assert len(victims), "some victims are left to cut off"
    changed = []
    for element in range(index.count):
        current = index.neighbours(element)
        kept = current[~doomed[current]]
        if len(kept) < len(current):
            row = index.words[element]
            row[0] = (row[0] & ~np.uint32(COUNT_MASK)) | np.uint32(len(kept))
            row[1:] = 0
            row[1:1 + len(kept)] = kept
            changed.append(element)
    write_words(index, np.asarray(changed, dtype=np.int64))
    return victims


def mark_deleted(folder: Path, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """Set hnswlib's deleted mark on 1% of live elements, as a stray delete would."""
    index = read_index(folder)
    victims = pick(index, fraction, seed)
    index.words[victims, 0] |= np.uint32(DELETED)
    write_words(index, victims)
    return victims


def undelete(folder: Path, n: int = 3) -> np.ndarray:
    """Clear the deleted mark of n deleted elements: live elements whose labels the pickle no longer maps."""
    index = read_index(folder)
    victims = np.flatnonzero(~index.live)[:n]
    index.words[victims, 0] &= ~np.uint32(DELETED)
    write_words(index, victims)
    return victims


def duplicate_label(folder: Path) -> tuple[int, int]:
    """Give one live element another live element's label, as a misplaced write would; (copied, overwritten)."""
    index = read_index(folder)
    fields = HEADER.unpack((folder / "header.bin").read_bytes()[:HEADER.size])
    label_offset = fields[5]
    first, second = (int(e) for e in np.flatnonzero(index.live)[:2])
    with open(folder / "data_level0.bin", "r+b") as handle:
        handle.seek(first * index.element_size + label_offset)
        label = handle.read(8)
        handle.seek(second * index.element_size + label_offset)
        handle.write(label)
    return first, second


def zero_lists(folder: Path, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """Set the level-0 link count of 1% of live elements to 0 (their ids stay behind, unread)."""
    index = read_index(folder)
    victims = pick(index, fraction, seed)
    index.words[victims, 0] &= ~np.uint32(COUNT_MASK)
    write_words(index, victims)
    return victims


def move_entry_point(folder: Path) -> int:
    """Point header.bin's entry point at an element without upper levels."""
    index = read_index(folder)
    element = int(np.flatnonzero(index.levels == 0)[0])
    path = folder / "header.bin"
    raw = bytearray(path.read_bytes())
    offset = struct.calcsize("<iQQQQQQi")  # enterpoint follows maxlevel
    struct.pack_into("<I", raw, offset, element)
    path.write_bytes(bytes(raw))
    return element


UPPER_DAMAGE = ("neighbour_out_of_range", "neighbour_below_level", "size_not_whole_levels", "truncated",
                "trailing_bytes", "count_over_max_m")


def break_link_lists(folder: Path, how: str) -> int:
    """Damage link_lists.bin one way; returns the element whose list was touched (-1 for the whole file)."""
    index = read_index(folder)
    path = folder / "link_lists.bin"
    raw = bytearray(path.read_bytes())
    linked = [(e, o) for e, o in index.upper if struct.unpack_from("<I", raw, o + 4)[0] & COUNT_MASK]
    element, offset = linked[0]
    first_id = offset + 8  # size word, level-1 count word, then its first neighbour
    if how == "neighbour_out_of_range":
        struct.pack_into("<I", raw, first_id, index.count + 7)
    elif how == "neighbour_below_level":
        struct.pack_into("<I", raw, first_id, int(np.flatnonzero(index.levels == 0)[0]))
    elif how == "size_not_whole_levels":
        struct.pack_into("<I", raw, offset, struct.unpack_from("<I", raw, offset)[0] + 4)
    elif how == "count_over_max_m":
        struct.pack_into("<I", raw, offset + 4, index.max_m + 1)
    elif how == "truncated":
        del raw[-8:]
        element = -1
    elif how == "trailing_bytes":
        raw += bytes(8)
        element = -1
    else:
        raise ValueError(how)
    path.write_bytes(bytes(raw))
    return element
