"""Each VECTOR segment's id map (`index_metadata.pickle`), in the form its target version reads.

1.x reads a plain dict, which is data: it is pickled here (protocol 3, the keys 1.x writes).
0.x unpickles its own `PersistentData` class, so the target's runtime pickles that one with the
real class (`worker/transplant_ops.write_index_metadata`): no stand-in class is ever forged.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

from chroma_migrate.versions import ChromaVersion
from chroma_migrate.worker_client import run_worker

PICKLE_FILE = "index_metadata.pickle"
RUST_PICKLE_PROTOCOL = 3


def rust_id_map(total_elements_added: int, id_to_label: dict[str, int]) -> dict[str, Any]:
    return {"dimensionality": None, "total_elements_added": total_elements_added, "max_seq_id": None,
            "id_to_label": id_to_label, "label_to_id": {label: record_id for record_id, label in id_to_label.items()},
            "id_to_seq_id": {}}


def write_id_maps(version: ChromaVersion, jobs: list[dict[str, Any]]) -> None:
    """Write every job's pickle (`folder`, `labels_file`, `dimension`, `total_elements_added`, `max_seq_id`);
    the labels files are removed either way."""
    try:
        if version.is_rust_core:
            _write_rust_id_maps(jobs)
        elif jobs:
            run_worker(version.version, "write_index_metadata", {"jobs": jobs})
    finally:
        for job in jobs:
            Path(job["labels_file"]).unlink(missing_ok=True)


def _write_rust_id_maps(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        id_to_label = dict(json.loads(Path(job["labels_file"]).read_text()))
        target = Path(job["folder"]) / PICKLE_FILE
        temporary = target.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            pickle.dump(rust_id_map(int(job["total_elements_added"]), id_to_label), handle, RUST_PICKLE_PROTOCOL)
        os.replace(temporary, target)
