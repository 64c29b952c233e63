"""A collection's own nearest neighbours for recall, from its hnsw graph plus the vectors only the log holds."""

from __future__ import annotations

import numpy as np

from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.hnsw_search import GraphSearcher, distances, normalised

MAX_OVERQUERY = 1000  # stale graph entries (deleted or replaced through the log) asked for on top of k


def nearest_ids(collection: NativeCollection, queries: np.ndarray, k: int, ef: int | None = None,
                ) -> list[list[str]]:
    """For each query, the ids of up to k nearest records as the collection's index would answer
    (at its own search ef, or the `ef` given)."""
    if not len(queries) or collection.count == 0:
        return [[] for _ in range(len(queries))]
    segment = collection.vectors
    sources = segment.sources
    # Persisted ids the log deleted or replaced: their graph entries are stale (looked up per hit, as a
    # dict of every live label costs a second per call at a million ids).
    stale_ids = sources.removed | {record_id for record_id in sources.from_log if record_id in sources.persisted}
    stale = min(len(stale_ids), MAX_OVERQUERY)
    label_to_id = segment.id_map.label_to_id
    has_live = len(sources.persisted) > len(stale_ids)
    searcher = GraphSearcher(segment.files) if segment.files is not None and has_live else None
    log_ids = sorted(sources.from_log)
    log_vectors = segment.vectors_for(log_ids) if log_ids else np.zeros((0, segment.spec.dimension), np.float32)
    if collection.space == "cosine" and len(log_vectors):
        log_vectors = np.stack([normalised(v) for v in log_vectors])
    ef = ef or int(collection.index.get("search_ef") or 10)
    answers = []
    for query in np.asarray(queries, dtype=np.float32):
        hits: list[tuple[float, str]] = []
        if searcher is not None:
            for distance, label in searcher.search(query, k + stale, ef + stale):
                record_id = label_to_id.get(label)
                if record_id is not None and sources.label_of(record_id) == label:
                    hits.append((distance, record_id))
        if log_ids:
            q = normalised(query) if collection.space == "cosine" else query
            hits += zip(distances(collection.space, q, log_vectors).tolist(), log_ids, strict=True)
        answers.append([record_id for _, record_id in sorted(hits)[:k]])
    return answers
