"""How a source collection is re-created in the target version with the same settings.

0.x reads index settings only from `hnsw:*` collection metadata; 1.x from its
configuration (it still honours the metadata keys). The metadata is carried verbatim;
settings that only the source's 1.x configuration held are spelled out for the target.
"""

from __future__ import annotations

from typing import Any

from chroma_migrate.dbfile import HNSW_DEFAULTS, HNSW_METADATA_KEYS
from chroma_migrate.errors import UnrepresentableDataError
from chroma_migrate.inspection import CollectionInfo
from chroma_migrate.versions import ChromaVersion

CONFIG_NAMES = {"space": "space", "M": "max_neighbors", "construction_ef": "ef_construction",
                "search_ef": "ef_search"}


def target_collection_spec(info: CollectionInfo, target: ChromaVersion) -> dict[str, Any]:
    metadata = dict(info.metadata or {})
    if target.is_rust_core:
        hnsw = dict((info.configuration or {}).get("hnsw") or {})
        hnsw.update({CONFIG_NAMES[name]: value for name, value in info.index.items()})
        configuration = {"hnsw": {k: v for k, v in hnsw.items() if v is not None}}
        return {"name": info.name, "metadata": metadata or None, "configuration": configuration}
    for key, name in HNSW_METADATA_KEYS.items():
        if key not in metadata and info.index.get(name) != HNSW_DEFAULTS[name]:
            metadata[key] = info.index[name]
    return {"name": info.name, "metadata": metadata or None, "configuration": None}


def unrepresentable(info: CollectionInfo, target: ChromaVersion) -> list[str]:
    """Problems that make a collection impossible to hold in the target, as sentences."""
    if target.supports_list_metadata or not info.list_metadata_keys:
        return []
    return [
        f"collection {info.name!r}: metadata field {key!r} holds a list in {count} records, and chromadb "
        f"{target.version} cannot store list metadata (lists arrived in 1.5)"
        for key, count in info.list_metadata_keys.items()
    ]


def refuse_unrepresentable(collections: list[CollectionInfo], target: ChromaVersion) -> None:
    """Fail before any work when the target cannot hold some of the data."""
    problems = [p for info in collections for p in unrepresentable(info, target)]
    if problems:
        raise UnrepresentableDataError(
            "The target cannot hold this data: " + "; ".join(problems) + ".",
            "Migrate to chromadb 1.5 or newer, or flatten the list metadata first.",
        )
