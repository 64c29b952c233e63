"""Which on-disk format a database is in, told by its `migrations` rows, and nothing guessed.

Every supported chromadb (0.4.24 – 1.5.9) writes a prefix of the migrations below, with
the same file names and hashes. A row outside this table means a chromadb the reader
does not know wrote the file, so it is refused with what was found.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from chroma_migrate.native.errors import UnsupportedFormatError
from chroma_migrate.versions import versions_with_signature

# (dir, version) -> (filename, md5 of the SQL): read from databases written by each supported version.
KNOWN_MIGRATIONS: dict[tuple[str, int], tuple[str, str]] = {
    ("embeddings_queue", 1): ("00001-embeddings.sqlite.sql", "d3755dfd232be8e8301f4d7fcfb3a486"),
    ("embeddings_queue", 2): ("00002-embeddings-queue-config.sqlite.sql", "8fbfe4ffb3e57f1d8bfdc58510a82e85"),
    ("metadb", 1): ("00001-embedding-metadata.sqlite.sql", "2b4cf52c4bb2676e21d6860a4409f856"),
    ("metadb", 2): ("00002-embedding-metadata.sqlite.sql", "12a570f7121b3a8ce750a2a7c36da20f"),
    ("metadb", 3): ("00003-full-text-tokenize.sqlite.sql", "f97ad6334aeaa8f419f01110b648b97a"),
    ("metadb", 4): ("00004-metadata-indices.sqlite.sql", "fb36603a45ee2cd0254cef3ef86585e8"),
    ("metadb", 5): ("00005-max-seq-id-int.sqlite.sql", "0e9de46758761b373ce682925edcc326"),
    ("metadb", 6): ("00006-metadata-array-support.sqlite.sql", "e026f01ea92c1baa1493f4ad5ca7cfe7"),
    ("sysdb", 1): ("00001-collections.sqlite.sql", "38352d725ad1c16074fac420b22b4633"),
    ("sysdb", 2): ("00002-segments.sqlite.sql", "2913cb6a503055a95f625448037e8912"),
    ("sysdb", 3): ("00003-collection-dimension.sqlite.sql", "42d22d0574d31d419c2a0e7f625c93aa"),
    ("sysdb", 4): ("00004-tenants-databases.sqlite.sql", "048867ce8fcdefe4023c7110e4433591"),
    ("sysdb", 5): ("00005-remove-topic.sqlite.sql", "b1367c826b8fba5f96f27befdc1d42d2"),
    ("sysdb", 6): ("00006-collection-segment-metadata.sqlite.sql", "4eea7468935bf25d4604a0fed2366116"),
    ("sysdb", 7): ("00007-collection-config.sqlite.sql", "1c7e63bba346a42a18b6ab7f1c989bed"),
    ("sysdb", 8): ("00008-maintenance-log.sqlite.sql", "0a0e7e93111a01789addf64961c6127c"),
    ("sysdb", 9): ("00009-segment-collection-not-null.sqlite.sql", "054355aef9e63702bf54ea29e61563f1"),
    ("sysdb", 10): ("00010-collection-schema.sqlite.sql", "5c3a5ac4b79df76799b4721827ed5e1d"),
}

# The write-path families whose replay rules differ (see replay.py).
FAMILY_04 = "0.4"  # vector watermark in the pickle; a batch is applied after batch_size distinct changes
FAMILY_05 = "0.5"  # 0.5 and 0.6: watermarks in max_seq_id (8-byte BLOB); batch_size log rows per batch
FAMILY_RUST = "1.x"  # Rust core: INTEGER watermarks, every replayed row goes into the index

UNKNOWN_FIX = ("Read it with the chromadb version that wrote it, or add that version: a runtime file under "
               "include/chroma_migrate/runtimes/ and its migrations in chroma_migrate/native/formats.py.")


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
        raise UnsupportedFormatError(
            "unknown_migration", sqlite_path, f"has no readable `migrations` table ({exc}), so it is not a "
            "ChromaDB database of any known version", "Pass the folder chromadb.PersistentClient(path=...) uses.",
        ) from exc
    signature: dict[str, int] = {}
    for directory, version, filename, digest in rows:
        known = KNOWN_MIGRATIONS.get((directory, int(version)))
        if known is None or known != (filename, digest):
            what = "is not one" if known is None else f"differs from the one ({known[0]}, {known[1]})"
            raise UnsupportedFormatError(
                "unknown_migration", sqlite_path,
                f"holds {directory} migration {version} ({filename}, hash {digest}), which {what} any supported "
                f"chromadb version (0.4.24 to 1.5.9) writes: a newer or unknown chromadb wrote this database",
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
