"""`index_metadata.pickle`: which user id lives under which hnsw label, read without trusting the file.

0.x pickles a `PersistentData` object, 1.x a plain dict. The Unpickler admits exactly that
one class (as an inert stand-in) and refuses every other global, so a crafted file can
never run code here.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.native.errors import CorruptDatabaseError, UnsafePickleError

PICKLE_FILE = "index_metadata.pickle"
PERSISTENT_DATA = ("chromadb.segment.impl.vector.local_persistent_hnsw", "PersistentData")


class PersistentDataStandIn:
    """Receives the attributes of chromadb's PersistentData; has no behaviour of its own."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == PERSISTENT_DATA:
            return PersistentDataStandIn
        raise UnsafePickleError(
            "pickle_forbidden_global", self.path,
            f"names the global {module}.{name}; chromadb only ever writes {'.'.join(PERSISTENT_DATA)} here, so "
            "the file was not written by chromadb and is refused unread",
            "Restore the segment folder from a backup; do not open this database with chromadb either.",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"persistent id {pid!r} is not allowed")


@dataclass
class IdMap:
    """The persisted id <-> label map of one vector segment."""

    id_to_label: dict[str, int]
    total_elements_added: int
    dimensionality: int | None
    legacy_max_seq_id: int | None  # 0.4 kept the vector watermark here


def load_id_map(path: Path) -> IdMap:
    try:
        data = path.read_bytes()
        loaded = _RestrictedUnpickler(data, path).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # any unpickling failure means the file is damaged
        raise CorruptDatabaseError("pickle_unreadable", path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    fields = vars(loaded) if isinstance(loaded, PersistentDataStandIn) else loaded
    if not isinstance(fields, dict):
        raise CorruptDatabaseError("pickle_unreadable", path, f"holds a {type(loaded).__name__}, not an id map")
    id_to_label, label_to_id = fields.get("id_to_label"), fields.get("label_to_id")
    if not isinstance(id_to_label, dict) or not isinstance(label_to_id, dict):
        raise CorruptDatabaseError("pickle_unreadable", path, "lacks its id_to_label / label_to_id maps")
    if len(id_to_label) != len(label_to_id) or any(
            type(k) is not str or type(v) is not int or label_to_id.get(v) != k for k, v in id_to_label.items()):
        raise CorruptDatabaseError("pickle_unreadable", path,
                                   "has id_to_label and label_to_id maps that are not each other's inverse")
    max_seq_id = fields.get("max_seq_id")
    return IdMap(id_to_label, int(fields.get("total_elements_added") or 0), fields.get("dimensionality"),
                 int(max_seq_id) if isinstance(max_seq_id, int) else None)
