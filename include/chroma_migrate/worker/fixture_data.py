"""Deterministic receipt-like records and the write history that produces them.

The history mirrors production: bulk adds, upserts that change text and vectors, metadata
updates, deletes, re-adds of deleted ids, and a small final add that stays in the write
log (0.x keeps < 100 records in its brute-force buffer; 1.x has not flushed them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

WORDS = ["TOTAL", "Café", "東京", "Grüße", "Milk 2%", "naïve", "😀", "SUBTOTAL", "TAX", "Ølbrød", "x" * 40]
WRITE_BATCH = 500


def record_id(image: uuid.UUID, receipt: int, line: int, word: int | None) -> str:
    base = f"IMAGE#{image}#RECEIPT#{receipt:05d}#LINE#{line:05d}"
    return base if word is None else f"{base}#WORD#{word:05d}"


def _metadata(kind: str, i: int, rng: np.random.Generator, with_lists: bool) -> dict[str, Any] | None:
    if i % 97 == 13:
        return None  # a record with no metadata at all
    meta: dict[str, Any] = {
        "receipt_id": i // 40, "line_id": (i // 8) % 5, "confidence": float(rng.random()),
        "x": float(rng.random()), "y": float(rng.standard_normal() * 1e3), "is_noise": bool(i % 11 == 0),
        "text": WORDS[i % len(WORDS)], "kind": kind,
    }
    if kind == "word":
        meta["word_id"] = i % 8
    if i % 50 == 7:
        meta["big_int"] = 2**53 + 2 * i + 1
    if i % 3 == 0:
        meta["label"] = ["MERCHANT_NAME", "DATE", "GRAND_TOTAL"][i % 9 // 3]
    if with_lists and i % 5 == 0:
        meta["labels"] = ["TOTAL", "LINE_ITEM"] if i % 2 else ["DATE"]
    return meta


def _records(spec: dict[str, Any], start: int, stop: int, rng: np.random.Generator, salt: str = ""):
    kind = "word" if spec.get("kind", "word") == "word" else "line"
    image = uuid.UUID(int=spec.get("image_seed", 7))
    ids, docs, metas, uris = [], [], [], []
    for i in range(start, stop):
        ids.append(record_id(image, i // 40, (i // 8) % 5, i % 8 if kind == "word" else None) + f"#{i:06d}")
        missing = spec.get("missing_documents", True) and i % 23 == 5
        docs.append(None if missing else f"{WORDS[i % len(WORDS)]}{salt} {i}")
        metas.append(_metadata(kind, i, rng, spec.get("with_lists", False)))
        uris.append(f"s3://receipts/{image}/{i}.png" if i % 17 == 3 else None)
    embeddings = rng.standard_normal((stop - start, spec["dim"])).astype(np.float32)
    step: dict[str, Any] = {"ids": ids, "embeddings": embeddings, "documents": docs, "metadatas": metas}
    if any(uris):
        step["uris"] = uris
    return step


def operations(spec: dict[str, Any], seed: int) -> Iterator[dict[str, Any]]:
    """Adds, then history on the first half, then more adds (flushing that history into the
    index), then a small tail that stays in the write log."""
    rng = np.random.default_rng([seed, spec["dim"], spec["records"]])
    total = spec["records"]
    if total == 0:
        return
    tail = min(spec.get("tail", 37), total)
    body = total - tail
    first = body // 2 if spec.get("history", True) and body >= 80 else body
    for start in range(0, first, WRITE_BATCH):
        yield {"op": "add", **_records(spec, start, min(first, start + WRITE_BATCH), rng)}
    if first < body:
        upserted = _records(spec, 0, first // 5, rng, salt=" (upserted)")
        yield {"op": "upsert", **{k: v[::2] for k, v in upserted.items()}}
        updated = _records(spec, first // 5, first // 5 * 2, rng, salt=" (updated)")
        yield {"op": "update", "ids": updated["ids"][::3], "metadatas": [
            {"confidence": 0.5, "status": "reviewed"} for _ in updated["ids"][::3]]}
        yield {"op": "delete", "ids": _records(spec, first // 2, first // 2 + first // 8, rng)["ids"]}
        if spec.get("readd", True):
            yield {"op": "add", **_records(spec, first // 2, first // 2 + first // 16, rng, salt=" (re-added)")}
        for start in range(first, body, WRITE_BATCH):
            yield {"op": "add", **_records(spec, start, min(body, start + WRITE_BATCH), rng)}
    if tail:
        yield {"op": "add", **_records(spec, body, total, rng, salt=" (tail)")}
    if spec.get("duplicates"):  # pairs of records with bit-identical vectors under different ids
        originals = _records(spec, total, total + spec["duplicates"], rng, salt=" (original)")
        twins = {key: list(value) for key, value in originals.items() if key != "embeddings"}
        twins["ids"] = [f"{record_id}#TWIN" for record_id in originals["ids"]]
        yield {"op": "add", **originals}
        yield {"op": "add", **twins, "embeddings": originals["embeddings"].copy()}
