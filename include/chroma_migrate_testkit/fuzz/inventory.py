"""What a seed database offers to damage: its files by role, SQLite pages, log rows, pickle opcodes.

Mutations name files by collection and role (`words/link_lists.bin`), never by segment
uuid, so a committed case applies to any build of the same seed spec; the inventory is read
once per seed, from the undamaged copy, with SQLite opened read-only.
"""

from __future__ import annotations

import pickletools
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chroma_migrate.native.hnsw_files import HEADER_LAYOUT

SQLITE = "chroma.sqlite3"
LOG = "embeddings_queue"  # the write log's rows, damaged through SQLite
INDEX_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle")
HEADER_FIELDS = ("version", "offset_level0", "max_elements", "element_count", "element_size", "label_offset",
                 "data_offset", "max_level", "enterpoint", "max_m", "max_m0", "m", "mult", "ef_construction")


@dataclass
class SegmentFacts:
    collection: str
    folder: str  # segment uuid, the folder name in this build
    sizes: dict[str, int]
    header: tuple
    pickle_ops: list[tuple[int, str, int]]  # (byte offset, opcode name, argument bytes)
    link_words: list[int]  # word positions of non-zero size words in link_lists.bin


@dataclass
class Inventory:
    version: str
    sqlite_size: int
    page_size: int
    pages: int
    root_pages: dict[str, int]
    vector_rows: list[int]  # seq ids of log rows with a vector
    metadata_rows: list[int]  # seq ids of log rows with metadata
    segments: dict[str, SegmentFacts] = field(default_factory=dict)  # by collection name

    def targets(self) -> list[str]:
        found = [SQLITE]
        if self.vector_rows or self.metadata_rows:
            found.append(LOG)
        for name, facts in sorted(self.segments.items()):
            found += [f"{name}/{role}" for role in INDEX_FILES if role in facts.sizes]
        return found


def vector_folders(db: Path) -> dict[str, str]:
    """collection name -> VECTOR segment folder, for collections whose index was flushed (it has a pickle)."""
    with sqlite3.connect(f"file:{Path(db, SQLITE).resolve()}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT c.name, s.id FROM segments s JOIN collections c ON c.id = s.collection "
                            "WHERE s.scope = 'VECTOR' ORDER BY c.name").fetchall()
    conn.close()
    return {name: segment for name, segment in rows if (Path(db) / segment / "index_metadata.pickle").is_file()}


def take_inventory(db: Path, version: str) -> Inventory:
    db = Path(db)
    conn = sqlite3.connect(f"file:{(db / SQLITE).resolve()}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        roots = {name: root for name, root in conn.execute(
            "SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0")}
        vector_rows = [r[0] for r in conn.execute("SELECT seq_id FROM embeddings_queue WHERE vector IS NOT NULL")]
        metadata_rows = [r[0] for r in conn.execute(
            "SELECT seq_id FROM embeddings_queue WHERE metadata IS NOT NULL AND metadata != '{}'")]
    finally:
        conn.close()
    inventory = Inventory(version, (db / SQLITE).stat().st_size, page_size, pages, roots, vector_rows, metadata_rows)
    for name, segment in vector_folders(db).items():
        folder = db / segment
        sizes = {role: (folder / role).stat().st_size for role in INDEX_FILES if (folder / role).is_file()}
        header = HEADER_LAYOUT.unpack_from((folder / "header.bin").read_bytes())
        ops = [(position, op.name, _arg_bytes(op, arg, position, next_pos))
               for (op, arg, position), next_pos in _with_next(folder / "index_metadata.pickle")]
        words = np.frombuffer((folder / "link_lists.bin").read_bytes(), dtype="<u4") if sizes.get(
            "link_lists.bin", 0) % 4 == 0 else np.zeros(0, dtype="<u4")
        inventory.segments[name] = SegmentFacts(name, segment, sizes, header, ops,
                                                [int(w) for w in np.flatnonzero(words)[:2000]])
    return inventory


def _with_next(path: Path):
    data = path.read_bytes()
    ops = list(pickletools.genops(data))
    for i, item in enumerate(ops):
        yield item, (ops[i + 1][2] if i + 1 < len(ops) else len(data))


def _arg_bytes(op: pickletools.OpcodeInfo, _arg: object, position: int, next_position: int) -> int:
    return next_position - position - 1
