"""Opening databases and collections the same way in every chromadb version.

A persistent directory may hold several tenants and databases; a chromadb client serves
one of them, so `Clients` keeps one per (tenant, database) and resolves the engine's
qualified collection names (`name`, or `tenant/database/name`) to collection handles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chromadb
import chromadb.api.types
from chromadb.config import Settings

from chroma_migrate import dbfile, exchange

VERSION = tuple(int(p) for p in chromadb.__version__.split(".")[:3])
IS_RUST_CORE = VERSION >= (1, 0, 0)
# Record URIs arrived in 0.4.22 (with the `URIs` type); older releases refuse "uris" in include.
STORES_URIS = hasattr(chromadb.api.types, "URIs")
INCLUDE_ALL = ["embeddings", "documents", "metadatas"] + (["uris"] if STORES_URIS else [])


def open_client(path: str, tenant: str = dbfile.DEFAULT_TENANT, database: str = dbfile.DEFAULT_DATABASE):
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False),
                                     tenant=tenant, database=database)


class Clients:
    """The clients of one persistent directory, one per (tenant, database), opened on first use.

    The default client opens first, so a newer schema is migrated before anything is read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.default = open_client(path)
        self._open = {(dbfile.DEFAULT_TENANT, dbfile.DEFAULT_DATABASE): self.default}

    def for_database(self, tenant: str, database: str):
        key = (tenant, database)
        if key not in self._open:
            self._open[key] = open_client(self.path, tenant, database)
        return self._open[key]

    def qualified_names(self) -> list[str]:
        """Every collection of every tenant and database, read from the file itself."""
        with dbfile.open_readonly(Path(self.path)) as conn:
            return [item.name for item in dbfile.collections(conn)]

    def collection(self, qualified: str):
        tenant, database, name = dbfile.split_qualified(qualified)
        return get_collection(self.for_database(tenant, database), name)

    def ensure_database(self, tenant: str, database: str) -> None:
        """Create the tenant and database where they are missing (AdminClient, every version)."""
        from chromadb.api.client import AdminClient

        admin = AdminClient.from_system(self.default._system)
        try:
            admin.get_tenant(tenant)
        except Exception:  # each version raises its own "not found" type
            admin.create_tenant(tenant)
        try:
            admin.get_database(database, tenant=tenant)
        except Exception:
            admin.create_database(database, tenant=tenant)


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


def write_records(handle, records, mode: str, limit: int) -> None:
    """Add or upsert an exchange batch (`exchange.RecordBatch`) in chunks of at most `limit` records."""
    write = handle.upsert if mode == "upsert" else handle.add
    for start in range(0, len(records), limit):
        stop = start + limit
        embeddings = records.embeddings[start:stop]
        kwargs: dict[str, Any] = {
            "ids": records.ids[start:stop],
            # 1.x takes the float32 matrix as is; 0.x wants lists (float64 holds float32 exactly).
            "embeddings": embeddings if IS_RUST_CORE else embeddings.tolist(),
            "documents": records.documents[start:stop],
            "metadatas": [exchange.parse_metadata(m) for m in records.metadatas[start:stop]],
        }
        uris = records.uris[start:stop]
        if any(uri is not None for uri in uris):
            if not STORES_URIS:
                raise ValueError(f"chromadb {chromadb.__version__} cannot store record URIs (0.4.22 and newer can); "
                                 "migrate to a release that keeps them")
            kwargs["uris"] = uris
        write(**kwargs)
