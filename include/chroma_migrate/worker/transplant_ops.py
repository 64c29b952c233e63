"""The target version's own part of a transplant (`chroma_migrate.transplant`): it seeds the
write log, writes 0.x's id maps with its own class, then proves, on a copy, that it reads the
whole result and keeps writing to it.

- `write_index_metadata`: 0.x pickles its `PersistentData` class (0.4 with the vector
  watermark inside), the real one, found by the name the version itself pickles it under.
- `prove_readable` opens the copy: count, every record by paged get() into a fingerprint the
  engine compares with the source's, each sampled record's query, then one add, one upsert
  and one delete; `prove_reopened`, in a new process, checks that those writes are there.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
from pathlib import Path
from typing import Any

from chroma_migrate.content_digest import CollectionFingerprint
from chroma_migrate.transplant.probe_record import PROBE_DOCUMENT, PROBE_ID
from chroma_migrate.worker.chroma_client import Clients, plain_metadata

PICKLE_FILE = "index_metadata.pickle"
PROBE_QUERY_K = 100  # neighbours asked for the probe after the reopen (see prove_reopened)


def seed_write_log(path: str, collection: str, dimension: int) -> dict[str, Any]:
    """Add and delete one probe record, so that the log's last row is one this version wrote
    (`transplant/rows.py` says why the watermarks need it)."""
    handle = Clients(path).collection(collection)
    handle.add(ids=[PROBE_ID], embeddings=[[1.0] * dimension])
    handle.delete(ids=[PROBE_ID])
    return {"seeded": collection}


def _index_metadata(dimension: int, total: int, id_to_label: dict[str, int], max_seq_id: int) -> Any:
    """0.x's PersistentData, built by the real class (1.x's dict form is written by the engine)."""
    from chromadb.segment.impl.vector.local_persistent_hnsw import PersistentData

    label_to_id = {label: record_id for record_id, label in id_to_label.items()}
    fields: dict[str, Any] = {"dimensionality": dimension, "total_elements_added": total,
                              "id_to_label": id_to_label, "label_to_id": label_to_id,
                              "id_to_seq_id": dict.fromkeys(id_to_label, 0)}
    if "max_seq_id" in inspect.signature(PersistentData.__init__).parameters:  # 0.4: the vector watermark
        fields["max_seq_id"] = max_seq_id
    return PersistentData(**fields)


def write_index_metadata(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per job: `folder`, `labels_file` (JSON [[id, label], ...]), `dimension`, `total_elements_added`."""
    written = {}
    for job in jobs:
        pairs = json.loads(Path(job["labels_file"]).read_text())
        data = _index_metadata(int(job["dimension"]), int(job["total_elements_added"]), dict(pairs),
                               int(job["max_seq_id"]))
        target = Path(job["folder"]) / PICKLE_FILE
        temporary = target.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            pickle.dump(data, handle, pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)
        written[job["folder"]] = len(pairs)
    return {"written": written}


def _fingerprint(handle, page: int) -> tuple[dict[str, Any], int, int]:
    """Every record by paged get(): (fingerprint, records with an embedding, the embeddings' dimension)."""
    fingerprint, with_embedding, dimension, offset = CollectionFingerprint(), 0, 0, 0
    while True:
        got = handle.get(limit=page, offset=offset, include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            return fingerprint.to_dict(), with_embedding, dimension
        documents = got.get("documents") or [None] * len(got["ids"])
        metadatas = got.get("metadatas") or [None] * len(got["ids"])
        embeddings = got.get("embeddings")
        for row, record_id in enumerate(got["ids"]):
            fingerprint.add(record_id, documents[row], plain_metadata(metadatas[row]))
            if embeddings is not None and len(embeddings[row]):
                with_embedding += 1
                dimension = len(embeddings[row])
        offset += len(got["ids"])


def _own_hits(handle, ids: list[str], count: int) -> dict[str, bool]:
    if not ids or not count:
        return {}
    got = handle.get(ids=ids, include=["embeddings"])
    vectors = [list(map(float, vector)) for vector in got["embeddings"]]
    found = handle.query(query_embeddings=vectors, n_results=min(10, count), include=["distances"])["ids"]
    return {record_id: record_id in hits for record_id, hits in zip(got["ids"], found, strict=True)}


def _write_probe(handle, sample: str) -> dict[str, Any]:
    """One add, one upsert (of the added record) and one delete (of a sampled record)."""
    vector = list(map(float, handle.get(ids=[sample], include=["embeddings"])["embeddings"][0]))
    handle.add(ids=[PROBE_ID], embeddings=[vector], documents=["added after the transplant"], metadatas=[{"probe": 1}])
    handle.upsert(ids=[PROBE_ID], embeddings=[vector], documents=[PROBE_DOCUMENT], metadatas=[{"probe": 2}])
    handle.delete(ids=[sample])
    return {"deleted": sample, "vector": vector}


def prove_readable(path: str, expected: dict[str, dict[str, Any]], page: int = 5000) -> dict[str, Any]:
    """On a copy: per collection (`sample`: ids to query, the first one deleted by the write probe)."""
    clients = Clients(path)
    answers = {}
    for name, wanted in expected.items():
        handle = clients.collection(name)
        count = handle.count()
        fingerprint, with_embedding, dimension = _fingerprint(handle, page)
        answer = {"count": count, "fingerprint": fingerprint, "with_embedding": with_embedding,
                  "dimension": dimension, "own_hits": _own_hits(handle, list(wanted["sample"]), count)}
        if wanted["sample"]:
            answer["probe"] = _write_probe(handle, wanted["sample"][0])
            answer["count_after_writes"] = handle.count()
        answers[name] = answer
    return answers


def prove_reopened(path: str, probes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """In a new process: the probe's upsert and delete of each collection are there, and a query finds the probe."""
    clients = Clients(path)
    answers = {}
    for name, probe in probes.items():
        handle = clients.collection(name)
        got = handle.get(ids=[PROBE_ID, probe["deleted"]], include=["documents"])
        found = dict(zip(got["ids"], got.get("documents") or [], strict=False))
        # A wide query: at 0.x's default search ef of 10 a beam misses some stored vectors by chance (the
        # probe copies a sampled record's vector, which may be one of those), and hnswlib searches with the
        # larger of ef and k. A probe the index does not hold is still missing at any k.
        hits = handle.query(query_embeddings=[probe["vector"]], n_results=min(PROBE_QUERY_K, max(handle.count(), 1)),
                            include=["distances"])["ids"][0]
        answers[name] = {"count": handle.count(), "probe_document": found.get(PROBE_ID),
                         "deleted_still_there": probe["deleted"] in found, "probe_found_by_query": PROBE_ID in hits}
    return answers
