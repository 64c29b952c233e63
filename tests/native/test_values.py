"""Metadata values: the stored-row precedence, and 1.x's serde_json float parsing reproduced bit for bit."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from chroma_migrate.native.values import log_metadata_parser, serde_number, split_record, typed_value


def test_stored_value_precedence_and_bools():
    assert typed_value("s", 1, 2.0, 1) == "s"
    assert typed_value(None, 0, 2.0, None) == 0
    assert typed_value(None, None, 2.0, 0) == 2.0
    assert typed_value(None, None, None, 0) is False and typed_value(None, None, None, 1) is True


def test_serde_number_keeps_ints_and_its_own_float_rounding():
    assert serde_number("9007199254740993") == 2**53 + 1 and isinstance(serde_number("7"), int)
    assert serde_number("-12") == -12 and math.copysign(1.0, serde_number("-0")) == -1.0
    assert serde_number("1.5e3") == 1500.0 and serde_number("2.0") == 2.0 and serde_number("1e-320") > 0
    # A 17-digit significand does not fit 2**53: serde rounds it to f64 first, then divides, rounding twice.
    text = "0.16335005890635335"
    assert serde_number(text) == int(text.replace("0.", "")) / 1e17 and serde_number(text) != float(text)
    assert serde_number(text) == math.nextafter(float(text), 1.0)


def test_log_metadata_is_parsed_like_the_writing_version():
    text = '{"x": 0.16335005890635335, "n": 3, "b": true, "l": ["a", 1]}'
    assert log_metadata_parser(rust_core=False)(text) == json.loads(text)
    parsed = log_metadata_parser(rust_core=True)(text)
    assert parsed["x"] == serde_number("0.16335005890635335") and parsed["l"] == ["a", 1] and parsed["b"] is True
    assert log_metadata_parser(rust_core=True)(None) is None


def test_document_and_uri_are_not_metadata():
    assert split_record({"chroma:document": "d", "chroma:uri": "u"}) == ("d", "u", None)
    assert split_record({"b": 1, "a": 2.5}) == (None, None, '{"a":2.5,"b":1}')


@pytest.mark.integration
@pytest.mark.parametrize("version", ["1.0.20", "1.5.9"])
def test_serde_parse_equals_what_1x_stored_from_its_own_log(copy_of, version):
    """1.x parses the log's JSON with serde_json and stores the result: for every float of every record
    whose last log row is still there, serde_number of the log text is the stored value, bit for bit."""
    db = copy_of(version)
    checked = differs_from_python = 0
    with sqlite3.connect(f"file:{db / 'chroma.sqlite3'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT q.id, q.metadata, s.id FROM embeddings_queue q JOIN segments s "
            "ON q.topic LIKE '%/' || s.collection AND s.scope = 'METADATA' WHERE q.operation IN (0, 2) "
            "AND q.seq_id = (SELECT MAX(seq_id) FROM embeddings_queue r WHERE r.id = q.id AND r.topic = q.topic)")
        for record_id, text, segment in rows.fetchall():
            stored = dict(conn.execute(
                "SELECT m.key, m.float_value FROM embedding_metadata m JOIN embeddings e ON e.id = m.id "
                "WHERE e.segment_id = ? AND e.embedding_id = ? AND m.float_value IS NOT NULL", (segment, record_id)))
            for key, raw in json.loads(text, parse_float=lambda t: ("float", t)).items():
                if isinstance(raw, tuple) and key in stored:
                    checked += 1
                    assert serde_number(raw[1]).hex() == stored[key].hex(), (key, raw[1])
                    differs_from_python += float(raw[1]) != stored[key]
    assert checked > 200 and differs_from_python > 0
