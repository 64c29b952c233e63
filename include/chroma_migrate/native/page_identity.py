"""Whether a table is stored byte for byte alike in two SQLite files: the cheapest proof its rows are equal.

An upgrade copies the files and lets the target version open the copy; its migrations
leave most tables' pages untouched. A b-tree's content is a function of the pages
reachable from its root, and SQLite's `dbstat` table lists exactly those (interior, leaf
and overflow pages, by path). With the same page layout and text encoding, the same
definitions of the table and of every index on it, and for each of those b-trees the same
(path, page number) list with the same bytes in every listed page, both files hold the
same rows and find them through the same indexes. Anything else answers False, and the
caller compares the rows themselves.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path

# File header fields that change how a page's bytes decode: page size, format versions,
# reserved bytes per page (offsets 16-21) and the text encoding (56-59).
LAYOUT_FIELDS = (slice(16, 22), slice(56, 60))


def _definitions(conn: sqlite3.Connection, schema: str, table: str) -> list[tuple]:
    return conn.execute(f"SELECT type, name, sql FROM {schema}.sqlite_master WHERE tbl_name = ? ORDER BY name",
                        (table,)).fetchall()


def _pages(conn: sqlite3.Connection, schema: str, table: str) -> sqlite3.Cursor:
    return conn.cursor().execute(
        "SELECT name, path, pageno FROM dbstat(?) WHERE name IN "
        f"(SELECT name FROM {schema}.sqlite_master WHERE tbl_name = ?) ORDER BY name, path", (schema, table))


def _at_rest(file: Path, header: bytes) -> bool:
    """Rollback-journal mode (format versions 1, 1) and no journal or WAL beside it: every page SQLite
    reads is the page in the file. (A WAL's newer pages would not be.)"""
    return (len(header) == 100 and header[18] == header[19] == 1
            and not any(Path(f"{file}{suffix}").exists() for suffix in ("-journal", "-wal")))


def same_table_pages(conn: sqlite3.Connection, table: str, source_file: Path, target_file: Path) -> bool:
    """`conn` has the source as `main` and the target attached as `target`."""
    definitions = _definitions(conn, "main", table)
    if not definitions or definitions != _definitions(conn, "target", table):
        return False
    page_size = conn.execute("PRAGMA main.page_size").fetchone()[0]
    with open(source_file, "rb") as source, open(target_file, "rb") as target:
        headers = source.read(100), target.read(100)
        if not (_at_rest(source_file, headers[0]) and _at_rest(target_file, headers[1])) or any(
                headers[0][field] != headers[1][field] for field in LAYOUT_FIELDS):
            return False
        try:
            listed = itertools.zip_longest(_pages(conn, "main", table), _pages(conn, "target", table))
            for mine, theirs in listed:  # streamed: memory stays at two pages
                if mine != theirs:
                    return False
                offset = (mine[2] - 1) * page_size
                if os.pread(source.fileno(), page_size, offset) != os.pread(target.fileno(), page_size, offset):
                    return False
        except sqlite3.OperationalError:  # an SQLite built without dbstat: no shortcut
            return False
    return True
