"""`index_metadata.pickle`: which user id lives under which hnsw label, read without trusting the file.

0.x pickles a `PersistentData` object, 1.x a plain dict. The Unpickler admits exactly that
one class (as an inert stand-in) and refuses every other global, so a crafted file can
never run code here; `pickle_scan` walks the opcodes first, so it cannot exhaust memory
either; and every label and count is checked before numpy or SQLite sees it.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from chroma_migrate.native.errors import CorruptDatabaseError, UnsafePickleError
from chroma_migrate.native.pickle_scan import content_key, scan_pickle_once
from chroma_migrate.native.reading import note_reading

PICKLE_FILE = "index_metadata.pickle"
PERSISTENT_DATA = ("chromadb.segment.impl.vector.local_persistent_hnsw", "PersistentData")
MAX_LABEL = 2**63 - 1  # hnswlib labels are size_t; chromadb's start at 1 and count up
MAX_SEQ_ID = 2**63 - 1  # SQLite's INTEGER: a larger watermark cannot even be compared with the log


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
    newest_seq_id: int | None = None  # 0.x: the highest write-log row any mapped id was written by (id_to_seq_id)

    @cached_property
    def label_to_id(self) -> dict[int, str]:
        """The inverse (the load checked the pickle's own inverse against it), built once per shared map."""
        return {label: record_id for record_id, label in self.id_to_label.items()}


# Id maps this process has loaded, by content: one verification opens a segment's map several times
# (describe, the query pick, the text sample, the reader, the health check, the graph walks), and an
# upgrade's target holds the source's very bytes. At a million ids one load is seconds of unpickling.
# The maps are shared: callers only read them. A source and a target at a time keep memory flat.
_LOADED: dict[tuple[bytes, int, int | None], IdMap] = {}
_LOADED_LIMIT = 2


def load_id_map(path: Path, max_elements: int | None = None) -> IdMap:
    """The id map of one segment; `max_elements` (header.bin's element count, when known) bounds the
    objects the pickle may create and the ids it may map. The same bytes give the same (shared,
    read-only) map without being unpickled again."""
    note_reading(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptDatabaseError("pickle_unreadable", path, f"cannot be read ({exc.strerror or exc})") from exc
    key = content_key(data, max_elements)
    if key in _LOADED:
        return _LOADED[key]
    loaded = _load_checked(data, path, max_elements, key)
    while len(_LOADED) >= _LOADED_LIMIT:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = loaded
    return loaded


def _load_checked(data: bytes, path: Path, max_elements: int | None, key: tuple[bytes, int, int | None]) -> IdMap:
    """Scan, unpickle with the restricted Unpickler, and check every label and count."""
    scan_pickle_once(data, path, max_elements, key)
    try:
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
    bad = next((v for v in id_to_label.values() if not 0 < v <= MAX_LABEL), None)
    if bad is not None:
        raise CorruptDatabaseError("pickle_unreadable", path, f"maps an id to the label {bad}; hnswlib labels "
                                                              f"are positive integers below 2**63")
    if max_elements is not None and len(id_to_label) > max_elements:
        raise CorruptDatabaseError("pickle_unreadable", path, f"maps {len(id_to_label)} ids, but header.bin "
                                                              f"counts only {max_elements} elements")
    return IdMap(id_to_label, _count(fields, "total_elements_added", path), _dimensionality(fields, path),
                 _seq_id(fields.get("max_seq_id"), path), _newest_seq_id(fields.get("id_to_seq_id"), path))


def _count(fields: dict[str, Any], key: str, path: Path) -> int:
    value = fields.get(key) or 0
    if type(value) is not int or not 0 <= value <= MAX_LABEL:
        raise CorruptDatabaseError("pickle_unreadable", path, f"holds {key} = {value!r:.40}, not a count")
    return value


def _dimensionality(fields: dict[str, Any], path: Path) -> int | None:
    value = fields.get("dimensionality")
    if value is not None and (type(value) is not int or value <= 0):
        raise CorruptDatabaseError("pickle_unreadable", path, f"holds dimensionality = {value!r:.40}")
    return value


def _seq_id(value: Any, path: Path) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if not 0 <= value <= MAX_SEQ_ID:
        raise CorruptDatabaseError("pickle_unreadable", path, f"holds the watermark max_seq_id = {value}, outside "
                                                              "SQLite's integers")
    return value


def _newest_seq_id(id_to_seq_id: Any, path: Path) -> int | None:
    """0.x's id_to_seq_id, reduced to its highest seq id (1.x leaves the map empty)."""
    if not isinstance(id_to_seq_id, dict) or not id_to_seq_id:
        return None
    newest = max((v for v in id_to_seq_id.values() if type(v) is int), default=None)
    return _seq_id(newest, path) if newest is not None else None
