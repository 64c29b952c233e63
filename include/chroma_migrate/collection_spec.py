"""How a source collection is re-created in the target version: same place, id and settings.

Everything a collection is defined by is carried or refused by name:
- where it lives (tenant, database) and its id (set in the target's SQLite after chromadb
  creates the collection, see `target_collections.py`);
- its metadata, verbatim and with its types (a bool into a version that stores none is refused);
- its index settings: 0.x reads them only from `hnsw:*` collection metadata, 1.x from its
  configuration; settings the target's configuration cannot hold are spelled out as
  `hnsw:*` metadata, which every version honours;
- its 1.x embedding function, spann settings and 1.3+ schema, which only 1.x (the schema:
  1.3+) can store.
"""

from __future__ import annotations

import json
from typing import Any

from chroma_migrate.dbfile import HNSW_DEFAULTS, HNSW_METADATA_KEYS
from chroma_migrate.errors import UnrepresentableDataError
from chroma_migrate.inspection import CollectionInfo
from chroma_migrate.versions import ChromaVersion

CONFIG_NAMES = {"space": "space", "M": "max_neighbors", "construction_ef": "ef_construction",
                "search_ef": "ef_search", "resize_factor": "resize_factor", "batch_size": "batch_size",
                "sync_threshold": "sync_threshold"}
METADATA_KEYS = {name: key for key, name in HNSW_METADATA_KEYS.items()}


def target_collection_spec(info: CollectionInfo, target: ChromaVersion) -> dict[str, Any]:
    """What the target creates (`name`, `tenant`, `database`, `collection_name`, `metadata`,
    `configuration`) and what is then written into its SQLite (`id`, `embedding_function`,
    `spann`, `schema`), as plain JSON for the plan and the worker."""
    metadata = dict(info.metadata or {})
    configurable = target.configurable_index_settings
    for name, value in info.index.items():
        key = METADATA_KEYS[name]
        if name not in configurable and key not in metadata and value != HNSW_DEFAULTS.get(name):
            metadata[key] = value
    configuration = None
    if target.is_rust_core:
        configuration = {"hnsw": {CONFIG_NAMES[name]: value for name, value in info.index.items()
                                  if name in configurable and value is not None}}
    carries_schema = target.stores_schema and info.schema is not None
    return {
        "name": info.name, "tenant": info.tenant, "database": info.database,
        "collection_name": info.collection_name or info.name, "id": info.id,
        "metadata": metadata or None, "configuration": configuration,
        "embedding_function": info.embedding_function, "spann": info.spann,
        "schema": info.schema if carries_schema else None,
    }


def unrepresentable(info: CollectionInfo, target: ChromaVersion) -> list[tuple[str, str]]:
    """(problem, fix) for each part of the collection the target cannot hold."""
    where = f"collection {info.name!r}"
    found: list[tuple[str, str]] = []
    if not target.supports_list_metadata:
        found += [(f"{where}: metadata field {key!r} holds a list in {count} records, and chromadb "
                   f"{target.version} cannot store list metadata (lists arrived in 1.5)",
                   "Migrate to chromadb 1.5 or newer, or flatten the list metadata first.")
                  for key, count in info.list_metadata_keys.items()]
    if not target.stores_bool_collection_metadata:
        found += [(f"{where}: collection metadata {key!r} is the bool {value!r}, and chromadb {target.version} "
                   "stores collection metadata bools as integers (it would come back as "
                   f"{int(value)})",
                   "Migrate to chromadb 0.5 or newer, or store the flag as an int or a string first.")
                  for key, value in (info.metadata or {}).items() if isinstance(value, bool)]
    if info.embedding_function and not target.stores_embedding_function:
        named = info.embedding_function.get("name") or info.embedding_function.get("type")
        found.append((f"{where}: its configuration names the embedding function {named!r} "
                      f"({info.embedding_function.get('config') or {}}), and chromadb {target.version} keeps no "
                      "embedding function in a collection: applications would embed queries with their own default",
                      "Migrate to a chromadb 1.x release, or remove the embedding function from the collection's "
                      "configuration in the source first (and pass it explicitly in every application)."))
    if info.spann and not target.is_rust_core:
        found.append((f"{where}: its configuration holds spann index settings {info.spann}, which chromadb "
                      f"{target.version} cannot store", "Migrate to a chromadb 1.x release."))
    customised = schema_customisations(info.schema)
    if customised and not target.stores_schema:
        found.append((f"{where}: its schema (chromadb 1.3+) customises {', '.join(customised[:5])}, which "
                      f"chromadb {target.version} has no schema to hold",
                      "Migrate to chromadb 1.3 or newer, or recreate the collection with the default schema first."))
    return found


def refuse_unrepresentable(collections: list[CollectionInfo], target: ChromaVersion) -> None:
    """Fail before any work when the target cannot hold some of the data, naming every part."""
    problems = [found for info in collections for found in unrepresentable(info, target)]
    if problems:
        fixes = list(dict.fromkeys(fix for _problem, fix in problems))
        raise UnrepresentableDataError(
            "The target cannot hold this data: " + "; ".join(problem for problem, _fix in problems) + ".",
            " ".join(fixes))


# The parts of a 1.3+ schema every collection has unless its creator chose otherwise: the
# inverted indexes of each value type, the full-text index on documents and no sparse index.
# The vector index's own settings (space, hnsw, spann, embedding function) are carried apart.
_DEFAULT_INDEXES = {
    "defaults": {
        "string": {"fts_index": False, "string_inverted_index": True},
        "float_list": {"vector_index": False},
        "sparse_vector": {"sparse_vector_index": False},
        "int": {"int_inverted_index": True},
        "float": {"float_inverted_index": True},
        "bool": {"bool_inverted_index": True},
    },
    "keys": {
        "#embedding": {"float_list": {"vector_index": True}},
        "#document": {"string": {"fts_index": True, "string_inverted_index": False}},
    },
}


def _enabled_flags(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema reduced to which index is enabled where (section -> key -> type -> index -> bool)."""
    reduced: dict[str, Any] = {}
    for section in ("defaults", "keys"):
        entries = schema.get(section) or {}
        if section == "defaults":
            entries = {None: entries}
        for key, types in entries.items():
            for value_type, indexes in (types or {}).items():
                for index, body in (indexes or {}).items():
                    flags = reduced.setdefault(section, {})
                    target = flags if key is None else flags.setdefault(key, {})
                    target.setdefault(value_type, {})[index] = bool((body or {}).get("enabled"))
    return reduced


def schema_customisations(schema: dict[str, Any] | None) -> list[str]:
    """Index choices of a 1.3+ schema that differ from what chromadb gives every collection,
    as paths like `keys.price.int.int_inverted_index=False`; [] for a default (or no) schema."""
    if not schema:
        return []
    found: list[str] = []

    def walk(actual: Any, expected: Any, path: str) -> None:
        if isinstance(actual, dict) and isinstance(expected, dict):
            for key in sorted(set(actual) | set(expected), key=str):
                walk(actual.get(key), expected.get(key), f"{path}.{key}" if path else str(key))
        elif actual != expected:
            found.append(f"{path}={actual}")

    actual = _enabled_flags(schema)
    expected = json.loads(json.dumps(_DEFAULT_INDEXES))
    for key, types in (actual.get("keys") or {}).items():
        if key not in expected["keys"]:  # chromadb adds an entry per metadata key it sees, at the type's default
            expected["keys"][key] = {t: _DEFAULT_INDEXES["defaults"].get(t) for t in types}
    walk(actual, expected, "")
    return found
