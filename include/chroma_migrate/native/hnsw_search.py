"""Nearest neighbours through a persisted hnsw graph, the way hnswlib searches it, without loading the index.

Verification compares the target's recall with the source's. The source's answer used to
come from a chromadb process holding the whole index in memory; this walks the same graph
from the files instead: greedy descent through the upper levels (`link_lists.bin`), then
hnswlib's best-first search of level 0 with `ef` candidates, reading only the elements it
visits. Vectors the write log replaced or added (not in the graph) are searched by brute
force and merged in, as 0.x does with its buffer. Same algorithm and graph as chromadb;
ties and float rounding can differ, which recall tolerates.
"""

from __future__ import annotations

import heapq

import numpy as np

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.hnsw_files import HnswFiles
from chroma_migrate.native.link_lists import LINK_LISTS_FILE, read_upper_links

__all__ = ["LINK_LISTS_FILE", "GraphSearcher", "distances", "normalised"]


def distances(space: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    if space == "l2":
        difference = vectors - query
        return np.einsum("ij,ij->i", difference, difference)
    return 1.0 - vectors @ query  # ip; cosine on normalised vectors


def normalised(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / (np.float32(np.sqrt(np.dot(vector, vector))) + np.float32(1e-30))


class GraphSearcher:
    """Searches one persisted hnsw index; elements are read from disk on first visit and kept."""

    def __init__(self, files: HnswFiles) -> None:
        self.files = files
        header = files.header
        self.space = files.space
        if header.element_count and header.enterpoint >= header.element_count:
            raise CorruptDatabaseError("bad_header", files.folder / "header.bin",
                                       f"names the entry point {header.enterpoint}, beyond the index's "
                                       f"{header.element_count} elements")
        self._upper = read_upper_links(files.folder / LINK_LISTS_FILE, header)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _fetch(self, positions: list[int]) -> None:
        """Read the elements not seen yet, all in one go, keeping (stored vector, level-0 neighbours)."""
        wanted = [p for p in positions if p not in self._cache]
        if not wanted:
            return
        header = self.files.header
        for position, raw in zip(wanted, self.files.raw_elements(np.asarray(wanted)), strict=True):
            n = int(raw[:4].view("<u4")[0] & 0xFFFF)
            neighbours = raw[4:4 + 4 * min(n, header.max_m0)].view("<u4").astype(np.int64)
            if n > header.max_m0 or (len(neighbours) and int(neighbours.max()) >= header.element_count):
                raise CorruptDatabaseError(
                    "level0_links_corrupt", self.files.data_path,
                    f"gives element {position} {n} level-0 links, or links beyond the index's "
                    f"{header.element_count} elements (maxM0 is {header.max_m0}): the graph cannot be walked")
            self._cache[position] = (raw[header.data_offset:header.label_offset].view("<f4"), neighbours)

    def _distances_to(self, query: np.ndarray, positions: list[int]) -> np.ndarray:
        self._fetch(positions)
        return distances(self.space, query, np.stack([self._cache[p][0] for p in positions]))

    def search(self, query: np.ndarray, k: int, ef: int) -> list[tuple[float, int]]:
        """Up to k (distance, label) pairs of live elements, nearest first."""
        header = self.files.header
        if header.element_count == 0:
            return []
        query = normalised(query) if self.space == "cosine" else np.asarray(query, dtype=np.float32)
        current = int(header.enterpoint)
        best = float(self._distances_to(query, [current])[0])
        for level in range(header.max_level, 0, -1):
            changed, steps = True, 0
            while changed and steps <= header.element_count:  # each step is strictly nearer: at most one per element
                changed, steps = False, steps + 1
                levels = self._upper.get(current, [])
                neighbours = [int(n) for n in levels[level - 1]] if level - 1 < len(levels) else []
                if not neighbours:
                    break
                found = self._distances_to(query, neighbours)
                nearest = int(np.argmin(found))
                if found[nearest] < best:
                    best, current, changed = float(found[nearest]), neighbours[nearest], True
        found = self._search_level0(query, current, max(ef, k))
        labels = self.files.labels
        return [(d, int(labels[p])) for d, p in sorted(found)[:k]]

    def _search_level0(self, query: np.ndarray, entry: int, ef: int) -> list[tuple[float, int]]:
        """hnswlib's best-first search of level 0: a candidate heap, and the ef best live elements seen."""
        deleted = self.files.deleted
        visited = {entry}
        d = float(self._distances_to(query, [entry])[0])
        top: list[tuple[float, int]] = [(-d, entry)] if not deleted[entry] else []  # max-heap by distance
        bound = d if top else float("inf")
        candidates = [(d, entry)]
        while candidates:
            d, position = candidates[0]
            if d > bound and len(top) >= ef:
                break
            heapq.heappop(candidates)
            fresh = [int(n) for n in self._cache[position][1] if int(n) not in visited]
            if not fresh:
                continue
            visited.update(fresh)
            for neighbour, nd in zip(fresh, self._distances_to(query, fresh).tolist(), strict=True):
                if len(top) < ef or nd < bound:
                    heapq.heappush(candidates, (nd, neighbour))
                    if not deleted[neighbour]:
                        heapq.heappush(top, (-nd, neighbour))
                        if len(top) > ef:
                            heapq.heappop(top)
                    if top:
                        bound = -top[0][0]
        return [(-negative, position) for negative, position in top]
