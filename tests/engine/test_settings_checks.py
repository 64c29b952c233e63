"""The settings checks of verification each fail on exactly what they guard (no chromadb needed):
the embedding function, spann settings, the 1.3+ schema's index choices, database ids, and a
content digest that differs while every record compares equal."""

from __future__ import annotations

import copy

from chroma_migrate.inspection import CollectionInfo, DatabaseInfo
from chroma_migrate.verification.compare import CollectionComparison, RangeShare
from chroma_migrate.verification.verify import _database_problems, _settings_problems, collection_verdict

EF = {"type": "known", "name": "huggingface", "config": {"model_name": "m"}}
SCHEMA = {"defaults": {"string": {"fts_index": {"enabled": False}, "string_inverted_index": {"enabled": True}}},
          "keys": {"#document": {"string": {"fts_index": {"enabled": True}}}}}


def info(**changes) -> CollectionInfo:
    base = CollectionInfo(name="words", id="c1", records=0, dimension=2, index={"space": "l2"}, metadata={"n": 1},
                          configuration={}, embedding_function=EF, spann=None, schema=SCHEMA)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_a_correct_target_passes_every_settings_check():
    assert _settings_problems(info(), copy.deepcopy(info())) == ([], [])


def test_each_settings_check_fails_on_what_it_guards():
    other_schema = copy.deepcopy(SCHEMA)
    other_schema["keys"]["price"] = {"int": {"int_inverted_index": {"enabled": False}}}
    for changed, expected in ((info(embedding_function=None), "embedding function differs"),
                              (info(spann={"search_nprobe": 64}), "spann differs"),
                              (info(schema=other_schema), "schema index choices differ"),
                              (info(metadata={"n": 1.0}), "collection metadata differs")):
        problems, _notes = _settings_problems(info(), changed)
        assert any(p.startswith(expected) for p in problems), (expected, problems)


def database(db_id: str) -> DatabaseInfo:
    return DatabaseInfo(path="p", size_bytes=0, signature={}, written_by=[], reader_version="1.5.9", collections=[],
                        tenants=["default_tenant", "t2"],
                        databases=[{"tenant": "t2", "name": "db", "id": db_id}])


def test_database_ids_and_tenants_are_checked():
    assert _database_problems(database("d1"), database("d1")) == []
    assert _database_problems(database("d1"), database("d2")) == ["database t2/db: id differs: source d1, target d2"]
    missing = database("d1")
    missing.tenants, missing.databases = ["default_tenant"], []
    assert _database_problems(database("d1"), missing) == ["tenant 't2': missing in the target",
                                                           "database t2/db: missing in the target"]


def test_digests_that_differ_while_records_match_are_a_problem():
    comparison = CollectionComparison()
    comparison.add_identical_range(2, b"\x01" * 16, b"\x02" * 16)
    verdict = collection_verdict(info(), info(), RangeShare(comparison, None), 2, lambda: None, lambda: None,
                                 None, None)
    assert any(p.startswith("content digests differ") for p in verdict["problems"]), verdict["problems"]
    same = CollectionComparison()
    same.add_identical_range(2, b"\x01" * 16, b"\x01" * 16)
    assert collection_verdict(info(), info(), RangeShare(same, None), 2, lambda: None, lambda: None,
                              None, None)["passed"]
