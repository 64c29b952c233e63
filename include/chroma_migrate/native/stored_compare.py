"""Whether two databases store the same metadata rows for an id range, decided inside SQLite.

Verification's fast path. Decoding a record costs about ten Python objects per record (one
per metadata row); asking SQLite instead keeps every row in C: the target is attached
read-only to a read-only connection on the source. Each side holds at most one row per
(id, key) (both tables' unique keys, checked when attaching), so the source's rows joined
to the target's on (id, key) with every value column `IS` equal and of the same storage
class (`typeof`: an int that became a float, or a number that became a string, is a
difference) match as many rows as each side holds exactly when the two sides hold the same
rows. 1.5's list elements have no such key; they are compared with `EXCEPT`, each element
numbered by its position. Before any of that, when both tables (with their indexes) are
stored byte for byte alike (page_identity.py: the usual upgrade, whose open leaves them
untouched) and the range's segment is the same, their rows are equal without a join. Any
difference sends the range to the record-by-record comparison, which names the records
and fields.
"""

from __future__ import annotations

import sqlite3
from functools import cached_property
from pathlib import Path

from chroma_migrate.native.page_identity import same_table_pages
from chroma_migrate.native.sqlite_source import SQLITE_FILE, ReadOnlySqlite
from chroma_migrate.native.stored_records import ARRAY_TABLE, id_range_clause

_VALUES = ("m.string_value, m.int_value, m.float_value, m.bool_value, typeof(m.string_value), "
           "typeof(m.int_value), typeof(m.float_value), typeof(m.bool_value)")


def _elements(schema: str, clause: str) -> str:
    # Told apart by their position (insertion order) within the list, not by their row ids.
    return (f"SELECT e.embedding_id, m.key, {_VALUES}, row_number() OVER (PARTITION BY m.id, m.key ORDER BY m.rowid) "
            f"FROM {schema}.embeddings e JOIN {schema}.{ARRAY_TABLE} m ON m.id = e.id WHERE e.segment_id = ?{clause}")


_SAME_VALUES = " AND ".join(f"m.{c} IS n.{c} AND typeof(m.{c}) = typeof(n.{c})"
                           for c in ("string_value", "int_value", "float_value", "bool_value"))
_UNIQUE_KEYS = (("embeddings", ("segment_id", "embedding_id")), ("embedding_metadata", ("id", "key")))


class StoredRowsComparer:
    """One read-only connection on the source database with the target attached (read-only too)."""

    def __init__(self, source_db: Path, target_db: Path, pages_alike: bool | None = None) -> None:
        """`pages_alike`: the answer of an earlier comparer on the same two files, to skip proving it again."""
        self.sql = ReadOnlySqlite(Path(source_db))
        target_file = (Path(target_db) / SQLITE_FILE).resolve()
        try:
            self.sql.conn.execute("ATTACH DATABASE ? AS target", (f"file:{target_file}?mode=ro",))
        except sqlite3.DatabaseError:
            self.sql.close()
            raise
        self.usable = all(self._unique(schema, table, columns)
                          for schema in ("main", "target") for table, columns in _UNIQUE_KEYS)
        self._target_file = target_file
        if pages_alike is not None:
            self.__dict__["pages_alike"] = pages_alike
        self._arrays = {schema: bool(self.sql.rows(
            f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (ARRAY_TABLE,)))
            for schema in ("main", "target")}

    @cached_property
    def pages_alike(self) -> bool:
        """Both tables a range's rows come from are stored alike (the usual upgrade): no row needs comparing."""
        return self.usable and all(same_table_pages(self.sql.conn, table, self.sql.path, self._target_file)
                                   for table, _ in _UNIQUE_KEYS)

    def __enter__(self) -> StoredRowsComparer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sql.close()

    def _unique(self, schema: str, table: str, columns: tuple[str, ...]) -> bool:
        """Whether `table` has a unique index on exactly these columns (chromadb's schema always has)."""
        for _seq, index, unique, *_rest in self.sql.rows(f"PRAGMA {schema}.index_list({table})"):
            if unique and tuple(row[2] for row in self.sql.rows(f"PRAGMA {schema}.index_info({index!r})")) == columns:
                return True
        return False

    def same_rows(self, source_segment: str, target_segment: str, low: str | None, high: str | None) -> bool:
        """True when both METADATA segments store exactly the same typed rows for ids in [low, high)."""
        if not self.usable:
            return False
        clause, params = id_range_clause(low, high)
        if not (self.pages_alike and source_segment == target_segment) and not self._same_scalar_rows(
                source_segment, target_segment, clause, params):
            return False
        present = [schema for schema, has in self._arrays.items() if has]
        if len(present) == 2:
            return self._same_lists(source_segment, target_segment, clause, params)
        # One side cannot hold lists: the other must hold none in this range either.
        return all(not self._count(schema, ARRAY_TABLE, segment, clause, params)
                   for schema, segment in (("main", source_segment), ("target", target_segment))
                   if schema in present)

    def _same_scalar_rows(self, source_segment: str, target_segment: str, clause: str, params: list[str]) -> bool:
        count = self._count("main", "embedding_metadata", source_segment, clause, params)
        if count != self._count("target", "embedding_metadata", target_segment, clause, params):
            return False
        matching = self.sql.rows(
            "SELECT count(*) FROM main.embeddings e JOIN main.embedding_metadata m ON m.id = e.id "
            "JOIN target.embeddings f ON f.segment_id = ? AND f.embedding_id = e.embedding_id "
            f"JOIN target.embedding_metadata n ON n.id = f.id AND n.key = m.key "
            f"WHERE e.segment_id = ?{clause} AND {_SAME_VALUES}", [target_segment, source_segment, *params])[0][0]
        return matching == count

    def _count(self, schema: str, table: str, segment: str, clause: str, params: list[str]) -> int:
        return self.sql.rows(f"SELECT count(*) FROM {schema}.embeddings e JOIN {schema}.{table} m ON m.id = e.id "
                             f"WHERE e.segment_id = ?{clause}", [segment, *params])[0][0]

    def _same_lists(self, source_segment: str, target_segment: str, clause: str, params: list[str]) -> bool:
        """List elements, numbered by position within their (id, key), are unique: equal counts and an
        empty EXCEPT mean the same elements in the same order."""
        if (self._count("main", ARRAY_TABLE, source_segment, clause, params)
                != self._count("target", ARRAY_TABLE, target_segment, clause, params)):
            return False
        only_source = self.sql.rows(
            f"SELECT count(*) FROM ({_elements('main', clause)} EXCEPT {_elements('target', clause)})",
            [source_segment, *params, target_segment, *params])[0][0]
        return only_source == 0
