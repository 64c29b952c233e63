"""Facts read from `chroma.sqlite3` with the standard library, strictly read-only.

chromadb writes to the file whenever it opens it, so everything that must leave a
database untouched reads it read-only: the native reader (`chroma_migrate.native`) builds
on the collection facts and index settings here, and the runtime workers use the rest.
Imported by the runtime workers too: stdlib only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SQLITE_FILE = "chroma.sqlite3"
DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"
# What every version uses when a collection never set them. `num_threads` is not among the
# settings: it has no fixed default (the machine's CPU count) and only decides how many threads
# build the index, so each target derives its own (a `hnsw:num_threads` metadata key is carried).
HNSW_DEFAULTS = {"space": "l2", "M": 16, "construction_ef": 100, "search_ef": 10, "resize_factor": 1.2,
                 "batch_size": 100, "sync_threshold": 1000}
# Collection metadata keys that carry index settings in every version.
HNSW_METADATA_KEYS = {
    "hnsw:space": "space", "hnsw:M": "M", "hnsw:construction_ef": "construction_ef",
    "hnsw:search_ef": "search_ef", "hnsw:resize_factor": "resize_factor",
    "hnsw:batch_size": "batch_size", "hnsw:sync_threshold": "sync_threshold",
}
# The same settings in the 1.x configuration and schema JSON.
HNSW_CONFIG_KEYS = {
    "space": "space", "max_neighbors": "M", "ef_construction": "construction_ef", "ef_search": "search_ef",
    "resize_factor": "resize_factor", "batch_size": "batch_size",
    "sync_threshold": "sync_threshold",
}


def qualified_name(tenant: str, database: str, name: str) -> str:
    """How the engine names a collection: its bare name in the default tenant and database,
    `tenant/database/name` elsewhere (a chromadb collection name never holds a slash)."""
    if tenant == DEFAULT_TENANT and database == DEFAULT_DATABASE:
        return name
    return f"{tenant}/{database}/{name}"


def split_qualified(qualified: str) -> tuple[str, str, str]:
    """(tenant, database, name) of a qualified collection name; a plain name is in the defaults."""
    parts = qualified.split("/")
    if len(parts) == 1:
        return DEFAULT_TENANT, DEFAULT_DATABASE, qualified
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{qualified!r} is neither a collection name nor tenant/database/name")
    return parts[0], parts[1], parts[2]


class DatabaseFileError(Exception):
    """The SQLite file is missing, unreadable or not a ChromaDB schema."""


@contextmanager
def open_readonly(db_path: Path) -> Iterator[sqlite3.Connection]:
    sqlite_path = Path(db_path) / SQLITE_FILE
    if not sqlite_path.is_file():
        raise DatabaseFileError(f"{sqlite_path} does not exist")
    uri = f"file:{sqlite_path.resolve()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            yield conn
    except sqlite3.DatabaseError as exc:
        raise DatabaseFileError(f"{sqlite_path}: {exc}") from exc


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def migration_signature(conn: sqlite3.Connection) -> dict[str, int]:
    """Highest applied migration per directory: what tells the writing versions apart."""
    if "migrations" not in table_names(conn):
        raise DatabaseFileError("chroma.sqlite3 has no `migrations` table, so it is not a ChromaDB database")
    rows = conn.execute("SELECT dir, MAX(version) FROM migrations GROUP BY dir").fetchall()
    return {directory: int(version) for directory, version in rows}


@dataclass
class CollectionFacts:
    """One collection as its rows say; `name` is the qualified name (see `qualified_name`)."""

    id: str
    name: str
    dimension: int | None
    metadata: dict[str, Any] | None
    config_json: dict[str, Any] | None
    schema_json: dict[str, Any] | None
    metadata_segment: str | None
    vector_segment: str | None
    list_metadata_keys: dict[str, int] = field(default_factory=dict)
    tenant: str = DEFAULT_TENANT
    database: str = DEFAULT_DATABASE
    bare_name: str = ""


def _typed_value(row: tuple, names: list[str]) -> Any:
    """Value precedence string, int, float, bool (docs/FORMAT.md); bool stored as 0/1."""
    values = dict(zip(names, row, strict=True))
    for key in ("str_value", "string_value", "int_value", "float_value"):
        if values.get(key) is not None:
            return values[key]
    if values.get("bool_value") is not None:
        return bool(values["bool_value"])
    return None


def _collection_metadata(conn: sqlite3.Connection, collection_id: str) -> dict[str, Any] | None:
    names = [c for c in columns(conn, "collection_metadata") if c not in ("collection_id", "key")]
    rows = conn.execute(
        f"SELECT key, {', '.join(names)} FROM collection_metadata WHERE collection_id = ? ORDER BY key",
        (collection_id,),
    ).fetchall()
    return {row[0]: _typed_value(row[1:], names) for row in rows} or None


def _json_column(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return parsed or None


def _tenant_and_database(conn: sqlite3.Connection) -> tuple[str, str]:
    """SQL for each collection's tenant and database name (0.4.15+ has `databases`)."""
    if "database_id" in columns(conn, "collections") and "databases" in table_names(conn):
        return ("COALESCE((SELECT d.tenant_id FROM databases d WHERE d.id = c.database_id), '')",
                "COALESCE((SELECT d.name FROM databases d WHERE d.id = c.database_id), '')")
    return f"'{DEFAULT_TENANT}'", f"'{DEFAULT_DATABASE}'"


def tenants_and_databases(conn: sqlite3.Connection) -> tuple[list[str], list[dict[str, str]]]:
    """Every tenant, and every database as {tenant, name, id}, including those with no collection."""
    tables = table_names(conn)
    if "databases" not in tables:
        return [DEFAULT_TENANT], [{"tenant": DEFAULT_TENANT, "name": DEFAULT_DATABASE, "id": ""}]
    tenants = [row[0] for row in conn.execute("SELECT id FROM tenants ORDER BY id")] if "tenants" in tables else []
    databases = [{"tenant": tenant, "name": name, "id": database_id} for database_id, name, tenant in
                 conn.execute("SELECT id, name, tenant_id FROM databases ORDER BY tenant_id, name")]
    return tenants, databases


def collection_names(conn: sqlite3.Connection) -> set[str]:
    """Every collection's qualified name, as `collections` gives it, without counting any record."""
    tenant_col, database_col = _tenant_and_database(conn)
    return {qualified_name(tenant, database, name) for name, tenant, database in
            conn.execute(f"SELECT c.name, {tenant_col}, {database_col} FROM collections c")}


def collections(conn: sqlite3.Connection) -> list[CollectionFacts]:
    """Every collection of every tenant and database, ordered by qualified name."""
    available = set(columns(conn, "collections"))
    config_col = "c.config_json_str" if "config_json_str" in available else "NULL"
    schema_col = "c.schema_str" if "schema_str" in available else "NULL"
    dim_col = "c.dimension" if "dimension" in available else "NULL"
    tenant_col, database_col = _tenant_and_database(conn)
    segments = conn.execute("SELECT id, scope, collection FROM segments").fetchall()
    facts = []
    for cid, name, dimension, config, schema, tenant, database in conn.execute(
        f"SELECT c.id, c.name, {dim_col}, {config_col}, {schema_col}, {tenant_col}, {database_col} "
        "FROM collections c"
    ):
        scoped = {scope: sid for sid, scope, collection in segments if collection == cid}
        item = CollectionFacts(
            cid, qualified_name(tenant, database, name), dimension, _collection_metadata(conn, cid),
            _json_column(config), _json_column(schema), scoped.get("METADATA"), scoped.get("VECTOR"),
            tenant=tenant, database=database, bare_name=name,
        )
        if item.metadata_segment:
            item.list_metadata_keys = _list_metadata_keys(conn, item.metadata_segment)
        facts.append(item)
    return sorted(facts, key=lambda item: item.name)


def _list_metadata_keys(conn: sqlite3.Connection, segment_id: str) -> dict[str, int]:
    """key -> number of records holding a list value (1.5+ `embedding_metadata_array`)."""
    if "embedding_metadata_array" not in table_names(conn):
        return {}
    rows = conn.execute(
        "SELECT a.key, COUNT(DISTINCT a.id) FROM embedding_metadata_array a "
        "JOIN embeddings e ON e.id = a.id WHERE e.segment_id = ? GROUP BY a.key ORDER BY a.key",
        (segment_id,),
    ).fetchall()
    return dict(rows)


def _find_hnsw_settings(node: Any) -> dict[str, Any]:
    """Space and hnsw numbers from 1.x config/schema JSON, wherever the version nests them."""
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                for inner_key, inner_value in _find_hnsw_settings(value).items():
                    found.setdefault(inner_key, inner_value)
            elif key in HNSW_CONFIG_KEYS and value is not None:
                found.setdefault(HNSW_CONFIG_KEYS[key], value)
    elif isinstance(node, list):
        for value in node:
            for inner_key, inner_value in _find_hnsw_settings(value).items():
                found.setdefault(inner_key, inner_value)
    return found


def index_settings(item: CollectionFacts, *, trust_config: bool) -> dict[str, Any]:
    """The index settings (HNSW_DEFAULTS' names) in docs/FORMAT.md's order: metadata, schema, then config.

    0.5/0.6 write "l2" into config_json_str even for cosine collections, so callers pass
    `trust_config=False` for 0.x databases.
    """
    settings: dict[str, Any] = {}
    for key, name in HNSW_METADATA_KEYS.items():
        if item.metadata and key in item.metadata:
            settings[name] = item.metadata[key]
    if trust_config:
        schema_vector = (item.schema_json or {}).get("keys", {}).get("#embedding", item.schema_json)
        for source in (schema_vector, item.config_json):
            for name, value in _find_hnsw_settings(source).items():
                settings.setdefault(name, value)
    for name, value in HNSW_DEFAULTS.items():
        settings.setdefault(name, value)
    return settings


def ids_in_range(conn: sqlite3.Connection, metadata_segment: str, low: str | None, high: str | None,
                 ) -> list[str]:
    """User ids with low <= id < high (None is unbounded), in id order (SQLite BINARY = code points)."""
    query = "SELECT embedding_id FROM embeddings WHERE segment_id = ?"
    params: list[Any] = [metadata_segment]
    if low is not None:
        query += " AND embedding_id >= ?"
        params.append(low)
    if high is not None:
        query += " AND embedding_id < ?"
        params.append(high)
    return [row[0] for row in conn.execute(query + " ORDER BY embedding_id", params)]


def size_on_disk(db_path: Path) -> int:
    return sum(p.stat().st_size for p in Path(db_path).rglob("*") if p.is_file())


def _embedding_index_config(item: CollectionFacts) -> dict[str, Any]:
    """1.3+'s `#embedding` vector index config, else 1.0's configuration (its `vector_index` flattened)."""
    schema = item.schema_json or {}
    embedding = (((schema.get("keys") or {}).get("#embedding") or {}).get("float_list") or {})
    config = ((embedding.get("vector_index") or {}).get("config")) if embedding else None
    if isinstance(config, dict):
        return config
    configuration = dict(item.config_json or {})
    configuration.update(configuration.pop("vector_index", None) or {})
    return configuration


def _configured(value: Any) -> dict[str, Any] | None:
    """None for "nothing configured": absent, null, or 1.x's {"type": "legacy"} placeholder."""
    if not isinstance(value, dict) or not value or value.get("type") == "legacy":
        return None
    return value


def embedding_function_of(item: CollectionFacts) -> dict[str, Any] | None:
    """The embedding function a 1.x collection names (type, name, config), or None."""
    return _configured(_embedding_index_config(item).get("embedding_function"))


def spann_of(item: CollectionFacts) -> dict[str, Any] | None:
    """A 1.x collection's spann index settings, or None (local databases use hnsw)."""
    return _configured(_embedding_index_config(item).get("spann"))
