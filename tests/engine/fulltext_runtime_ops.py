"""Run by a chromadb runtime's interpreter in the full-text tests: writes the worker has no operation for.

    python fulltext_runtime_ops.py delete-last DB          delete the record with the highest rowid
    python fulltext_runtime_ops.py add DB COLLECTION ID DOC   add one record (DOC "-": no document)

Prints one JSON line: what was done, or the error chromadb raised.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing

import chromadb
from chromadb.config import Settings


def _client(path: str):
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))


def delete_last(path: str) -> dict:
    with closing(sqlite3.connect(f"{path}/chroma.sqlite3")) as conn:
        rowid, record_id, collection = conn.execute(
            "SELECT e.id, e.embedding_id, c.name FROM embeddings e JOIN segments s ON s.id = e.segment_id "
            "JOIN collections c ON c.id = s.collection ORDER BY e.id DESC LIMIT 1").fetchone()
    _client(path).get_collection(collection, embedding_function=None).delete(ids=[record_id])
    return {"rowid": rowid, "id": record_id, "collection": collection}


def add(path: str, collection: str, record_id: str, document: str) -> dict:
    handle = _client(path).get_collection(collection, embedding_function=None)
    dimension = len(handle.get(limit=1, include=["embeddings"])["embeddings"][0])
    try:
        handle.add(ids=[record_id], embeddings=[[0.5] * dimension], documents=[None if document == "-" else document])
    except Exception as exc:  # each version raises its own type
        return {"error": f"{type(exc).__name__}: {exc}"}
    with closing(sqlite3.connect(f"{path}/chroma.sqlite3")) as conn:
        rowid = conn.execute("SELECT id FROM embeddings WHERE embedding_id = ?", (record_id,)).fetchone()[0]
    return {"rowid": rowid}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = delete_last(*args) if command == "delete-last" else add(*args)
    print(json.dumps(result))
