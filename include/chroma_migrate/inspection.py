"""What a database is, read by the native reader in place, without chromadb and without changing a byte.

`describe_database` is also the gate every command passes first: it refuses a path that
is not a ChromaDB database, a damaged SQLite file, a missing segment folder or pickle of a
flushed index, or a schema with a migration no supported version writes, each with a
message that says what to do.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chroma_migrate import dbfile
from chroma_migrate.errors import MigrationError, NotAChromaDatabaseError, UnsupportedVersionError
from chroma_migrate.native import CorruptDatabaseError, open_database
from chroma_migrate.native.collection import NativeCollectionInfo as CollectionInfo  # what inspect reports
from chroma_migrate.native.sqlite_source import ReadOnlySqlite
from chroma_migrate.verification.accounting import cached_account
from chroma_migrate.versions import (
    ChromaVersion,
    newest_known_signature,
    shipped_versions,
    versions_with_signature,
)


@dataclass
class DatabaseInfo:
    path: str
    size_bytes: int
    signature: dict[str, int]
    written_by: list[str]
    reader_version: str
    collections: list[CollectionInfo]
    tenants: list[str] = field(default_factory=list)
    databases: list[dict[str, str]] = field(default_factory=list)  # {tenant, name, id}, empty ones too

    def collection(self, name: str) -> CollectionInfo:
        for item in self.collections:
            if item.name == name:
                return item
        raise MigrationError(
            f"Collection {name!r} is not in {self.path}.",
            f"Choose from: {', '.join(c.name for c in self.collections) or '(no collections)'}.",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_directory(path: Path) -> None:
    if not path.exists():
        raise NotAChromaDatabaseError(
            f"{path} does not exist.", "Pass the folder you give to chromadb.PersistentClient(path=...)."
        )
    if not path.is_dir() or not (path / dbfile.SQLITE_FILE).is_file():
        raise NotAChromaDatabaseError(
            f"{path} is not a ChromaDB persistent database: it has no {dbfile.SQLITE_FILE}.",
            "Pass the folder you give to chromadb.PersistentClient(path=...), the one holding chroma.sqlite3.",
        )


def reader_for(signature: dict[str, int]) -> ChromaVersion:
    """The oldest supported version that can open this schema (an exact match when one exists)."""
    exact = versions_with_signature(signature)
    if exact:
        return exact[0]
    newest = newest_known_signature()
    too_new = {name: number for name, number in signature.items() if number > newest.get(name, 0)}
    if too_new:
        found = ", ".join(f"{name} migration {number}" for name, number in sorted(too_new.items()))
        raise UnsupportedVersionError(
            f"The database was written by a chromadb newer than any supported version ({found}).",
            "Add a runtime file for that chromadb version under include/chroma_migrate/runtimes/.",
        )
    for version in shipped_versions():
        if all(version.signature.get(name, 0) >= number for name, number in signature.items()):
            return version
    raise UnsupportedVersionError(f"No supported chromadb version can open schema {signature}.")


def _quick_check(path: Path) -> list[str]:
    """The reader's own quick_check on a connection of its own (this runs in a thread)."""
    sql = ReadOnlySqlite(path)
    try:
        return sql.quick_check()
    finally:
        sql.close()


def describe_database(path: Path) -> DatabaseInfo:
    """Facts from the native reader, in place: SQLite read-only, the segment folders checked, nothing written."""
    path = Path(path)
    _check_directory(path)
    with ThreadPoolExecutor(max_workers=1) as beside:
        # Two passes over the file at once (SQLite leaves the GIL while it reads); the account's
        # refusal comes first, as when they ran one after the other.
        checked = beside.submit(_quick_check, path)
        cached_account(path)  # closed world: an unknown table, segment kind or row refuses the run here
    with open_database(path) as db:
        problems = checked.result() if checked.exception() is None else db.sql.quick_check()
        if problems:
            raise CorruptDatabaseError(
                "sqlite_corrupt", db.sql.path, f"is damaged: {'; '.join(problems[:3])}.",
                "Restore the database from a backup or an earlier snapshot; nothing was modified.")
        reader = reader_for(db.format.signature)
        collections = []
        for collection in db.collections():
            collection.check_segment_files()
            collections.append(collection.info)
        tenants, databases = dbfile.tenants_and_databases(db.sql.conn)
        return DatabaseInfo(
            path=str(path), size_bytes=dbfile.size_on_disk(path), signature=db.format.signature,
            written_by=list(db.format.written_by), reader_version=reader.version, collections=collections,
            tenants=tenants, databases=databases,
        )
