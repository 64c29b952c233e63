"""`link_lists.bin` read strictly for the graph walk: every size, level and link checked before use.

Per element hnswlib writes a uint32 byte size, then that many bytes of upper levels, each
`maxM + 1` words (a link count, then `maxM` slots). A damaged size word used to send the walk
past the end of the buffer (`ValueError: buffer is smaller than requested size`); now the
first thing that does not fit the header or the file is refused, naming the element.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.hnsw_files import HnswHeader
from chroma_migrate.native.reading import note_reading

LINK_LISTS_FILE = "link_lists.bin"


def read_upper_links(path: Path, header: HnswHeader) -> dict[int, list[np.ndarray]]:
    """element -> its neighbour lists of levels 1..; raises `link_lists_corrupt` for anything inconsistent.

    A missing file is an index without upper levels (an index whose top level is 0 needs none).
    """
    count, width, top = header.element_count, header.max_m, header.max_level
    note_reading(path)
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        raise CorruptDatabaseError("link_lists_corrupt", path, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        if top > 0 and count:
            raise _refused(path, f"is empty, but header.bin says the graph has {top} upper levels")
        return {}
    if len(data) % 4:
        raise _refused(path, f"has {len(data)} bytes, not a whole number of 4-byte words")
    words = np.frombuffer(data, dtype="<u4")
    block = width + 1  # words per level
    nonzero = np.flatnonzero(words)
    links: dict[int, list[np.ndarray]] = {}
    position, element, end = 0, 0, len(words)
    while element < count:  # one step per element with upper levels; runs of zero words are skipped at once
        k = int(nonzero.searchsorted(position))
        zeros = (int(nonzero[k]) if k < len(nonzero) else end) - position
        if element + zeros >= count:
            position += count - element
            element = count
            break
        element, position = element + zeros, position + zeros
        if position >= end:
            break
        size = int(words[position])
        if size % (4 * block) or size // (4 * block) > max(top, 0):
            raise _refused(path, f"gives element {element} a {size}-byte list: not a whole number of levels of "
                                 f"{4 * block} bytes, or more than the {top} upper levels of the header")
        levels = size // (4 * block)
        if position + 1 + levels * block > end:
            raise _refused(path, f"ends inside the list of element {element} (byte {4 * position})")
        lists = []
        for level in range(levels):
            start = position + 1 + level * block
            n = int(words[start] & 0xFFFF)
            neighbours = words[start + 1:start + 1 + min(n, width)].astype(np.int64)
            if n > width or (len(neighbours) and int(neighbours.max()) >= count):
                raise _refused(path, f"gives element {element} at level {level + 1} {n} links, or links beyond "
                                     f"the {count} elements (maxM is {width})")
            lists.append(neighbours)
        links[element] = lists
        position += 1 + levels * block
        element += 1
    if element < count:
        raise _refused(path, f"ends after the lists of {element} of the index's {count} elements")
    return links


def _refused(path: Path, problem: str) -> CorruptDatabaseError:
    return CorruptDatabaseError("link_lists_corrupt", path, problem)
