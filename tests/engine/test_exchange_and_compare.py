"""The exchange format round-trips bit-exactly, and the comparison sees every real difference."""

from __future__ import annotations

import math

import numpy as np

from chroma_migrate.exchange import RecordBatch, canonical_metadata, parse_metadata, read_batch, write_batch
from chroma_migrate.verification.compare import CollectionComparison, compare_batches


def _batch(ids, embeddings, documents=None, uris=None, metadatas=None) -> RecordBatch:
    n = len(ids)
    return RecordBatch(list(ids), np.asarray(embeddings, np.float32), documents or [None] * n,
                       uris or [None] * n, metadatas or [None] * n)


def test_parquet_round_trip_is_bit_exact_and_keeps_types(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5, 7)).astype(np.float32)
    vectors[0, 0] = np.float32(1e-45)  # a denormal survives too
    metadata = {"i": 2**53 + 1, "f": 1.0, "b": True, "s": "Grüße 東京", "l": [1, 2.5, "x", False]}
    batch = _batch(["b", "a", "c", "e", "d"], vectors, ["doc", None, "", "ü", "x"],
                   [None, "s3://x", None, None, None], [canonical_metadata(metadata), None, None, None, None])
    write_batch(batch, tmp_path / "b.parquet")
    back = read_batch(tmp_path / "b.parquet")
    assert back.ids == batch.ids and back.documents == batch.documents and back.uris == batch.uris
    assert back.embeddings.tobytes() == vectors.tobytes()
    restored = parse_metadata(back.metadatas[0])
    assert restored == metadata
    assert type(restored["f"]) is float and type(restored["i"]) is int and type(restored["b"]) is bool


def test_empty_collection_of_unknown_dimension_round_trips(tmp_path):
    write_batch(_batch([], np.zeros((0, 0))), tmp_path / "e.parquet")
    assert len(read_batch(tmp_path / "e.parquet")) == 0


def test_comparison_finds_missing_extra_and_changed_records():
    base = np.arange(12, dtype=np.float32).reshape(4, 3)
    source = _batch(["a", "b", "c", "d"], base, ["1", "2", "3", "4"])
    changed = base.copy()
    changed[1, 1] = np.nextafter(changed[1, 1], np.float32(100))  # one ulp in an l2 space is a change
    target = _batch(["a", "b", "d", "e"], changed[[0, 1, 3, 3]], ["1", "2", "4", "5"])
    result = CollectionComparison()
    compare_batches(source.sorted_by_id(), target.sorted_by_id(), "l2", result)
    assert (result.identical, result.missing, result.extra, result.different) == (2, 1, 1, 1)
    assert result.missing_sample == ["c"] and result.extra_sample == ["e"]
    assert result.different_sample == [{"id": "b", "fields": ["embedding"]}]
    assert result.source.hex != result.target.hex


def test_chromadb_float_noise_is_equivalent_but_real_changes_are_not():
    value = 0.1234567
    noisy = math.nextafter(value, 1.0)
    vectors = np.ones((3, 2), np.float32)
    source = _batch(["a", "b", "c"], vectors, metadatas=[canonical_metadata({"x": value}),
                                                          canonical_metadata({"x": 1}),
                                                          canonical_metadata({"x": value})])
    target = _batch(["a", "b", "c"], vectors, metadatas=[canonical_metadata({"x": noisy}),
                                                          canonical_metadata({"x": 1.0}),
                                                          canonical_metadata({"x": value * 1.001})])
    result = CollectionComparison()
    compare_batches(source, target, "l2", result)
    assert result.equivalent == 1  # one ulp
    assert result.different == 2  # int 1 became float 1.0, and a real change
    assert {d["id"] for d in result.different_sample} == {"b", "c"}


def test_cosine_rounding_is_equivalent_only_in_cosine_space():
    a = np.array([[0.3, 0.4, 0.5]], np.float32)
    b = a.copy()
    b[0, 2] = np.nextafter(b[0, 2], np.float32(1))
    for space, expected in (("cosine", (0, 1, 0)), ("ip", (0, 0, 1))):
        result = CollectionComparison()
        compare_batches(_batch(["a"], a), _batch(["a"], b), space, result)
        assert (result.identical, result.equivalent, result.different) == expected
