"""A digest of one record's (document, metadata), equal wherever the same record is read.

The reader gate computes it on the engine side from the native reader and inside each
chromadb runtime from that version's get(), so the two must agree on every value type:
numpy scalars become Python values, tuples become lists, and a bool stays a bool (JSON
keeps `true` apart from `1`). Ints and floats stay apart as well: every version tried
returns a stored int as an int and a stored float as a float.

Imported by the runtime workers too: stdlib and numpy only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def plain_value(value: Any) -> Any:
    """A metadata value as plain JSON: numpy scalars unwrapped, tuples and arrays as lists."""
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return plain_value(value.tolist())
    return value


def canonical_metadata(metadata: dict[str, Any] | None) -> str:
    """Sorted keys, no whitespace; no metadata and an empty dict are the same (versions differ there)."""
    if not metadata:
        return ""
    return _CANONICAL.encode({str(key): plain_value(value) for key, value in metadata.items()})


def content_digest(document: str | None, metadata: dict[str, Any] | None) -> str:
    """Hex digest of (document, metadata); length-prefixed so neither field can bleed into the other."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in (b"\x00" if document is None else b"\x01" + document.encode(),
                 canonical_metadata(metadata).encode()):
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()


def metadata_from_json(text: str | None) -> dict[str, Any] | None:
    """The native reader's canonical metadata JSON back as a dict (None stays None)."""
    return None if text is None else json.loads(text)


class CollectionFingerprint:
    """The set of a collection's (id, document, metadata) as one value, in any reading order.

    A sum modulo 2**128 of each record's keyed digest: the engine adds what the native reader
    wrote, a runtime adds what its own get() returns, and the two must be equal.
    """

    MODULUS = 1 << 128

    def __init__(self) -> None:
        self.total, self.records = 0, 0

    def add(self, record_id: str, document: str | None, metadata: dict[str, Any] | None) -> None:
        hasher = hashlib.blake2b(digest_size=16)
        key = record_id.encode()
        hasher.update(len(key).to_bytes(8, "little") + key + content_digest(document, metadata).encode())
        self.total = (self.total + int.from_bytes(hasher.digest(), "little")) % self.MODULUS
        self.records += 1

    def to_dict(self) -> dict[str, Any]:
        return {"digest": f"{self.total:032x}", "records": self.records}
