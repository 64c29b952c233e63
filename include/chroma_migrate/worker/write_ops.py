"""Operations that write a database with the runtime's own chromadb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chroma_migrate import dbfile, exchange
from chroma_migrate.progress import report_progress
from chroma_migrate.worker import fixture_data, read_ops, text_ops
from chroma_migrate.worker.chroma_client import (
    IS_RUST_CORE,
    VERSION,
    Clients,
    max_batch_size,
    write_records,
)

# chromadb 0.4.x cannot read back its own files after a delete and re-add of the same id
# (its log replay duplicates the vector; get() fails, chroma-core/chroma#1987, fixed in 0.5),
# so 0.4 fixtures skip re-adds: the tests need that version's get() as the reference.
READD_WORKS = VERSION >= (0, 5, 0)
NEAREST_KEY = "__nearest__"
TEXT_KEY = "__text__"


def _create(clients: Clients, spec: dict[str, Any], embedding_function: Any = None):
    """Create one collection (its tenant and database first) with the spec's metadata and configuration."""
    tenant, database = spec.get("tenant", dbfile.DEFAULT_TENANT), spec.get("database", dbfile.DEFAULT_DATABASE)
    clients.ensure_database(tenant, database)
    kwargs: dict[str, Any] = {"metadata": spec.get("metadata") or None, "embedding_function": embedding_function}
    if IS_RUST_CORE and spec.get("configuration"):
        kwargs["configuration"] = spec["configuration"]
    name = spec.get("collection_name") or dbfile.split_qualified(spec["name"])[2]
    return clients.for_database(tenant, database).create_collection(name, **kwargs)


def create_collections(path: str, specs: list[dict[str, Any]],
                       databases: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Create the tenants and databases (empty ones too) and the collections a rebuild loads into;
    the engine then gives them the source's ids and configuration in SQLite, before any record
    is written (so this process must end first)."""
    clients = Clients(path)
    for database in databases or []:
        clients.ensure_database(database["tenant"], database["name"])
    existing = set(clients.qualified_names())
    created = {spec["name"]: str(_create(clients, spec).id) for spec in specs if spec["name"] not in existing}
    return {"created": created}


def load(path: str, jobs: list[dict[str, Any]], mode: str = "add", queries: list[dict[str, Any]] | None = None,
         text_jobs: list[dict[str, Any]] | None = None, scratch_dir: str | None = None,
         progress_file: str | None = None) -> dict[str, Any]:
    """Per job: create the collection if needed and write its exchange files in order; then answer
    the recall `queries` with the index just built (the target side of verification). Each file
    written is reported to `progress_file` (progress.py): files are one batch, a small share of a load."""
    clients = Clients(path)
    limit = max_batch_size(clients.default)
    loaded = {}
    for job in jobs:
        spec = job["collection"]
        handle = clients.collection(spec["name"])  # create_collections made it, with the source's id
        written = 0
        for file in job["files"]:
            records = exchange.read_batch(Path(file))
            write_records(handle, records, mode, limit)
            written += len(records)
            report_progress(progress_file, len(records))
        loaded[spec["name"]] = {"written": written, "count": handle.count()}
    if queries:  # chromadb collection names start with a letter or digit, so this key cannot clash
        loaded[NEAREST_KEY] = read_ops.answer_queries(clients, queries)
    if text_jobs:
        loaded[TEXT_KEY] = text_ops.answer_text_queries(clients, text_jobs, scratch_dir)
    return loaded


def delete_collections(path: str, names: list[str]) -> dict[str, Any]:
    clients = Clients(path)
    for qualified in names:
        tenant, database, name = dbfile.split_qualified(qualified)
        clients.for_database(tenant, database).delete_collection(name)
    return {"deleted": names}


def build_fixture(path: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Write a receipt-like database the way production does: adds, upserts, deletes, a tail."""
    clients = Clients(path)
    for database in spec.get("databases", []):  # databases of their own, possibly left empty
        clients.ensure_database(database["tenant"], database["name"])
    built = {}
    for collection_spec in spec["collections"]:
        collection_spec = {"readd": READD_WORKS, **collection_spec}
        if not IS_RUST_CORE:
            collection_spec.pop("configuration", None)
        handle = _create(clients, collection_spec, _fixture_embedding_function(collection_spec))
        for step in fixture_data.operations(collection_spec, spec.get("seed", 0)):
            _apply(handle, step)
        qualified = dbfile.qualified_name(collection_spec.get("tenant", dbfile.DEFAULT_TENANT),
                                          collection_spec.get("database", dbfile.DEFAULT_DATABASE),
                                          collection_spec["name"])
        built[qualified] = handle.count()
        if collection_spec.get("drop"):  # created, written, then deleted: its files may stay behind
            clients.for_database(*dbfile.split_qualified(qualified)[:2]).delete_collection(collection_spec["name"])
            built.pop(qualified)
    return {"collections": built}


def _fixture_embedding_function(spec: dict[str, Any]) -> Any:
    """A named embedding function for a 1.x fixture collection; it is never called (records carry
    their embeddings), only recorded in the collection's configuration."""
    wanted = spec.get("embedding_function")
    if not wanted or not IS_RUST_CORE:
        return None
    import os

    from chromadb.utils.embedding_functions import HuggingFaceEmbeddingFunction

    os.environ.setdefault(wanted["api_key_env_var"], "not-a-real-key")
    return HuggingFaceEmbeddingFunction(api_key_env_var=wanted["api_key_env_var"], model_name=wanted["model_name"])


def _apply(handle, step: dict[str, Any]) -> None:
    kind = step.pop("op")
    if kind == "delete":
        handle.delete(ids=step["ids"])
        return
    if "embeddings" in step:
        step["embeddings"] = np.asarray(step["embeddings"], np.float32).tolist()
    getattr(handle, kind)(**step)
