"""The target's own rows of the sampled records, in a small database of the target's schema.

chromadb 1.x answers every filtered get() with one GROUP BY over the join of all the
collection's records and their metadata rows; restricting it with `ids` does not help (the
restriction is applied per id against the same join: about 28 ms per id at 100,000 records).
Measured on a 100,000-record database upgraded to 1.5.9: the 19 sampled where/where_document
queries took 11 s unrestricted and 0.03 s on this extract, with the same answers on the sample.

So for a 1.x target the text queries are asked of a copy that holds, row for row, what the
target file holds for the sampled records (`embeddings`, `embedding_metadata`, the array rows,
the full-text rows and their write-log rows) and every small table in full (tenants, databases,
collections, segments, watermarks, migrations): the same schema SQL, the same row ids, the same
bytes, read by the target version's own chromadb. The vector segment folders are not copied; a
where/where_document get() does not read them. Runs inside the target's runtime (stdlib only).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path

from chroma_migrate.dbfile import SQLITE_FILE

FULLTEXT = "embedding_fulltext_search"
# Tables copied for the sampled records only; every other table is copied whole.
PER_RECORD = {"embeddings", "embedding_metadata", "embedding_metadata_array", FULLTEXT, "embeddings_queue"}
# What the copy needs from the file: its record tables (the schema of 1.x, metadb migration 5 on).
REQUIRED = {"embeddings", "embedding_metadata", FULLTEXT, "embeddings_queue", "segments", "collections",
            "databases"}


class SampleDatabaseError(Exception):
    """The file does not have the shape the copy is made for; the caller asks the whole target instead."""


def write_sample_database(target: Path, out: Path, samples: Mapping[tuple[str, str, str], Sequence[str]]) -> Path:
    """Write `out`/chroma.sqlite3 holding the target's rows of `samples` ((tenant, database, collection
    name) -> record ids) and its small tables; returns `out`. The target is opened read-only."""
    out.mkdir(parents=True, exist_ok=False)
    with closing(sqlite3.connect(out / SQLITE_FILE)) as copy:
        copy.execute("ATTACH DATABASE ? AS target", (f"file:{Path(target) / SQLITE_FILE}?mode=ro",))
        schema = copy.execute("SELECT type, name, sql FROM target.sqlite_master WHERE sql IS NOT NULL").fetchall()
        tables = [(name, sql) for kind, name, sql in schema if kind == "table" and _own_table(name)]
        missing = REQUIRED - {name for name, _ in tables}
        if missing:
            raise SampleDatabaseError(f"the target has no {', '.join(sorted(missing))} table")
        for _, sql in tables:
            copy.execute(sql)
        for name, _ in tables:
            if name not in PER_RECORD:
                copy.execute(f'INSERT INTO main."{name}" SELECT * FROM target."{name}"')
        copy.execute("CREATE TEMP TABLE wanted (segment_id TEXT, topic_end TEXT, embedding_id TEXT)")
        segments = _metadata_segments(copy)
        for where, ids in samples.items():
            found = segments.get(where)
            if found is None:
                raise SampleDatabaseError(f"the target has no METADATA segment for {'/'.join(where)!r}")
            segment, collection_id = found
            copy.executemany("INSERT INTO wanted VALUES (?, ?, ?)",
                             [(segment, f"/{collection_id}", record_id) for record_id in ids])
        copy.execute("CREATE INDEX temp.wanted_ids ON wanted (embedding_id)")
        _copy_records(copy, {name for name, _ in tables})
        for kind, _, sql in schema:
            if kind in ("index", "trigger"):
                copy.execute(sql)
        copy.commit()
        copy.execute("DETACH DATABASE target")
    return out


def _own_table(name: str) -> bool:
    """SQLite's and FTS5's own tables are made by the statements that create the others."""
    return not name.startswith("sqlite_") and not name.startswith(f"{FULLTEXT}_")


def _metadata_segments(copy: sqlite3.Connection) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(tenant, database, collection name) -> (METADATA segment id, collection id), from the small tables."""
    rows = copy.execute("SELECT d.tenant_id, d.name, c.name, s.id, c.id FROM main.collections c "
                        "JOIN main.databases d ON d.id = c.database_id "
                        "JOIN main.segments s ON s.collection = c.id AND s.scope = 'METADATA'").fetchall()
    return {(tenant, database, name): (segment, cid) for tenant, database, name, segment, cid in rows}


def _copy_records(copy: sqlite3.Connection, tables: set[str]) -> None:
    """The sampled records' rows, keeping their row ids (the metadata and full-text rows point at them)."""
    copy.execute("INSERT INTO main.embeddings SELECT e.* FROM target.embeddings e JOIN wanted w "
                 "ON e.segment_id = w.segment_id AND e.embedding_id = w.embedding_id")
    for table in ("embedding_metadata", "embedding_metadata_array"):
        if table in tables:
            copy.execute(f"INSERT INTO main.{table} SELECT * FROM target.{table} "
                         "WHERE id IN (SELECT id FROM main.embeddings)")
    copy.execute(f"INSERT INTO main.{FULLTEXT} (rowid, string_value) SELECT rowid, string_value "
                 f"FROM target.{FULLTEXT} WHERE rowid IN (SELECT id FROM main.embeddings)")
    copy.execute("INSERT INTO main.embeddings_queue SELECT q.* FROM target.embeddings_queue q WHERE EXISTS "
                 "(SELECT 1 FROM wanted w WHERE w.embedding_id = q.id AND q.topic LIKE '%' || w.topic_end)")
