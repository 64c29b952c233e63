"""Vectors proven equal without reading the target's: the same vector segment, byte for byte.

An upgrade leaves the HNSW files of a compacted segment as they were (issue 16 counted 10 to 48
such files per upgraded database). The native reader's `vectors_for(ids)` is a function of the
segment's folder (the .bin files and the id map pickle), the collection's write-log rows and the
segment's spec (id, watermark, dimension, space, batch size) and format family. When all of these
are equal on both sides, the target returns the source's vectors for the same ids, so the
comparison reads the source's vectors only (its digest and the exact recall neighbours need them)
and, of the target, its ids and stored rows. A folder that differs in one byte, a write-log row
that differs, or a log too long to compare cheaply sends the collection down the ordinary path,
which reads both sides.
"""

from __future__ import annotations

from pathlib import Path

from chroma_migrate.native import NativeCollection

CHUNK = 4 * 2**20
MAX_LOG_ROWS = 10_000  # a longer log (0.4.x never purges it) is compared the ordinary way
LOG_ROWS = ("SELECT seq_id, operation, id, vector, encoding, metadata FROM embeddings_queue "
            "WHERE topic LIKE ? ORDER BY seq_id")


def same_bytes(left: Path, right: Path) -> bool:
    """Two files with the same size and bytes (read in 4 MiB chunks; stops at the first difference)."""
    if left.stat().st_size != right.stat().st_size:
        return False
    with open(left, "rb") as a, open(right, "rb") as b:
        while chunk := a.read(CHUNK):
            if chunk != b.read(CHUNK):
                return False
    return True


def same_folder(left: Path, right: Path) -> bool:
    """The same regular files (by name) with the same bytes, nothing else in either folder."""
    if not left.is_dir() or not right.is_dir():
        return False
    names = sorted(p.name for p in left.iterdir())
    if names != sorted(p.name for p in right.iterdir()):
        return False
    return all((left / n).is_file() and (right / n).is_file() and not (left / n).is_symlink()
               and not (right / n).is_symlink() and same_bytes(left / n, right / n) for n in names)


def _log_rows(collection: NativeCollection) -> list[tuple] | None:
    sql, pattern = collection._sql, f"%/{collection.id}"
    count = sql.rows("SELECT COUNT(*) FROM embeddings_queue WHERE topic LIKE ?", [pattern])[0][0]
    return None if count > MAX_LOG_ROWS else [tuple(row) for row in sql.rows(LOG_ROWS, [pattern])]


def vectors_proven_alike(source: NativeCollection, target: NativeCollection, source_db: Path,
                         target_db: Path) -> bool:
    """Whether the target's vectors are the source's for every id, by the files and rows they come from."""
    spec = source._vector_spec()
    if not spec.segment_id or spec != target._vector_spec() or source._format.family != target._format.family:
        return False
    if not same_folder(Path(source_db) / spec.segment_id, Path(target_db) / spec.segment_id):
        return False
    rows = _log_rows(source)
    return rows is not None and rows == _log_rows(target)
