"""Records as the METADATA segment stores them: ids, metadata rows, 1.5 list rows, by id range.

Ranges are `low <= id < high` (None unbounded) in SQLite's BINARY order, which for UTF-8
text is code-point order, the same order Python sorts strings in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chroma_migrate.native.sqlite_source import ReadOnlySqlite

ARRAY_TABLE = "embedding_metadata_array"


def id_range_clause(low: str | None, high: str | None) -> tuple[str, list[str]]:
    """SQL (on `embeddings e`) and parameters for low <= id < high; None is unbounded."""
    clause, params = "", []
    if low is not None:
        clause += " AND e.embedding_id >= ?"
        params.append(low)
    if high is not None:
        clause += " AND e.embedding_id < ?"
        params.append(high)
    return clause, params


# One value per metadata row in docs/FORMAT.md's precedence (string, int, float), and bool_value apart: SQLite has no
# bool type, so a 0/1 there must become a Python bool.
_VALUE = "COALESCE(m.string_value, m.int_value, m.float_value), m.bool_value"


def stored_records(sql: ReadOnlySqlite, segment_id: str, low: str | None, high: str | None,
                   with_arrays: bool) -> dict[str, dict[str, Any]]:
    """id -> {key: value} for every stored record in the range (document and uri included as keys), in id order.

    The reader's hot loop: one row per metadata value. Rows carry the integer row id rather
    than the user id (a fresh string per row would cost a third of the time), and are
    iterated straight off the cursor.
    """
    clause, params = id_range_clause(low, high)
    where = f"WHERE e.segment_id = ?{clause}"
    records: dict[str, dict[str, Any]] = {}
    by_row: dict[int, dict[str, Any]] = {}
    with sql.reading():
        for row_id, record_id in sql.conn.execute(
                f"SELECT e.id, e.embedding_id FROM embeddings e {where} ORDER BY e.embedding_id",
                [segment_id, *params]):
            by_row[row_id] = records[record_id] = {}
        current_row, values = None, {}
        for row_id, key, value, bool_value in sql.conn.execute(
                f"SELECT e.id, m.key, {_VALUE} FROM embeddings e JOIN embedding_metadata m ON m.id = e.id "
                f"{where} ORDER BY e.embedding_id", [segment_id, *params]):
            if row_id != current_row:
                current_row, values = row_id, by_row[row_id]
            values[key] = value if value is not None or bool_value is None else bool(bool_value)
        if with_arrays:
            for row_id, key, value, bool_value in sql.conn.execute(
                    f"SELECT e.id, m.key, {_VALUE} FROM embeddings e JOIN {ARRAY_TABLE} m ON m.id = e.id "
                    f"{where} ORDER BY m.id, m.key, m.rowid", [segment_id, *params]):
                element = value if value is not None or bool_value is None else bool(bool_value)
                existing = by_row[row_id].get(key)
                if isinstance(existing, list):
                    existing.append(element)
                else:
                    by_row[row_id][key] = [element]
    return records


def stored_ids(sql: ReadOnlySqlite, segment_id: str) -> Iterator[str]:
    """Every stored id in order, streamed."""
    for (record_id,) in sql.stream("SELECT embedding_id FROM embeddings WHERE segment_id = ? ORDER BY embedding_id",
                                   (segment_id,)):
        yield record_id


def stored_count(sql: ReadOnlySqlite, segment_id: str) -> int:
    return sql.rows("SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (segment_id,))[0][0]


def ids_in_table(sql: ReadOnlySqlite, segment_id: str, ids: list[str]) -> set[str]:
    return {row[0] for row in sql.rows_for_keys(
        "SELECT embedding_id FROM embeddings WHERE segment_id = ? AND embedding_id IN ({keys})", ids, [segment_id])}


def stored_ids_between(sql: ReadOnlySqlite, segment_id: str, low: str | None, high: str | None) -> list[str]:
    """The stored ids of one range, in order."""
    clause, params = id_range_clause(low, high)
    return [row[0] for row in sql.rows(
        f"SELECT e.embedding_id FROM embeddings e WHERE e.segment_id = ?{clause} ORDER BY e.embedding_id",
        [segment_id, *params])]
