"""What readers will see differently: answers that change between the versions, measured and shown.

Real databases written by real chromadb versions are migrated; the behaviour section must list
the where_document answers 0.x and 1.x give differently on the same records (emoji, null
documents), list the operator's sample query that changes and not the one that does not, say
"none" for an upgrade between 1.x releases, and never make verification fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chroma_migrate import cli
from chroma_migrate.errors import MigrationError
from chroma_migrate.migrate import MigrationRequest, migrate
from chroma_migrate.pipeline import render_report_markdown
from chroma_migrate.verification import behaviour
from chroma_migrate.verification.report import render_verification
from chroma_migrate.verification.verify import VerifyRequest, verify_databases
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import tree_digest

pytestmark = pytest.mark.integration

LATEST = "1.5.9"
# Every fixture collection has emoji ("😀") documents and, with missing_documents, null ones.
SPEC = receipt_spec(records=200, big_dim=None, missing_documents=True)
EMOJI = {"name": "emoji receipts", "where_document": {"$contains": "😀"}}
STEADY = {"name": "word records", "where": {"kind": "word"}}
NEAR = {"name": "like the first word", "n_results": 5,
        "near_ids": ["IMAGE#00000000-0000-0000-0000-000000000007#RECEIPT#00000#LINE#00000#WORD#00000#000000"]}
SAMPLE_QUERIES = {"words": [EMOJI, STEADY, NEAR]}


def _migrate(source: Path, out: Path, strategy: str = "auto",
             sample_queries: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    return migrate(MigrationRequest(source, out, LATEST, strategy, sample_queries=sample_queries), log=lambda _m: None)


def _markdown(result: dict[str, Any]) -> str:
    plan = {"strategy": result["strategy"], "reason": "test", "source_version": result["source_version"],
            "target_version": result["target_version"], "collections": result["collections"]}
    return render_report_markdown(plan, result["verification"])  # type: ignore[arg-type]


def _changed(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [entry for entry in report["behaviour"]["changed"] if entry["kind"] == kind]


def test_0_6_to_1_5_lists_the_where_document_changes_and_the_sample_query_that_changes(copy_of, tmp_path):
    source = copy_of("0.6.3", SPEC)
    before = tree_digest(source)
    result = _migrate(source, tmp_path / "out", "rebuild", SAMPLE_QUERIES)
    report = result["verification"]
    assert report["passed"], report["problems"]  # listed changes never fail verification
    assert tree_digest(source) == before, "the sample queries' source version ran on the original"

    document_changes = {(e["collection"], e["query"]): e for e in _changed(report, "where_document")}
    emoji = document_changes[("words", 'where_document {"$contains": "😀"}')]
    # 0.x (SQLite's trigram LIKE on a pattern under 3 characters) finds no emoji document; 1.5.9 finds them.
    assert emoji["source_count"] == 0 and emoji["target_count"] > 0 and emoji["only_target"]
    not_emoji = document_changes[("words", 'where_document {"$not_contains": "😀"}')]
    assert not_emoji["source_count"] > not_emoji["target_count"] and not_emoji["only_source"]
    assert _changed(report, "where") == []

    samples = {entry["query"]: entry for entry in _changed(report, "sample")}
    assert set(samples) == {"sample query 'emoji receipts'"}, samples  # not "word records"
    mine = samples["sample query 'emoji receipts'"]  # asked of the whole collection, not of a sample
    assert mine["source_count"] == 0 and mine["target_count"] >= emoji["target_count"] and mine["only_target"]
    assert report["behaviour"]["queries"] >= 3 + 32  # the sample queries and the words recall queries, at least
    assert report["behaviour_changes"] == [entry["text"] for entry in report["behaviour"]["changed"]]

    text, markdown = render_verification(report), _markdown(result)
    assert "What readers will see differently" in text and "## What readers will see differently" in markdown
    for rendered in (text, markdown):
        assert 'words: where_document {"$contains": "😀"} matches 0 of ' in rendered
        assert "sample query 'emoji receipts' answers 0 records" in rendered
        assert "word records" not in rendered


def test_1_3_to_1_5_upgrade_changes_no_answer_and_says_none(copy_of, tmp_path):
    source = copy_of("1.3.7", SPEC)
    result = _migrate(source, tmp_path / "out", sample_queries=SAMPLE_QUERIES)
    report = result["verification"]
    assert result["strategy"] == "upgrade" and report["passed"], report["problems"]
    seen = report["behaviour"]
    assert seen["queries"] > 3 + 32 and seen["changed"] == [], seen["changed"]
    assert report["behaviour_changes"] == []
    assert "What readers will see differently: none (" in render_verification(report)
    assert "**none (" in _markdown(result)


def test_verify_cli_takes_a_sample_queries_file_and_leaves_both_databases_alone(copy_of, tmp_path, capsys):
    source = copy_of("1.3.7", SPEC)
    target = tmp_path / "out"
    _migrate(source, target)
    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps({"words": [STEADY, {"name": "regex", "where_document": {"$regex": "^TOT"}}]}))
    digests = tree_digest(source), tree_digest(target)
    code = cli.main(["verify", str(source), str(target), "--sample-queries", str(queries), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"], report["problems"]
    assert (tree_digest(source), tree_digest(target)) == digests
    assert report["behaviour"]["changed"] == [] and report["behaviour"]["queries"] >= 2


def test_a_malformed_sample_query_is_refused_by_name_before_any_work(copy_of, tmp_path, capsys):
    source = copy_of("1.3.7", SPEC)
    bad = {"words": [STEADY, {"name": "typo", "wher": {"kind": "word"}}]}
    with pytest.raises(MigrationError, match=r"'typo'.*unknown key.*wher"):
        _migrate(source, tmp_path / "out", sample_queries=bad)
    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps(bad))
    code = cli.main(["migrate", str(source), str(tmp_path / "out"), "--sample-queries", str(queries), "--json"])
    assert code == 2 and "'typo'" in json.loads(capsys.readouterr().out)["error"]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.chroma-migrate-*"))
    # A collection the source does not hold is refused before verification reads anything.
    with pytest.raises(MigrationError, match="not verified here: nowhere"):
        verify_databases(VerifyRequest(source, source, sample_queries={"nowhere": [STEADY]}, work_dir=tmp_path))


@pytest.mark.parametrize(("queries", "message"), [
    ([{"where": {"kind": "word"}}], r'words\[0\] has no "name"'),
    ([{"name": "empty"}], "'empty' of words asks nothing"),
    ([{"name": "blank", "where": {}}], "'blank' of words: \"where\" must be a non-empty object"),
    ([{"name": "text", "where_document": "😀"}], "'text' of words: \"where_document\" must be"),
    ([{"name": "near", "near_ids": "one-id"}], "'near' of words: \"near_ids\" must be a list"),
    ([{"name": "k", "near_ids": ["a"], "n_results": 0}], "'k' of words: \"n_results\" must be"),
    ([{"name": "k", "near_ids": ["a"], "n_results": True}], "'k' of words: \"n_results\" must be"),
    ([{"name": "limit", "where": {"kind": "word"}, "n_results": 3}], "'limit' of words: \"n_results\" needs"),
    ([STEADY, STEADY], "'word records' is used twice"),
    ([], "expected a non-empty list"),
    (["where kind = word"], r"words\[0\] is a str"),
])
def test_every_malformed_shape_names_the_query(queries, message):
    with pytest.raises(MigrationError, match=message):
        behaviour.validate_sample_queries({"words": queries})


def test_a_sample_query_failing_in_one_version_only_is_a_change():
    sample = {"words": [{"name": "regex", "where_document": {"$regex": "^TOT"}}]}
    answers = {"source": {"collections": {"words": {"answers": [{"name": "regex", "error": "ValueError: $regex"}]}}},
               "target": {"collections": {"words": {"answers": [{"name": "regex", "count": 2, "ids": ["a", "b"],
                                                                 "digest": "x"}]}}}}
    compared, changed, notes = behaviour.compare_sample_answers(sample, answers, "0.6.3", LATEST)
    assert compared == 1 and notes == []
    assert changed[0]["error"] == "ValueError: $regex" and "fails in chromadb 0.6.3 only" in changed[0]["text"]


def _best(rows: list[list[str]]) -> list[list[tuple[float, str]]]:
    """Exact neighbours as verify has them: each query's own record first, at distance 0."""
    return [[(0.0 if position == 0 else 1.0 + position, record_id) for position, record_id in enumerate(row)]
            for row in rows]


def test_nearest_neighbour_answers_that_differ_are_listed():
    source = [["q1", "a", "b"], ["q2", "c", "d"], ["q3", "e", "f"]]
    target = [["q1", "a", "b"], ["q2", "c", "x"], ["q3", "f", "e"]]  # the last differs in order only
    found = behaviour.nearest_changes(source, target, _best(source), "l2", 3)
    assert found == {"queries": 3, "k": 3, "differing": 1,
                     "examples": [{"query": "q2", "lost": ["d"], "gained": ["x"]}]}
    entry = behaviour.nearest_entry("words", found, "0.6.3", LATEST)
    assert entry is not None and entry["kind"] == "nearest"
    assert (entry["only_source"], entry["only_target"]) == (["d"], ["x"])
    assert entry["text"].startswith("words: 1 of 3 nearest-neighbour queries (k=3) answer differently")
    assert "e.g. query q2: lost d; gained x" in entry["text"]
    seen = behaviour.build_behaviour([{"collection": "words", "nearest_changes": found}], {}, (0, [], []),
                                     "0.6.3", LATEST)
    assert seen["queries"] == 3 and [e["kind"] for e in seen["changed"]] == ["nearest"]


def test_identical_nearest_neighbour_answers_list_nothing():
    answers = [["q1", "a", "b"], ["q2", "c", "d"]]
    found = behaviour.nearest_changes(answers, [list(row) for row in answers], _best(answers), "cosine", 3)
    assert found["differing"] == 0 and behaviour.nearest_entry("words", found, "1.3.7", LATEST) is None
    seen = behaviour.build_behaviour([{"collection": "words", "nearest_changes": found}], {}, (0, [], []),
                                     "1.3.7", LATEST)
    assert seen == {"queries": 2, "changed": [], "notes": []}
    assert behaviour.summary_line(seen).startswith("none (2 queries")


def test_a_changed_search_ef_is_a_note_for_collections_with_records():
    results = [{"collection": name, "records": {"target_count": count}, "nearest_changes": {},
                "index": {"source": {"search_ef": 10}, "target": {"search_ef": 100}}}
               for name, count in (("words", 200), ("empty_collection", 0))]
    seen = behaviour.build_behaviour(results, {}, (0, [], []), "0.6.3", LATEST)
    assert seen["changed"] == [] and len(seen["notes"]) == 1
    assert seen["notes"][0].startswith("words: query() searches with ef 100 instead of 10")
    assert behaviour.summary_line(seen).startswith("not measured")
