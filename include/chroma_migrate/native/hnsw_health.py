"""A deterministic health check of one persisted hnsw index: ids, deleted marks, links, reachability.

Recall of sampled queries depends on chance: it refuses sound migrations and passes damaged
ones. These checks do not. They read only the files (`header.bin`, the link words of
`data_level0.bin`, `link_lists.bin`, the pickle's id map) and answer the same way every time:

1. every id the pickle maps has a live element with its label, every live element's label is
   mapped, and no label is held by two live elements (the reader raises the first two; this
   reports them instead);
2. reachability: the live elements some search can reach. hnswlib descends from the entry
   point through the upper levels and lands on an element the upper-level links lead to,
   then walks level-0 links from there (through deleted elements too, as hnswlib does, but
   only live ones count). The entry point must be an element at the header's top level;
3. link sanity: level-0 lists within `maxM0`, naming existing elements other than
   themselves, each live element linked when the index holds two or more; `link_lists.bin`
   parses to exactly its end and its upper-level links name elements present at that level.

Reachability is judged against a baseline, not alone: hnswlib's own neighbour pruning leaves
live elements that nothing links to in healthy indexes (measured on databases the real
versions wrote: 0-0.55% of live elements at M=16, 0.7% at M=8, 7% at M=4), so "every live
element reachable" would refuse sound databases. With `baseline` (the same graph's health
before it was copied or upgraded) any id it reached that this index cannot reach is a
problem; alone, only a graph split in two (under half of 100 or more live elements reachable) is.

Memory is O(elements) small integers (the level-0 edge list, 4 bytes per link): the vectors
in `data_level0.bin` pass through a bounded buffer and are never kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.hnsw_files import HEADER_FILE, HnswFiles
from chroma_migrate.native.hnsw_search import LINK_LISTS_FILE
from chroma_migrate.native.id_map import PICKLE_FILE, load_id_map
from chroma_migrate.native.reading import note_reading

SAMPLE = 3  # elements or ids quoted per problem
CHUNK_BYTES = 8 << 20  # data_level0.bin bytes read per step
FRONTIER_SLICE = 1 << 14  # elements expanded together in the breadth-first search
LABEL_KINDS = ("label_not_in_index", "label_not_in_pickle")  # reader errors after which the graph is still read
SPLIT_FRACTION = 0.5  # fewer live elements than this reachable: a split graph, never hnswlib's pruning (<= 7.5% seen)
SPLIT_MINIMUM = 100  # live elements below which a few orphans could be half of them by chance


@dataclass
class IndexHealth:
    """What the check found for one collection; `passed` when nothing is wrong."""

    collection: str
    folder: str | None = None
    elements: int = 0  # elements in the index (header.bin's cur_element_count)
    live: int = 0  # of them not marked deleted
    reachable: int | None = None  # of the live ones, reachable by a search; None when it could not be computed
    mapped: int = 0  # ids index_metadata.pickle maps
    links: int = 0  # level-0 links read
    unreachable_ids: list[str] = field(default_factory=list)  # mapped ids of live elements not reached, sorted
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def unreachable(self) -> int | None:
        return None if self.reachable is None else self.live - self.reachable

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "folder": self.folder, "passed": self.passed,
                "elements": self.elements, "live": self.live, "reachable": self.reachable, "mapped": self.mapped,
                "links": self.links, "unreachable_ids": list(self.unreachable_ids), "problems": list(self.problems),
                "notes": list(self.notes)}


def check_index_health(collection: NativeCollection, label: str, baseline: IndexHealth | None = None) -> IndexHealth:
    """Check the collection's persisted index; `label` is how the problems name the collection.

    `baseline` is the health of the same graph before it was copied, moved or upgraded (the
    source's, for a migration that carries the index over): every id it reached must still be
    reachable. Leave it out for a graph built anew (a rebuild), whose pruning differs.
    """
    health = IndexHealth(label)
    try:
        segment = collection.vectors
        files, id_to_label = segment.files, segment.sources.persisted
    except CorruptDatabaseError as exc:  # the reader's own checks, reported rather than raised
        health.problems.append(f"collection {label!r}: {exc.problem}")
        if exc.kind not in LABEL_KINDS:
            return health
        folder = Path(exc.file).parent
        try:
            files = HnswFiles(folder, int(collection.dimension or 0), collection.space)
            id_to_label = load_id_map(folder / PICKLE_FILE, files.header.element_count).id_to_label
        except CorruptDatabaseError as again:
            health.problems.append(f"collection {label!r}: {again.problem}")
            return health
        _explain_missing_labels(health, files, id_to_label)
    if files is None:
        health.reachable = 0
        health.notes.append(f"collection {label!r} has no flushed index (no {PICKLE_FILE}): its records, if any, "
                            "are only in the write log, so there is no graph to check")
        return health
    try:
        _check_files(health, files, id_to_label, baseline)
    except OSError as exc:
        health.problems.append(f"collection {label!r}: {files.folder}: cannot be read ({exc.strerror or exc})")
    return health


class _Names:
    """Describes elements by position, label and (for mapped labels) id, for problem sentences."""

    def __init__(self, files: HnswFiles, id_to_label: Mapping[str, int]) -> None:
        self.files, self.id_to_label = files, id_to_label

    def __call__(self, positions: np.ndarray, what: str = "elements") -> str:
        positions = np.asarray(positions, dtype=np.int64)
        shown = positions[:SAMPLE]
        labels = [int(self.files.labels[p]) for p in shown]
        wanted = set(labels)
        ids = {lab: i for i, lab in self.id_to_label.items() if lab in wanted} if wanted else {}
        parts = [f"{int(p)} (label {lab}" + (f", id {ids[lab]!r})" if lab in ids else ")")
                 for p, lab in zip(shown, labels, strict=True)]
        return f"{what} " + ", ".join(parts) + (" ..." if len(positions) > SAMPLE else "")


def _explain_missing_labels(health: IndexHealth, files: HnswFiles, id_to_label: Mapping[str, int]) -> None:
    """After the reader's label_not_in_index: how many of those labels sit on elements marked deleted."""
    mapped = np.fromiter(id_to_label.values(), dtype=np.uint64, count=len(id_to_label))
    deleted_labels = np.unique(files.labels[files.deleted])
    on_deleted = mapped[np.isin(mapped, deleted_labels) & ~np.isin(mapped, files.live_labels())]
    if len(on_deleted):
        positions = np.flatnonzero(files.deleted & np.isin(files.labels, on_deleted))
        health.problems.append(
            f"collection {health.collection!r}: {files.data_path}: {len(on_deleted)} ids that {PICKLE_FILE} maps "
            f"resolve to elements marked deleted ({_Names(files, id_to_label)(positions)}): hnswlib's search skips "
            "them, so queries can never return those records")


def _check_files(health: IndexHealth, files: HnswFiles, id_to_label: Mapping[str, int],
                 baseline: IndexHealth | None) -> None:
    header, label = files.header, health.collection
    count = header.element_count
    health.folder, health.elements, health.mapped = str(files.folder), count, len(id_to_label)
    health.live = int(count - np.count_nonzero(files.deleted))
    if count == 0:
        health.reachable = 0
        health.notes.append(f"collection {label!r}: the index at {files.folder} holds no elements")
        return
    names = _Names(files, id_to_label)
    prefix = f"collection {label!r}: "
    live_labels = files.live_labels()
    twice = np.unique(live_labels[1:][live_labels[1:] == live_labels[:-1]])
    if len(twice):
        positions = np.flatnonzero(~files.deleted & np.isin(files.labels, twice))
        health.problems.append(f"{prefix}{files.data_path}: {len(twice)} labels are each carried by more than one "
                               f"live element ({names(positions)}): hnswlib keeps only one of each")
    graph = _read_level0(files)
    health.links = len(graph.targets)
    _report_level0(health, files, graph, names)
    upper = _check_upper_levels(health, files, names)
    if not upper.complete:
        health.notes.append(f"{prefix}reachability was not computed: {LINK_LISTS_FILE} could not be read to its end, "
                            "so the upper levels the search descends are unknown")
        return
    entry = _entry_point_problem(files, upper.levels)
    if entry:
        health.problems.append(f"{prefix}{files.folder / HEADER_FILE}: {entry}")
        return
    visited = _reachable(graph, _descent_reach(upper, int(header.enterpoint), int(header.max_level)))
    lost = np.flatnonzero(~visited & ~files.deleted)
    health.reachable = health.live - len(lost)
    if len(lost):
        health.unreachable_ids = _ids_of(files.labels[lost], id_to_label)
        _judge_reachability(health, files, lost, names, baseline)


def _report_level0(health: IndexHealth, files: HnswFiles, graph: _Level0, names: _Names) -> None:
    header, where = files.header, f"collection {health.collection!r}: {files.data_path}: "
    count = header.element_count
    for rows, problem in ((graph.over_capacity, f"list more than maxM0 = {header.max_m0} level-0 neighbours"),
                          (graph.invalid, f"have level-0 links to elements beyond the {count} the index holds "
                                          f"({graph.invalid_links} links)"),
                          (graph.self_links, "link to themselves at level 0"),
                          (graph.duplicates, "list the same level-0 neighbour more than once")):
        if len(rows):
            health.problems.append(f"{where}{len(rows)} elements {problem} ({names(rows)})")
    if count >= 2:  # from the second element on, hnswlib links every element it inserts
        unlinked = np.flatnonzero((graph.lengths == 0) & ~files.deleted)
        if len(unlinked):
            health.problems.append(f"{where}{len(unlinked)} live elements have no level-0 links although the index "
                                   f"holds {count} elements ({names(unlinked)})")


def _judge_reachability(health: IndexHealth, files: HnswFiles, lost: np.ndarray, names: _Names,
                        baseline: IndexHealth | None) -> None:
    """Unreachable live elements: a problem when the graph is split or the baseline reached them, else a note."""
    where, entry_point = f"collection {health.collection!r}: {files.data_path}: ", int(files.header.enterpoint)
    what = (f"{len(lost)} of {health.live} live elements ({len(lost) / health.live:.2%}) cannot be reached by any "
            f"search path from the entry point (element {entry_point}) down the upper levels and along level-0 links "
            f"({names(lost)})")
    if health.live >= SPLIT_MINIMUM and health.live - len(lost) < SPLIT_FRACTION * health.live:
        health.problems.append(f"{where}{what}: the graph is split, hnswlib's search reaches under half of the index")
    elif baseline is None or baseline.reachable is None:
        health.notes.append(f"{where}{what}; hnswlib's neighbour pruning leaves such orphans in healthy indexes, so "
                            "without a baseline they are counted, not refused")
    else:
        new = sorted(set(health.unreachable_ids) - set(baseline.unreachable_ids))
        if new:
            health.problems.append(
                f"{where}{len(new)} records that the search could reach in the baseline index cannot be reached any "
                f"more from the entry point (element {entry_point}) (ids {_quoted(new)}; {len(lost)} unreachable in "
                f"all, {len(baseline.unreachable_ids)} in the baseline): hnswlib's search can no longer return them")
        else:
            health.notes.append(f"{where}{what}; the baseline could not reach them either")


def _ids_of(labels: np.ndarray, id_to_label: Mapping[str, int]) -> list[str]:
    """The mapped ids of these labels, sorted (one pass over the map, only when something is unreachable)."""
    wanted = {int(x) for x in labels}
    return sorted(record_id for record_id, lab in id_to_label.items() if lab in wanted)


def _quoted(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids[:SAMPLE]) + (" ..." if len(ids) > SAMPLE else "")


@dataclass
class _Level0:
    """Level-0 graph as compressed rows (valid links only) plus the elements whose lists are wrong."""

    lengths: np.ndarray  # valid links per element
    indptr: np.ndarray  # row starts into targets, count + 1
    targets: np.ndarray  # uint32 neighbour positions, grouped by element
    over_capacity: np.ndarray
    invalid: np.ndarray
    invalid_links: int
    self_links: np.ndarray
    duplicates: np.ndarray


def _read_level0(files: HnswFiles) -> _Level0:
    """One pass over data_level0.bin in bounded chunks, keeping only each element's link words."""
    header = files.header
    count, element, width = header.element_count, header.element_size, header.max_m0
    lengths = np.zeros(count, dtype=np.int32)
    targets = np.empty(count * width, dtype=np.uint32)  # pages are only touched as far as it is filled
    filled, invalid_links = 0, 0
    over, invalid, selfs, dups = [], [], [], []
    columns = np.arange(width)
    step = max(1, CHUNK_BYTES // element)
    buffer = bytearray(step * element)
    note_reading(files.data_path)
    fd = os.open(files.data_path, os.O_RDONLY)
    try:
        for start in range(0, count, step):
            n = min(step, count - start)
            view = memoryview(buffer)[:n * element]
            got = os.preadv(fd, [view], start * element)
            if got < n * element:
                raise CorruptDatabaseError("data_level0_truncated", files.data_path,
                                           f"ended after {start + got // element} elements")
            words = np.frombuffer(buffer, dtype="<u4", count=n * element // 4).reshape(n, element // 4)
            declared = (words[:, 0] & 0xFFFF).astype(np.int64)
            links = words[:, 1:1 + width]
            here = np.arange(start, start + n)
            over.append(here[declared > width])
            used = columns < np.minimum(declared, width)[:, None]
            bad = used & (links >= count)
            invalid.append(here[bad.any(axis=1)])
            invalid_links += int(np.count_nonzero(bad))
            selfs.append(here[(used & (links == here[:, None])).any(axis=1)])
            keyed = np.where(used, links.astype(np.int64), -1 - columns)  # unused slots never collide
            keyed.sort(axis=1)
            dups.append(here[(np.diff(keyed, axis=1) == 0).any(axis=1)])
            good = used & ~bad
            row_lengths = np.count_nonzero(good, axis=1)
            lengths[start:start + n] = row_lengths
            total = int(row_lengths.sum())
            targets[filled:filled + total] = links[good]
            filled += total
    finally:
        os.close(fd)
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return _Level0(lengths, indptr, targets[:filled], np.concatenate(over), np.concatenate(invalid), invalid_links,
                   np.concatenate(selfs), np.concatenate(dups))


def _reachable(graph: _Level0, seeds: np.ndarray) -> np.ndarray:
    """Elements reachable from the seeds over level-0 links, deleted ones included: a breadth-first search
    done a slice of the frontier at a time, so its temporaries stay small on any index."""
    visited = seeds.copy()
    claim = np.zeros(len(seeds), dtype=np.int32)  # deduplicates a frontier without sorting it
    frontier = np.flatnonzero(seeds)
    while len(frontier):
        found = []
        for start in range(0, len(frontier), FRONTIER_SLICE):
            part = frontier[start:start + FRONTIER_SLICE]
            starts, sizes = graph.indptr[part], graph.lengths[part]
            total = int(sizes.sum())
            if not total:
                continue
            offsets = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(total)
            reached = graph.targets[offsets]
            reached = reached[~visited[reached]]
            order = np.arange(len(reached), dtype=np.int32)
            claim[reached] = order
            reached = reached[claim[reached] == order]
            visited[reached] = True
            found.append(reached)
        frontier = np.concatenate(found) if found else frontier[:0]
    return visited


@dataclass
class _Upper:
    """Every element's top level, and the valid upper-level links as (level, source, target) arrays."""

    levels: np.ndarray
    level: np.ndarray
    source: np.ndarray
    target: np.ndarray
    complete: bool  # the whole file parsed: levels and links are all known


def _descent_reach(upper: _Upper, entry: int, top: int) -> np.ndarray:
    """Where a search can arrive at level 0: from the entry point, each level's links followed as far as
    they go, then down. hnswlib's greedy descent lands on one of these; its level-0 walk starts there."""
    reached = np.zeros(len(upper.levels), dtype=bool)
    reached[entry] = True
    for level in range(top, 0, -1):
        at = upper.level == level
        source, target = upper.source[at], upper.target[at]
        while True:
            new = target[reached[source] & ~reached[target]]
            if not len(new):
                break
            reached[new] = True
    return reached


def _entry_point_problem(files: HnswFiles, levels: np.ndarray) -> str | None:
    header = files.header
    entry, top = int(header.enterpoint), int(header.max_level)
    if entry >= header.element_count:
        return f"the entry point {entry} is not one of the index's {header.element_count} elements"
    if int(levels[entry]) != top:
        return (f"the entry point {entry} has {int(levels[entry])} upper levels in {LINK_LISTS_FILE}, the header says "
                f"the top level is {top}: the search would start below the top of the graph")
    return None


def _check_upper_levels(health: IndexHealth, files: HnswFiles, names: _Names) -> _Upper:
    """Parse link_lists.bin (per element: a uint32 byte size, then that many bytes of (maxM + 1)-word levels)
    and check its links; returns every element's top level (0 for most) and the valid links."""
    header, prefix = files.header, f"collection {health.collection!r}: "
    count, width = header.element_count, header.max_m
    path = files.folder / LINK_LISTS_FILE
    levels = np.zeros(count, dtype=np.int32)
    none = np.zeros(0, dtype=np.int64)
    note_reading(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        health.problems.append(f"{prefix}{path}: cannot be read ({exc.strerror or exc})")
        return _Upper(levels, none, none, none, False)
    words = np.frombuffer(raw, dtype="<u4", count=len(raw) // 4)
    entries, layout, complete = _parse_link_lists(words, count, 4 * (width + 1), len(raw))
    if layout:
        health.problems.append(f"{prefix}{path}: {layout}")
    if not len(entries):
        return _Upper(levels, none, none, none, complete)
    element, first_word, entry_levels = entries[:, 0], entries[:, 1], entries[:, 2]
    levels[element] = entry_levels
    too_high = np.flatnonzero(levels > header.max_level)
    if len(too_high):
        health.problems.append(f"{prefix}{path}: {len(too_high)} elements have more upper levels than the header's "
                               f"top level {header.max_level} ({names(too_high)})")
    owner = np.repeat(np.arange(len(entries)), entry_levels)
    nth = np.arange(len(owner)) - np.repeat(np.cumsum(entry_levels) - entry_levels, entry_levels)
    block_start = first_word[owner] + nth * (width + 1)
    block_level = nth + 1
    blocks = words[block_start[:, None] + np.arange(width + 1)]
    declared = (blocks[:, 0] & 0xFFFF).astype(np.int64)
    links = blocks[:, 1:].astype(np.int64)
    used = np.arange(width) < np.minimum(declared, width)[:, None]
    bad = used & (links >= count)
    below = used & ~bad & (levels[np.where(bad | ~used, 0, links)] < block_level[:, None])
    source = element[owner]
    for mask, problem in ((declared > width, f"lists hold more than maxM = {width} links"),
                          (bad.any(axis=1), "lists name elements beyond the index's element count"),
                          (below.any(axis=1), "lists name elements that do not reach that level"),
                          ((used & (links == source[:, None])).any(axis=1), "lists link an element to itself")):
        if mask.any():
            rows = np.unique(source[mask])
            health.problems.append(f"{prefix}{path}: {int(np.count_nonzero(mask))} upper-level {problem} "
                                   f"({names(rows)})")
    good = used & ~bad & ~below
    rows, _ = np.nonzero(good)
    return _Upper(levels, block_level[rows], source[rows], links[good], complete)


def _parse_link_lists(words: np.ndarray, count: int, block: int, size: int) -> tuple[np.ndarray, str | None, bool]:
    """(element, first word, levels) of each element with upper levels, what is wrong with the layout, and
    whether every element's list was read.

    Most elements have none (a single zero word), so the walk jumps from one non-zero size word
    to the next: one Python step per element with upper levels, not per element.
    """
    found: list[tuple[int, int, int]] = []
    nonzero = np.flatnonzero(words)
    position, element, end = 0, 0, len(words)

    def stop(problem: str) -> tuple[np.ndarray, str | None, bool]:
        return np.array(found, dtype=np.int64).reshape(-1, 3), problem, False

    while element < count:
        k = int(nonzero.searchsorted(position))
        zeros = (int(nonzero[k]) if k < len(nonzero) else end) - position  # elements without upper levels
        if element + zeros >= count:
            position += count - element
            break
        element, position = element + zeros, position + zeros
        if position >= end:
            return stop(f"ends after the lists of {element} of the index's {count} elements")
        byte_size = int(words[position])
        if byte_size % block:
            return stop(f"gives element {element} a {byte_size}-byte list, not a whole number of {block}-byte "
                        "levels (the file cannot be parsed past it)")
        if position + 1 + byte_size // 4 > end:
            return stop(f"ends inside the list of element {element} ({byte_size} bytes at byte {4 * position})")
        found.append((element, position + 1, byte_size // block))
        position += 1 + byte_size // 4
        element += 1
    problem = None
    if size % 4:
        problem = f"has {size} bytes, not a whole number of 4-byte words"
    elif position != end:
        problem = (f"holds {4 * (end - position)} bytes after the lists of the index's {count} elements: it does "
                   "not belong to this header")
    return np.array(found, dtype=np.int64).reshape(-1, 3), problem, True
