"""Create a rebuild's collections in the target with the source's ids and configuration.

chromadb gives a new collection a random id and has no API for a known embedding function
without constructing it (and its credentials), so the target's own chromadb creates each
collection (its tenant and database first, the index settings in its configuration), and
then, in a child process that has ended and before any record is written, this module
writes the source's id, embedding function, spann settings and 1.3+ schema into the
target's SQLite. Every version then reads, queries and writes the collection as its own
(`tests/engine/test_identity.py` proves it for each version).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from chroma_migrate import dbfile
from chroma_migrate.errors import MigrationError
from chroma_migrate.worker_client import run_worker


def existing_collections(target_db: Path) -> dict[str, dbfile.CollectionFacts]:
    if not (Path(target_db) / dbfile.SQLITE_FILE).is_file():
        return {}
    with dbfile.open_readonly(Path(target_db)) as conn:
        return {item.name: item for item in dbfile.collections(conn)}


def create_target_collections(version: str, target_db: Path, specs: list[dict[str, Any]],
                              databases: list[dict[str, str]]) -> None:
    """Make sure the source's tenants and databases (with their ids) and every spec's collection
    exist in `target_db` with its source identity; idempotent, so a retried load that died
    between the two steps finishes the second one."""
    target_db = Path(target_db)
    target_db.mkdir(parents=True, exist_ok=True)
    present = existing_collections(target_db)
    missing = [spec for spec in specs if spec["name"] not in present]
    if missing or not present:
        run_worker(version, "create_collections", {"path": str(target_db), "specs": missing, "databases": databases})
        present = existing_collections(target_db)
    with closing(sqlite3.connect(target_db / dbfile.SQLITE_FILE)) as conn, conn:
        _give_database_ids(conn, databases)
        for spec in specs:
            _give_source_identity(conn, present[spec["name"]], spec)


def _give_database_ids(conn: sqlite3.Connection, databases: list[dict[str, str]]) -> None:
    """Each database keeps the source's id (collections point at it by id)."""
    for database in databases:
        row = conn.execute("SELECT id FROM databases WHERE tenant_id = ? AND name = ?",
                           (database["tenant"], database["name"])).fetchone()
        if row and database["id"] and row[0] != database["id"]:
            conn.execute("UPDATE databases SET id = ? WHERE id = ?", (database["id"], row[0]))
            conn.execute("UPDATE collections SET database_id = ? WHERE database_id = ?", (database["id"], row[0]))


def _give_source_identity(conn: sqlite3.Connection, created: dbfile.CollectionFacts, spec: dict[str, Any]) -> None:
    if created.id != spec["id"]:
        records = conn.execute("SELECT COUNT(*) FROM embeddings_queue WHERE topic LIKE ?",
                               (f"%{created.id}",)).fetchone()[0]
        if records:
            raise MigrationError(
                f"Collection {spec['name']!r} in the new database {created.id} already holds {records} writes under "
                f"another id than the source's {spec['id']}.",
                "Remove the run's new database (clear the run) so that it is created again.")
        _set_collection_id(conn, created.id, spec["id"])
    config = dict(created.config_json or {})
    if spec.get("schema") is not None:
        _set_json(conn, spec["id"], "schema_str", spec["schema"])
    elif created.schema_json is not None and (spec.get("embedding_function") or spec.get("spann")):
        _set_json(conn, spec["id"], "schema_str", _with_vector_index(created.schema_json, spec))
    if created.schema_json is None and "config_json_str" in dbfile.columns(conn, "collections") and (
            spec.get("embedding_function") or spec.get("spann")):
        for key in ("embedding_function", "spann"):
            if spec.get(key):
                config[key] = spec[key]
        _set_json(conn, spec["id"], "config_json_str", config)


def _set_collection_id(conn: sqlite3.Connection, old: str, new: str) -> None:
    """Every row that names the collection by id: its row, metadata, segments (0.4: topics too)."""
    clash = conn.execute("SELECT name FROM collections WHERE id = ?", (new,)).fetchone()
    if clash:
        raise MigrationError(f"The new database already has a collection {clash[0]!r} with id {new}.",
                             "Migrate into an empty OUT (a fresh run).")
    conn.execute("UPDATE collections SET id = ? WHERE id = ?", (new, old))
    conn.execute("UPDATE collection_metadata SET collection_id = ? WHERE collection_id = ?", (new, old))
    conn.execute("UPDATE segments SET collection = ? WHERE collection = ?", (new, old))
    for table in ("collections", "segments"):
        if "topic" in dbfile.columns(conn, table):
            key = "id" if table == "collections" else "collection"
            conn.execute(f"UPDATE {table} SET topic = replace(topic, ?, ?) WHERE {key} = ?", (old, new, new))


def _with_vector_index(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The target's 1.3+ schema with the source's embedding function / spann in every vector index config."""
    patched = json.loads(json.dumps(schema))
    for holder in (patched.get("defaults") or {}, *((patched.get("keys") or {}).values())):
        config = ((holder.get("float_list") or {}).get("vector_index") or {}).get("config")
        if isinstance(config, dict):
            for key in ("embedding_function", "spann"):
                if spec.get(key):
                    config[key] = spec[key]
    return patched


def _set_json(conn: sqlite3.Connection, collection_id: str, column: str, value: dict[str, Any]) -> None:
    conn.execute(f"UPDATE collections SET {column} = ? WHERE id = ?",
                 (json.dumps(value, separators=(",", ":")), collection_id))
