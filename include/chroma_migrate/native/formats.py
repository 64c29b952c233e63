"""Which on-disk format a database is in, told by its `migrations` rows, and nothing guessed.

Every supported chromadb writes a prefix of the migrations its runtime file names
(versions.known_migrations), with the same file names and hashes. A row outside that table
means a chromadb the reader does not know wrote the file, so it is refused with what was found.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chroma_migrate.native.errors import CorruptDatabaseError, UnsupportedFormatError
from chroma_migrate.versions import known_migrations, supported_range, versions_with_signature

# The write-path families whose replay rules differ (see replay.py).
FAMILY_04 = "0.4"  # vector watermark in the pickle; a batch is applied after batch_size distinct changes
FAMILY_05 = "0.5"  # 0.5 and 0.6: watermarks in max_seq_id (8-byte BLOB); batch_size log rows per batch
FAMILY_RUST = "1.x"  # Rust core: INTEGER watermarks, every replayed row goes into the index

UNKNOWN_FIX = ("Read it with the chromadb version that wrote it, or add that version: a runtime file under "
               "include/chroma_migrate/runtimes/ whose header names its migrations.")


@dataclass(frozen=True)
class DatabaseFormat:
    """The schema a database is in and the supported versions that write exactly it."""

    signature: dict[str, int]
    family: str
    written_by: tuple[str, ...]

    @property
    def is_rust_core(self) -> bool:
        return self.family == FAMILY_RUST


def family_of(signature: dict[str, int]) -> str:
    if signature.get("metadb", 0) >= 5:
        return FAMILY_RUST
    if signature.get("sysdb", 0) >= 5:
        return FAMILY_05
    return FAMILY_04


def detect_format(conn: sqlite3.Connection, sqlite_path: Path) -> DatabaseFormat:
    """Refuse any migration row the reader does not know, naming it; otherwise say which format this is."""
    try:
        rows = conn.execute("SELECT dir, version, filename, hash FROM migrations ORDER BY dir, version").fetchall()
    except sqlite3.OperationalError as exc:
        if "malformed" in str(exc) or "not a database" in str(exc):
            raise _damaged(sqlite_path, exc) from exc
        raise UnsupportedFormatError(
            "unknown_migration", sqlite_path, f"has no readable `migrations` table ({exc}), so it is not a "
            "ChromaDB database of any known version", "Pass the folder chromadb.PersistentClient(path=...) uses.",
        ) from exc
    except sqlite3.DatabaseError as exc:  # a damaged page, not a foreign schema
        raise _damaged(sqlite_path, exc) from exc
    signature: dict[str, int] = {}
    for directory, version, filename, digest in rows:
        if type(version) is not int:  # SQLite keeps any type in any column; chromadb writes integers
            raise UnsupportedFormatError("unknown_migration", sqlite_path, f"holds a {directory!r:.40} migration "
                                         f"numbered {version!r:.40}, which no chromadb writes", UNKNOWN_FIX)
        known = known_migrations().get((directory, int(version)))
        if known is None or known != (filename, digest):
            what = "is not one" if known is None else f"differs from the one ({known[0]}, {known[1]})"
            raise UnsupportedFormatError(
                "unknown_migration", sqlite_path,
                f"holds {directory} migration {version} ({filename}, hash {digest}), which {what} any supported "
                f"chromadb version ({supported_range()}) writes: a newer or unknown chromadb wrote this database",
                UNKNOWN_FIX,
            )
        signature[directory] = max(signature.get(directory, 0), int(version))
    present = {(directory, int(version)) for directory, version, _filename, _digest in rows}
    for directory, newest in signature.items():
        missing = [n for n in range(1, newest + 1) if (directory, n) not in present]
        if missing:
            raise UnsupportedFormatError(
                "unknown_migration", sqlite_path,
                f"has {directory} migration {newest} but not {', '.join(map(str, missing))}: no chromadb writes "
                "a schema history with gaps", UNKNOWN_FIX,
            )
    written_by = tuple(v.version for v in versions_with_signature(signature))
    return DatabaseFormat(signature, family_of(signature), written_by)


def _damaged(sqlite_path: Path, exc: sqlite3.DatabaseError) -> CorruptDatabaseError:
    return CorruptDatabaseError("sqlite_corrupt", sqlite_path, f"cannot be read as SQLite ({exc}); the file is "
                                                               "truncated or a page is corrupt")
