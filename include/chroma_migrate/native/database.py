"""`open_database`: a ChromaDB persistent folder read with the standard library and numpy only.

No chromadb, no child process, no copy: SQLite is opened read-only, every other file is
only ever opened for reading, so a live working copy can be read in place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chroma_migrate import dbfile
from chroma_migrate.exchange import RecordBatch
from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.errors import CorruptDatabaseError, NativeReadError
from chroma_migrate.native.formats import DatabaseFormat, detect_format
from chroma_migrate.native.sqlite_source import SQLITE_FILE, ReadOnlySqlite
from chroma_migrate.native.values import typed_value
from chroma_migrate.native.write_log import decode_watermark

NOT_A_DATABASE_FIX = "Pass the folder you give to chromadb.PersistentClient(path=...), the one holding chroma.sqlite3."


class NativeDatabase:
    """A persistent ChromaDB database of any supported version, read without chromadb."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir() or not (self.path / SQLITE_FILE).is_file():
            what = "does not exist" if not self.path.exists() else f"has no {SQLITE_FILE}"
            raise NativeReadError("not_a_database", self.path, f"{what}, so it is not a ChromaDB persistent "
                                                               "database", NOT_A_DATABASE_FIX)
        self.sql = ReadOnlySqlite(self.path)
        try:
            self.format: DatabaseFormat = detect_format(self.sql.conn, self.sql.path)
            watermarks = _watermarks(self.sql)
            segment_metadata = self._segment_metadata()
            try:
                facts = dbfile.collections(self.sql.conn)
            except sqlite3.DatabaseError as exc:
                raise CorruptDatabaseError("sqlite_corrupt", self.sql.path, f"cannot be read ({exc})") from exc
            for item in facts:
                _check_collection_home(item, self.sql.path)
            self._collections = {item.name: NativeCollection(self.sql, self.path, self.format, item, watermarks,
                                                             segment_metadata) for item in facts}
        except BaseException:
            self.sql.close()
            raise

    def _segment_metadata(self) -> dict[str, dict[str, Any]]:
        names = [c for c in ("str_value", "int_value", "float_value", "bool_value")
                 if c in {row[1] for row in self.sql.rows("PRAGMA table_info(segment_metadata)")}]
        found: dict[str, dict[str, Any]] = {}
        for segment, key, *values in self.sql.rows(f"SELECT segment_id, key, {', '.join(names)} FROM segment_metadata"):
            padded = dict(zip(names, values, strict=True))
            found.setdefault(segment, {})[key] = typed_value(
                padded.get("str_value"), padded.get("int_value"), padded.get("float_value"), padded.get("bool_value"))
        return found

    def collections(self) -> list[NativeCollection]:
        return list(self._collections.values())

    def collection(self, name: str) -> NativeCollection:
        try:
            return self._collections[name]
        except KeyError:
            raise NativeReadError("unknown_collection", self.path, f"has no collection {name!r}",
                                  f"Choose from: {', '.join(self._collections) or '(no collections)'}.") from None

    def iter_batches(self, name: str, batch_size: int) -> Iterator[RecordBatch]:
        return self.collection(name).iter_batches(batch_size)

    def close(self) -> None:
        self.sql.close()

    def __enter__(self) -> NativeDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _check_collection_home(item: dbfile.CollectionFacts, sqlite_path: Path) -> None:
    """Every collection must sit in a database of a tenant, under names the engine can qualify."""
    if not item.tenant or not item.database:
        raise CorruptDatabaseError(
            "orphan_collection", sqlite_path,
            f"collection {item.bare_name!r} (id {item.id}) belongs to no database in the `databases` table",
            "Restore the database from a backup; chromadb itself cannot open that collection either.")
    if "/" in item.tenant or "/" in item.database:
        raise NativeReadError(
            "unsupported_name", sqlite_path,
            f"tenant {item.tenant!r} / database {item.database!r} holds a '/', which the engine uses to write "
            f"qualified collection names (tenant/database/name)",
            "Rename the tenant or database in the source with chromadb, or ask for support of such names.")


MAX_SEQ_ID = 2**63 - 1  # SQLite's INTEGER: a larger watermark cannot be compared with the log's seq ids


def _watermarks(sql: ReadOnlySqlite) -> dict[str, int]:
    """Each segment's max_seq_id row, decoded; a value no chromadb writes is a damaged row."""
    found = {}
    for segment, raw in sql.rows("SELECT segment_id, seq_id FROM max_seq_id"):
        try:
            value = decode_watermark(raw)
        except (TypeError, ValueError):
            value = -1
        if not isinstance(segment, str) or not 0 <= value <= MAX_SEQ_ID:
            raise CorruptDatabaseError("bad_watermark", sql.path, f"holds the max_seq_id row {raw!r:.60} for "
                                                                  f"segment {segment!r:.60}: not a write-log position")
        found[segment] = value
    return found


def open_database(path: Path | str) -> NativeDatabase:
    return NativeDatabase(Path(path))
