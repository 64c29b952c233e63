"""`chroma.sqlite3` opened strictly read-only; a damaged page becomes an error naming the file.

`mode=ro` never writes: chromadb uses SQLite's rollback journal, so a reader needs no
`-wal`/`-shm` files and leaves the folder exactly as it found it, even a live working copy.

A copy taken while a writer was mid-transaction carries a hot `chroma.sqlite3-journal`: the
database file then holds some pages of an unfinished transaction, and only a rollback (a
write) makes it consistent. That copy is refused with its own kind, `hot_journal`. A journal
that is empty or whose header is zeroed (what SQLite leaves after a commit in the TRUNCATE and
PERSIST journal modes) is not hot: SQLite ignores it, and so is the copy read as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.reading import note_reading

SQLITE_FILE = "chroma.sqlite3"
JOURNAL_SUFFIX = "-journal"
JOURNAL_HEADER_BYTES = 28  # magic, record count, nonce, page count, sector and page sizes
# SQLite >= 3.32 allows 32766 host parameters; stay far below for any build.
MAX_PARAMETERS = 900


class ReadOnlySqlite:
    """One read-only connection; every query error says which file failed and why."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path) / SQLITE_FILE
        note_reading(self.path)
        if not self.path.is_file():
            raise CorruptDatabaseError("sqlite_corrupt", self.path, "does not exist",
                                       "Pass the folder chromadb.PersistentClient(path=...) uses.")
        refuse_hot_journal(self.path)
        try:
            # check_same_thread=False: a batch generator may be consumed on another thread.
            self.conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: sqlite3.DatabaseError) -> CorruptDatabaseError:
        refuse_hot_journal(self.path)  # a journal that appeared since: a writer is at work on this very file
        return CorruptDatabaseError(
            "sqlite_corrupt", self.path, f"cannot be read as SQLite ({exc}); the file is truncated or a page "
            "is corrupt", "Check that the copy is complete, or restore the database from a backup; "
            "nothing was modified.",
        )

    @contextmanager
    def reading(self) -> Iterator[None]:
        """For hot loops that iterate `self.conn` directly: a failing page still names the file."""
        note_reading(self.path)
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        note_reading(self.path)
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def stream(self, sql: str, params: Sequence[Any] = (), chunk: int = 4096) -> Iterator[tuple]:
        """Rows in chunks, so a large result never sits in memory at once."""
        note_reading(self.path)
        try:
            cursor = self.conn.execute(sql, params)
            while rows := cursor.fetchmany(chunk):
                yield from rows
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def rows_for_keys(self, sql_with_in: str, keys: Sequence[Any], prefix: Sequence[Any] = ()) -> list[tuple]:
        """`sql_with_in` holds one `{keys}` placeholder for an IN list; keys go in chunks under the parameter limit."""
        found: list[tuple] = []
        for start in range(0, len(keys), MAX_PARAMETERS):
            part = list(keys[start:start + MAX_PARAMETERS])
            found += self.rows(sql_with_in.format(keys=",".join("?" * len(part))), [*prefix, *part])
        return found

    def tables(self) -> set[str]:
        return {row[0] for row in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def quick_check(self) -> list[str]:
        problems = [row[0] for row in self.rows("PRAGMA quick_check")]
        return [] if problems == ["ok"] else problems

    def close(self) -> None:
        self.conn.close()


def refuse_hot_journal(sqlite_path: Path) -> None:
    """Raise `hot_journal` when a journal beside the database holds an unfinished transaction."""
    journal = Path(f"{sqlite_path}{JOURNAL_SUFFIX}")
    try:
        with open(journal, "rb") as handle:
            header = handle.read(JOURNAL_HEADER_BYTES)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CorruptDatabaseError("hot_journal", journal, f"cannot be read ({exc.strerror or exc})") from exc
    if not header.strip(b"\0"):
        return  # empty or zeroed: no transaction to roll back, SQLite reads the file as it is
    raise CorruptDatabaseError(
        "hot_journal", journal,
        "holds an unfinished transaction: the folder was copied while a chromadb process was writing, so "
        f"{SQLITE_FILE} holds pages of a half-done write that only a rollback would undo, and this reader never "
        "writes",
        "Copy the database again while nothing writes to it (the compactor holds its lock while it writes), or "
        "let the chromadb version that wrote it open a copy once (it rolls the journal back); nothing was modified.")
