"""Fill a target database, whose collections the target's chromadb created, from the source natively.

Per collection, one pass over the source in id-range batches (the native reader, with the
write log applied the way the writing version applies it): each batch's rows go into the
target's METADATA segment and its vectors to the graph writer (carried or built, see
`graph_choice.py`). Then the watermarks and the dimension are set, and the target's runtime
writes each id map in its own pickle form.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chroma_migrate import dbfile
from chroma_migrate.content_digest import CollectionFingerprint, metadata_from_json
from chroma_migrate.native import open_database
from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.formats import family_of
from chroma_migrate.transplant.graph_choice import GraphChoice, GraphPath, choose_graph
from chroma_migrate.transplant.rows import MetadataRows, set_dimension, set_watermarks, write_log_end
from chroma_migrate.transplant.vectors import BuiltGraph, CarriedGraph, GraphWriter
from chroma_migrate.versions import ChromaVersion
from chroma_migrate.worker_client import run_worker

URIS_SINCE = (0, 4, 22)  # record URIs arrived in chromadb 0.4.22
QUERY_SAMPLE = 5  # records per collection the proof queries (the first is deleted by its write probe)


@dataclass
class WrittenCollection:
    """What the writer did for one collection: the graph's path and why, and what the proof expects."""

    name: str
    graph: str
    reason: str
    records: int
    log_changes_applied: int
    fingerprint: dict[str, Any]
    sample: list[str]

    def to_report(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key not in ("fingerprint", "sample")}


def _graph_writer(choice: GraphChoice, source: NativeCollection, folder: Path,
                  target_index: dict[str, Any]) -> GraphWriter | None:
    shutil.rmtree(folder, ignore_errors=True)  # whatever the target's creation left there
    if choice.path is GraphPath.CARRIED:
        return CarriedGraph(folder, source)
    if choice.path is GraphPath.BUILT:
        return BuiltGraph(folder, source, source.count, int(target_index["M"]), int(target_index["construction_ef"]))
    return None


def write_labels(path: Path, id_to_label: dict[str, int]) -> None:
    """The id map as a JSON list of [id, label] pairs, written pair by pair (not one string of them all)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        for position, pair in enumerate(id_to_label.items()):
            handle.write(("," if position else "") + json.dumps(pair))
        handle.write("]")


def _sample(ids: list[str], wanted: int) -> list[str]:
    if len(ids) <= wanted:
        return list(ids)
    step = len(ids) / wanted
    return [ids[int(position * step)] for position in range(wanted)]


def _write_collection(source: NativeCollection, target: dbfile.CollectionFacts, conn: sqlite3.Connection,
                      version: ChromaVersion, target_db: Path, batch_size: int, watermark: int,
                      progress: Callable[[int], None]) -> tuple[WrittenCollection, dict[str, Any] | None]:
    family = family_of(version.signature)
    target_index = dbfile.index_settings(target, trust_config=version.is_rust_core)
    choice = choose_graph(source, target_index)
    if not target.metadata_segment or (choice.path is not GraphPath.EMPTY and not target.vector_segment):
        raise ValueError(f"the target's collection {target.name!r} has no METADATA or VECTOR segment")
    rows = MetadataRows(conn, target.metadata_segment, family, version.supports_list_metadata, watermark,
                        stores_uris=version.key >= URIS_SINCE)
    folder = target_db / (target.vector_segment or "")
    graph = _graph_writer(choice, source, folder, target_index)
    fingerprint, sample = CollectionFingerprint(), []
    for batch in source.iter_batches(batch_size):
        rows.append(batch)
        if graph is not None:
            graph.add(batch)
        for row, record_id in enumerate(batch.ids):
            fingerprint.add(record_id, batch.documents[row], metadata_from_json(batch.metadatas[row]))
        sample.extend(_sample(batch.ids, QUERY_SAMPLE))
        progress(len(batch))
    set_dimension(conn, target.id, source.dimension)
    pickle_job = None
    if graph is not None:
        graph.finish()
        set_watermarks(conn, family, target.metadata_segment, target.vector_segment, watermark)
        labels_file = target_db.parent / f"labels-{target.vector_segment}.json"
        write_labels(labels_file, graph.id_to_label)
        pickle_job = {"folder": str(folder), "labels_file": str(labels_file), "dimension": graph.dimension,
                      "total_elements_added": graph.total_elements_added, "max_seq_id": watermark}
    applied = graph.changed if isinstance(graph, CarriedGraph) else 0
    written = WrittenCollection(source.name, str(choice.path), choice.reason, rows.written, applied,
                                fingerprint.to_dict(), _sample(sample, QUERY_SAMPLE))
    return written, pickle_job


def _write_quickly(conn: sqlite3.Connection) -> None:
    """No fsync and the rollback journal in memory, for this connection only (neither is stored in the file):
    the target is a staging folder a failed run never publishes and a rerun writes again from scratch, and
    what is published is read back from it after this connection has closed."""
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages for the tables' indexes, not per record


def write_database(source_db: Path, target_db: Path, names: list[str], version: ChromaVersion, batch_size: int,
                   progress: Callable[[int], None] | None = None,
                   ) -> tuple[list[WrittenCollection], list[dict[str, Any]]]:
    """Write every named collection of `source_db` into `target_db` (its collections already created);
    returns what was written and the id maps still to be pickled (`id_maps.py`)."""
    advance = progress or (lambda _n: None)
    written, pickle_jobs = [], []
    with open_database(source_db) as source:
        seeded = next((name for name in names if source.collection(name).dimension), None)
        if seeded:
            run_worker(version.version, "seed_write_log", {"path": str(target_db), "collection": seeded,
                                                            "dimension": int(source.collection(seeded).dimension)})
        with closing(sqlite3.connect(target_db / dbfile.SQLITE_FILE)) as conn:
            _write_quickly(conn)
            watermark = write_log_end(conn) if seeded else 0
            targets = {item.name: item for item in dbfile.collections(conn)}
            for name in names:
                outcome, job = _write_collection(source.collection(name), targets[name], conn, version, target_db,
                                                 batch_size, watermark, advance)
                written.append(outcome)
                if job:
                    pickle_jobs.append(job)
    return written, pickle_jobs
