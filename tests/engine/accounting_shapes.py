"""Databases of shapes the fixture builder cannot make yet, written by a real chromadb version.

Run inside a runtime's interpreter (`.runtimes/chromadb-X/bin/python accounting_shapes.py
PATH OUT.json`): two tenants, two databases, the same collection name in both, a collection
created and deleted (its folder stays behind), records whose document or metadata is None,
and in 1.5 list metadata. OUT.json holds what that version's own `get()` returns per
(tenant, database, collection), so the tests compare the accounting with the writer's view,
not with another reader of the files. The test side imports `shapes_database` (stdlib only)
to build and cache one per version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

TENANT2, DB2 = "tenant2", "db_two"
_ENV = {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
DEFAULT = ("default_tenant", "default_database")


def _records(prefix: str, count: int, with_lists: bool) -> dict[str, list[Any]]:
    """Deterministic records: every 5th has no document, every 7th no metadata, every 4th a uri."""
    ids, documents, metadatas, uris, embeddings = [], [], [], [], []
    for i in range(count):
        ids.append(f"{prefix}-{i:03d}")
        documents.append(None if i % 5 == 2 else f"{prefix} document {i} ✓")
        if i % 7 == 3:
            metadatas.append(None)
        else:
            meta: dict[str, Any] = {"n": i, "score": i / 4 + 0.1, "ok": i % 2 == 0, "tag": f"t{i % 3}"}
            if with_lists and i % 3 == 0:
                meta["labels"] = ["A", "B"] if i % 2 else [1, 2, 3]
            metadatas.append(meta)
        uris.append(f"s3://bucket/{prefix}/{i}.png" if i % 4 == 1 else None)
        embeddings.append([((i * 7 + d * 3) % 11) / 11.0 - 0.4 for d in range(8)])
    return {"ids": ids, "documents": documents, "metadatas": metadatas, "uris": uris, "embeddings": embeddings}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def _own_view(collection) -> dict[str, Any]:
    """The version's own answer: counts of what get() returns."""
    got = collection.get(include=["documents", "metadatas", "uris"])
    metadata_rows: dict[str, int] = {}
    array_rows: dict[str, int] = {}
    for meta in got["metadatas"]:
        for value in (meta or {}).values():
            if isinstance(value, list):
                for element in value:
                    array_rows[_kind(element)] = array_rows.get(_kind(element), 0) + 1
            else:
                metadata_rows[_kind(value)] = metadata_rows.get(_kind(value), 0) + 1
    return {
        "id": str(collection.id),
        "records": len(got["ids"]),
        "documents": sum(d is not None for d in got["documents"]),
        "uris": sum(u is not None for u in got["uris"] or []),
        "without_metadata": sum(not m for m in got["metadatas"]),
        "metadata_rows": metadata_rows,
        "array_rows": array_rows,
    }


def build(path: str) -> dict[str, Any]:
    import chromadb
    from chromadb.api.client import AdminClient
    from chromadb.config import Settings

    version = tuple(int(p) for p in chromadb.__version__.split(".")[:2])
    with_lists = version >= (1, 5)
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path, settings=settings)
    admin = AdminClient.from_system(client._system)
    admin.create_tenant(TENANT2)
    admin.create_database(DB2, tenant=TENANT2)
    other = chromadb.PersistentClient(path, settings=settings, tenant=TENANT2, database=DB2)

    def add(handle, prefix: str, count: int) -> None:
        records = _records(prefix, count, with_lists)
        if not any(records["uris"]):
            records.pop("uris")
        handle.add(**records)

    words = client.create_collection("words", embedding_function=None, metadata={"hnsw:space": "cosine",
                                                                                 "owner": "default", "flag": True})
    add(words, "w", 40)
    words.delete(ids=["w-010", "w-011", "w-012"])
    words.update(ids=["w-020", "w-021"], metadatas=[{"n": 1000, "status": "reviewed"}, {"score": 2.5}])
    words.upsert(ids=["w-022", "w-100"], embeddings=[[0.1] * 8, [0.2] * 8], documents=["upserted", None],
                 metadatas=[{"n": -1}, None])
    doomed = client.create_collection("doomed", embedding_function=None, metadata={"note": "doomed", "n": 1})
    add(doomed, "d", 12)
    doomed.update(ids=["d-001"], metadatas=[{"n": 5}])
    client.delete_collection("doomed")
    empty = client.create_collection("empty_one", embedding_function=None)

    other_words = other.create_collection("words", embedding_function=None, metadata={"owner": "tenant2"})
    add(other_words, "o", 15)
    extra = other.create_collection("extra", embedding_function=None)
    add(extra, "e", 6)

    expected = {}
    for (tenant, database), handle in [(DEFAULT, words), (DEFAULT, empty), ((TENANT2, DB2), other_words),
                                       ((TENANT2, DB2), extra)]:
        expected[f"{tenant}/{database}/{handle.name}"] = _own_view(handle)
    return {"version": chromadb.__version__, "collections": expected}


LATE_RECORDS = 5000  # one add below 1.x's max batch (5,461): its log rows land in one statement


def write_then_wait(path: str) -> None:
    """A collection of 100 applied records, then one large add the parent kills this process during.

    1.x commits the log rows of an add first and applies them to the METADATA segment in a second
    step (rust/log sqlite_log.rs push_logs, then the local compactor), so a kill in between leaves
    records that exist only in the log: the state a crashed 1.x writer leaves behind.
    """
    import chromadb
    from chromadb.config import Settings

    version = tuple(int(p) for p in chromadb.__version__.split(".")[:2])
    client = chromadb.PersistentClient(path, settings=Settings(anonymized_telemetry=False))
    handle = client.create_collection("pending", embedding_function=None, metadata={"note": "killed"})
    early = _records("early", 100, version >= (1, 5))
    handle.add(**early)
    late = _records("late", LATE_RECORDS, version >= (1, 5))
    print("ready", flush=True)
    handle.add(**late)
    print("done", flush=True)


def view(path: str) -> dict[str, Any]:
    """The version's own view of every collection of an existing database (open a copy: chromadb writes)."""
    import sqlite3

    import chromadb
    from chromadb.config import Settings

    with sqlite3.connect(f"file:{Path(path) / 'chroma.sqlite3'}?mode=ro", uri=True) as conn:
        names = conn.execute("SELECT d.tenant_id, d.name, c.name FROM collections c "
                             "JOIN databases d ON d.id = c.database_id").fetchall()
    expected = {}
    for tenant, database, name in names:
        client = chromadb.PersistentClient(path, settings=Settings(anonymized_telemetry=False), tenant=tenant,
                                           database=database)
        expected[f"{tenant}/{database}/{name}"] = _own_view(client.get_collection(name, embedding_function=None))
    return {"version": chromadb.__version__, "collections": expected}


def own_view(version: str, path: Path, *, in_place: bool = False) -> dict[str, Any]:
    """Run `view` in `version`'s runtime (stdlib side): on a copy of path, or on path itself if in_place
    (chromadb writes to what it opens: 1.x applies a pending log then)."""
    import tempfile

    from chroma_migrate.runtimes import ensure_runtime

    python = ensure_runtime(version, log=lambda _m: None).python
    with tempfile.TemporaryDirectory() as scratch:
        opened = Path(path)
        if not in_place:
            opened = Path(scratch) / "db"
            shutil.copytree(path, opened, ignore=shutil.ignore_patterns(".complete"))
        out = Path(scratch) / "view.json"
        subprocess.run([str(python), __file__, "--view", str(opened), str(out)], check=True, env=_ENV, timeout=300,
                       capture_output=True)
        return json.loads(out.read_text())["collections"]


def killed_writer_database(cache_dir: Path, version: str) -> Path:
    """A 1.x database whose last add exists only in the write log (built once, by a real kill)."""
    from chroma_migrate_testkit.cache_lock import build_once

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    target = Path(cache_dir) / f"accounting-killed-{version}-{digest}"
    build_once(target, target.is_dir, lambda: _kill_a_writer_into(target, version))
    return target


def _kill_a_writer_into(target: Path, version: str) -> None:
    import signal
    import sqlite3
    import time

    from chroma_migrate.runtimes import ensure_runtime

    python = ensure_runtime(version, log=lambda _m: None).python
    for _attempt in range(3):
        staging = target.with_name(target.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        process = subprocess.Popen([str(python), __file__, "--write-then-wait", str(staging)], env=_ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with sqlite3.connect(f"file:{staging / 'chroma.sqlite3'}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT 1 FROM embeddings_queue WHERE id LIKE 'late-%' LIMIT 1").fetchone():
                        break
                time.sleep(0.001)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        with sqlite3.connect(f"file:{staging / 'chroma.sqlite3'}?mode=ro", uri=True) as conn:
            applied = conn.execute("SELECT COUNT(*) FROM embeddings WHERE embedding_id LIKE 'late-%'").fetchone()[0]
        if applied == 0:
            staging.rename(target)
            return
    raise RuntimeError(f"chromadb {version} applied the whole add before it could be killed, three times")


# --- test side (stdlib only) ---------------------------------------------------------------

def shapes_database(cache_dir: Path, version: str) -> tuple[Path, dict[str, Any]]:
    """Build once per (version, this file) under cache_dir; return the folder and the writer's view."""
    from chroma_migrate.runtimes import ensure_runtime
    from chroma_migrate_testkit.cache_lock import build_once

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    target = Path(cache_dir) / f"accounting-shapes-{version}-{digest}"
    manifest = target.with_name(target.name + ".json")

    def build() -> None:
        staging = target.with_name(target.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        python = ensure_runtime(version, log=lambda _m: None).python
        out = staging.with_name(staging.name + ".json")
        subprocess.run([str(python), __file__, str(staging), str(out)], check=True, env=_ENV, timeout=300,
                       capture_output=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        out.rename(manifest)

    build_once(target, manifest.is_file, build)
    return target, json.loads(manifest.read_text())


if __name__ == "__main__":
    if sys.argv[1] == "--write-then-wait":
        write_then_wait(sys.argv[2])
    elif sys.argv[1] == "--view":
        Path(sys.argv[3]).write_text(json.dumps(view(sys.argv[2]), indent=1, sort_keys=True))
    else:
        Path(sys.argv[2]).write_text(json.dumps(build(sys.argv[1]), indent=1, sort_keys=True))
