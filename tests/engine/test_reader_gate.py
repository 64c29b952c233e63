"""The reader gate says which pinned readers can read a snapshot, and why the others cannot.

Real databases written by chromadb 1.5.9 (the state after a migration to it), smoke-read by
each shipped reader version; the verdict itself is a pure function, so every way a reader
can fail is also fed to it directly, damaged in exactly one way.
"""

from __future__ import annotations

import numpy as np
import pytest

from chroma_migrate import reader_gate
from chroma_migrate.content_digest import content_digest
from chroma_migrate.errors import MigrationError, WorkerFailedError
from chroma_migrate.reader_gate import ExpectedCollection, check_readers, judge
from chroma_migrate_testkit.fixtures import receipt_spec

pytestmark = pytest.mark.integration

READERS = {"old-api": "0.6.3", "lambda": "1.0.20", "search": "1.3.7", "current": "1.5.9", "ancient": "0.3.29"}


def small_spec(**overrides):
    return receipt_spec(records=200, big_dim=None, **overrides)


# ---------------------------------------------------------------- real readers on a 1.5.9 database

def test_a_1_5_9_database_breaks_0_6_3_and_1_0_20_only(copy_of, tmp_path):
    report = check_readers(copy_of("1.5.9", small_spec()), READERS, tmp_path / "gate")
    rows = {row.reader: row for row in report.rows}
    assert report.breaking() == ["old-api", "lambda", "ancient"]
    assert "every collection (5) fails: open: KeyError: '_type'" in rows["old-api"].reason
    assert "cannot open the database" in rows["lambda"].reason
    assert "PanicException: range start index 10 out of range for slice of length 9" in rows["lambda"].reason
    assert "0.3.29" in rows["ancient"].reason and not rows["ancient"].collections
    for name in ("search", "current"):
        assert rows[name].can_read, rows[name].reason
        assert {c.name for c in rows[name].collections} == {"words", "lines", "scores_ip", "log_only",
                                                          "empty_collection"}
        assert all(c.ok and c.count == c.expected_count for c in rows[name].collections)
        assert sum(c.queries for c in rows[name].collections) >= 60, "the own-vector query ran"
    assert list(tmp_path.joinpath("gate").iterdir()) == [], "the copies were removed"
    shown = report.to_dict()
    assert shown["breaking"] == report.breaking() and not shown["can_all_read"]
    assert set(shown["readers"][3]) == {"reader", "version", "can_read", "reason", "collections", "seconds"}
    text, markdown = report.render_text(), report.render_markdown()
    assert text.splitlines()[0].split() == ["reader", "version", "can", "read", "why"]
    assert "| search | 1.3.7 | yes |" in markdown and "| lambda | 1.0.20 | NO |" in markdown


@pytest.mark.parametrize("seed", [1, 2])
def test_correct_readers_are_never_flagged(copy_of, tmp_path, seed):
    """Other records, other HNSW graphs: the own-vector check must still pass for correct readers."""
    db = copy_of("1.5.9", small_spec(seed=seed))
    report = check_readers(db, {"search": "1.3.7", "current": "1.5.9"}, tmp_path / "gate", sample_size=30)
    assert report.breaking() == [], report.render_text()


def test_list_metadata_read_by_1_3_7_is_silently_wrong_and_named(copy_of, tmp_path):
    """Measured: 1.3.7 opens a 1.5.9 database with list metadata without any error, counts and finds
    every record, but get() drops the list-valued keys; the gate names the collections holding them."""
    report = check_readers(copy_of("1.5.9", small_spec(with_lists=True)), {"search": "1.3.7", "current": "1.5.9"},
                           tmp_path / "gate")
    search, current = report.rows
    assert current.can_read, current.reason
    assert not search.can_read
    assert search.reason.startswith("collection 'lines' document or metadata differ for ")
    checks = {c.name: c for c in search.collections}
    assert {name for name, c in checks.items() if not c.ok} == {"words", "lines"}
    assert all(c.error is None and c.count == c.expected_count and not c.missing for c in checks.values())
    assert all(c.content_differs for c in (checks["words"], checks["lines"]))


# ---------------------------------------------------------------- the verdict, damaged one way at a time

IDS = [f"id-{i:03d}" for i in range(20)]


def expected() -> dict[str, ExpectedCollection]:
    digests = {i: content_digest(f"doc {i}", {"n": 1, "ok": True}) for i in IDS}
    return {"words": ExpectedCollection("words", 100, digests, list(IDS), np.zeros((20, 4), np.float32)),
            "empty": ExpectedCollection("empty", 0, {}, [], np.zeros((0, 4), np.float32))}


def correct_answer() -> dict:
    wanted = expected()
    return {"version": "1.5.9", "open_error": None, "listed": ["empty", "words"], "list_error": None,
            "collections": {name: {"count": item.count, "returned": dict(item.digests),
                                   "own_hits": dict.fromkeys(item.query_ids, True), "error": None}
                            for name, item in wanted.items()}}


def damaged(change) -> dict:
    answer = correct_answer()
    change(answer, answer["collections"]["words"])
    return answer


def test_a_correct_answer_is_never_flagged():
    can_read, reason, checks = judge(expected(), correct_answer())
    assert can_read and reason == "reads all 2 collections correctly"
    assert [c.ok for c in checks] == [True, True]


def test_a_few_hnsw_misses_are_tolerated():
    answer = damaged(lambda _a, words: words["own_hits"].update({IDS[0]: False, IDS[1]: False, IDS[2]: False}))
    assert judge(expected(), answer)[0]


def miss_most_queries(_answer, words):
    words["own_hits"] = {i: n % 4 == 0 for n, i in enumerate(IDS)}


@pytest.mark.parametrize(("change", "named"), [
    (lambda _a, words: words.update(count=99), "collection 'words' count() is 99, the database holds 100"),
    (lambda _a, words: words["returned"].pop(IDS[7]), "collection 'words' get() returns 19 of 20 sampled ids "
                                                       "(first: id-007)"),
    (lambda _a, words: words["returned"].update({IDS[3]: content_digest("doc id-003", {"n": 1.0, "ok": True})}),
     "collection 'words' document or metadata differ for 1 of 20 sampled records (first: id-003)"),
    (miss_most_queries, "collection 'words' a query by its own stored vector returns the record in the top 5 "
                        "for only 5 of 20 sampled records"),
    (lambda _a, words: words.update(count=None, returned={}, own_hits={},
                                    error="get: InternalError: Error sending backfill request to compactor"),
     "collection 'words' fails: get: InternalError: Error sending backfill request to compactor"),
    (lambda answer, _w: answer.update(open_error="open client: PanicException: range start index 10"),
     "cannot open the database: open client: PanicException: range start index 10"),
    (lambda answer, _w: answer["collections"].pop("words"), "collection 'words' was not read at all"),
], ids=["count", "missing-ids", "content", "own-vector-query", "collection-error", "open-error", "not-read"])
def test_every_check_can_fail_and_names_it(change, named):
    can_read, reason, _checks = judge(expected(), damaged(change))
    assert not can_read
    assert reason.startswith(named), reason


def test_a_reader_that_opens_but_sees_nothing_is_flagged():
    """The silent case: no error anywhere, but no collections and nothing in them."""
    answer = correct_answer()
    answer["listed"] = []
    for seen in answer["collections"].values():
        seen.update(count=0, returned={}, own_hits={})
    can_read, reason, checks = judge(expected(), answer)
    assert not can_read
    assert reason.startswith("collection 'words' count() is 0, the database holds 100 (+")
    assert reader_gate._listing_problem(expected(), answer) == (
        "list_collections() shows 0 of 2 collections (absent: empty, words)")
    assert checks[1].missing == IDS


def test_the_listing_alone_flags_a_reader():
    answer = correct_answer()
    answer["listed"] = ["words"]
    assert judge(expected(), answer)[1] == "list_collections() shows 1 of 2 collections (absent: empty)"


def test_a_crashed_worker_is_a_row_not_a_crash(monkeypatch, tmp_path):
    def killed(*_args, **_kwargs):
        raise WorkerFailedError("chromadb 1.0.20 was killed by SIGABRT during smoke_read.", "")
    monkeypatch.setattr(reader_gate, "run_worker", killed)
    (tmp_path / "db").mkdir()
    queries = {"words": "w.npy", "empty": "e.npy"}
    row = reader_gate._check_reader("lambda", "1.0.20", tmp_path / "db", expected(), queries, tmp_path / "copy")
    assert (row.can_read, row.reason) == (False, "chromadb 1.0.20 was killed by SIGABRT during smoke_read.")


def test_the_digest_ignores_how_a_version_hands_values_back():
    plain = content_digest("d", {"n": 3, "x": 0.5, "flag": True, "tags": ["a", "b"]})
    assert content_digest("d", {"tags": ("a", "b"), "flag": True, "x": np.float64(0.5), "n": np.int64(3)}) == plain
    assert content_digest("d", {"n": 3, "x": 0.5, "flag": 1, "tags": ["a", "b"]}) != plain
    assert content_digest("d", {"n": 3.0, "x": 0.5, "flag": True, "tags": ["a", "b"]}) != plain
    assert content_digest(None, None) == content_digest(None, {}) != content_digest("", None)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(("readers", "problem", "fix"), [
    ({"": "1.3.7"}, "A reader has an empty name", "Give every reader a non-empty name"),
    ({"  ": "1.3.7"}, "A reader has an empty name", "Give every reader a non-empty name"),
    ({"lambda": "1.3"}, "Reader 'lambda' has version '1.3', which is not of the form X.Y.Z.", "e.g. 1.3.7"),
    ({"lambda": "latest"}, "Reader 'lambda' has version 'latest'", "Pin reader 'lambda' to an exact chromadb"),
])
def test_a_bad_readers_mapping_is_refused_before_any_work(tmp_path, readers, problem, fix):
    with pytest.raises(MigrationError) as raised:
        check_readers(tmp_path / "no-such-db", readers, tmp_path / "gate")
    assert raised.value.problem.startswith(problem) and fix in raised.value.fix
    assert not (tmp_path / "gate").exists()
