"""The tests' own comparison of two get() dumps, written apart from the engine's verify.

Exact equality, except the two differences chromadb itself introduces: cosine vectors
are renormalised on every write, and 1.x re-parses metadata floats (1 ulp).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _same_value(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or math.isclose(a, b, rel_tol=1e-15, abs_tol=1e-300)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _same_metadata(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)


def embedding_function(dump: dict[str, Any]) -> dict[str, Any] | None:
    """The embedding function a dumped collection's configuration names; None for none or 1.x's legacy."""
    named = (dump.get("configuration") or {}).get("embedding_function")
    return None if not named or named.get("type") == "legacy" else named


def assert_same_records(source: dict[str, Any], target: dict[str, Any], spaces: dict[str, str], *,
                        same_ids: bool = True) -> None:
    """Dumps are keyed by qualified name (`tenant/database/name` outside the defaults), so the
    tenants and databases of every collection are compared too; collection ids unless the
    expectation comes from another database (`same_ids=False`)."""
    assert sorted(source) == sorted(target), "collection names differ"
    for name, expected in source.items():
        got = target[name]
        if same_ids:
            assert expected.get("id") == got.get("id"), f"{name}: collection id {expected.get('id')} != {got.get('id')}"
        assert embedding_function(expected) == embedding_function(got), f"{name}: embedding function"
        user = {k: v for k, v in (expected["metadata"] or {}).items() if not k.startswith("hnsw:")}
        got_user = {k: v for k, v in (got["metadata"] or {}).items() if not k.startswith("hnsw:")}
        assert _same_metadata(user or None, got_user or None), f"{name}: collection metadata {user} != {got_user}"
        assert set(expected["records"]) == set(got["records"]), f"{name}: id sets differ"
        for record_id, record in expected["records"].items():
            other = got["records"][record_id]
            assert record["document"] == other["document"], f"{name}/{record_id}: document"
            assert record["uri"] == other["uri"], f"{name}/{record_id}: uri"
            assert _same_metadata(record["metadata"], other["metadata"]), (
                f"{name}/{record_id}: metadata {record['metadata']} != {other['metadata']}")
            a = np.asarray(record["embedding"], np.float32)
            b = np.asarray(other["embedding"], np.float32)
            if spaces.get(name) == "cosine":
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=f"{name}/{record_id}")
            else:
                assert a.tobytes() == b.tobytes(), f"{name}/{record_id}: embedding not bit-exact"


def spaces_of(dump: dict[str, Any]) -> dict[str, str]:
    return {name: (c["metadata"] or {}).get("hnsw:space", "l2") for name, c in dump.items()}
