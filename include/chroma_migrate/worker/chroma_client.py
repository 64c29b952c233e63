"""Opening databases and collections the same way in every chromadb version."""

from __future__ import annotations

import json
from typing import Any

import chromadb
from chromadb.config import Settings

VERSION = tuple(int(p) for p in chromadb.__version__.split(".")[:3])
IS_RUST_CORE = VERSION >= (1, 0, 0)
INCLUDE_ALL = ["embeddings", "documents", "metadatas", "uris"]


def open_client(path: str):
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))


def get_collection(client, name: str):
    # embedding_function=None everywhere: the default one would download a model.
    return client.get_collection(name, embedding_function=None)


def max_batch_size(client) -> int:
    getter = getattr(client, "get_max_batch_size", None)
    return int(getter() if getter else client.max_batch_size)


def collection_configuration(collection) -> dict[str, Any] | None:
    """1.x configuration as plain JSON; 0.5/0.6 report a meaningless one, so None for 0.x."""
    if not IS_RUST_CORE:
        return None
    raw = getattr(collection, "configuration_json", None)
    return json.loads(json.dumps(raw, default=str)) if raw else None


def plain_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """chromadb may hand back numpy scalars or tuples; make it plain JSON values."""
    if not metadata:
        return None
    return {key: _plain(value) for key, value in metadata.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value
