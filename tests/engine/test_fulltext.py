"""The target's full-text index holds exactly its documents, and its where/where_document answers
match a fresh database of its own version holding the same records.

Every database here is written by a real chromadb version (fixtures, or a real migration);
damage is done with sqlite3 on a private copy.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from chroma_migrate import exchange
from chroma_migrate.exchange import RecordBatch
from chroma_migrate.runtimes import ensure_runtime
from chroma_migrate.verification.fulltext import check_fulltext, fulltext_problems, metadata_segments
from chroma_migrate.verification.fulltext_queries import (
    PreparedJob,
    TextCheckInput,
    TextQuery,
    build_queries,
    check_text_queries,
    compare_text_answers,
    prepare_jobs,
    run_text_jobs,
    sample_records,
)
from chroma_migrate.versions import shipped_version_names
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fixtures import fidelity_spec, receipt_spec
from tests.conftest import run_cli
from tests.engine.fulltext_support import export_batches

pytestmark = pytest.mark.integration

FTS = "embedding_fulltext_search"
OLDEST, LATEST = "0.4.24", "1.5.9"
RUNTIME_OPS = Path(__file__).with_name("fulltext_runtime_ops.py")


def _sql(db: Path, *statements: str, params: tuple = ()) -> list[tuple]:
    """Run statements on a copy's chroma.sqlite3 (damage) and return the last one's rows."""
    with closing(sqlite3.connect(db / "chroma.sqlite3")) as conn:
        rows: list[tuple] = []
        for statement in statements:
            rows = conn.execute(statement, params if "?" in statement else ()).fetchall()
        conn.commit()
    return rows


def _records(db: Path, collection: str, *, documented: bool) -> list[tuple[int, str, str | None]]:
    """(rowid, id, document) of a collection's records with or without a document, in rowid order."""
    segment = metadata_segments(db)[collection]
    test = "IS NOT NULL" if documented else "IS NULL"
    return _sql(db, "SELECT e.id, e.embedding_id, d.string_value FROM embeddings e LEFT JOIN embedding_metadata d "
                    f"ON d.id = e.id AND d.key = 'chroma:document' WHERE e.segment_id = ? AND d.string_value {test} "
                    "ORDER BY e.id", params=(segment,))


def _rowid(db: Path, collection: str, record_id: str) -> int:
    """The record's rowid in this collection (fixture collections share ids)."""
    return _sql(db, "SELECT id FROM embeddings WHERE segment_id = ? AND embedding_id = ?",
                params=(metadata_segments(db)[collection], record_id))[0][0]


def _set_document(db: Path, rowid: int, text: str, *, metadata: bool, fts: bool) -> None:
    if metadata:
        _sql(db, "UPDATE embedding_metadata SET string_value = ? WHERE id = ? AND key = 'chroma:document'",
             params=(text, rowid))
    if fts:
        _sql(db, f"UPDATE {FTS} SET string_value = ? WHERE rowid = ?", params=(text, rowid))


def _break_index(db: Path, rowids: list[int], text: str = "qqqq qqqq") -> None:
    """Index `rowids` under other text, then put their content back: the content is right, the index is not."""
    with closing(sqlite3.connect(db / "chroma.sqlite3")) as conn:
        for rowid in rowids:
            (original,) = conn.execute(f"SELECT c0 FROM {FTS}_content WHERE id = ?", (rowid,)).fetchone()
            conn.execute(f"UPDATE {FTS} SET string_value = ? WHERE rowid = ?", (text, rowid))
            conn.execute(f"UPDATE {FTS}_content SET c0 = ? WHERE id = ?", (original, rowid))
        conn.commit()


def _in_runtime(version: str, *args: str) -> dict:
    """One write the worker has no operation for, by chromadb `version` itself."""
    python = ensure_runtime(version, log=lambda _m: None).python
    result = subprocess.run([str(python), str(RUNTIME_OPS), *args], capture_output=True, text=True, timeout=300,
                            env={"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the index itself

@pytest.mark.parametrize("version", shipped_version_names())
def test_every_default_fixture_passes(copy_of, version):
    db = copy_of(version)
    report = check_fulltext(db, metadata_segments(db))
    assert report.problems == []
    assert report.collections["words"]["documents"] > 500
    if version == OLDEST:  # 0.4 leaves the rows of deleted documents: a note, not a problem, in a 0.x file
        assert len(report.notes) == 1 and "point to no record" in report.notes[0]
    else:
        assert report.notes == []


def _delete_row(db: Path, documented: tuple, _undocumented: tuple) -> None:
    _sql(db, f"DELETE FROM {FTS} WHERE rowid = {documented[0]}")


def _change_text(db: Path, documented: tuple, _undocumented: tuple) -> None:
    _set_document(db, documented[0], "changed text", metadata=False, fts=True)


def _extra_row(db: Path, _documented: tuple, undocumented: tuple) -> None:
    # 0.x already holds a NULL row for a record without a document: replace it with text.
    _sql(db, f"DELETE FROM {FTS} WHERE rowid = {undocumented[0]}",
         f"INSERT INTO {FTS}(rowid, string_value) VALUES ({undocumented[0]}, 'phantom text')")


def _index_disagrees(db: Path, documented: tuple, _undocumented: tuple) -> None:
    _break_index(db, [documented[0]])


def _garbage_block(db: Path, _documented: tuple, _undocumented: tuple) -> None:
    _sql(db, f"UPDATE {FTS}_data SET block = randomblob(length(block)) "
             f"WHERE id = (SELECT MIN(id) FROM {FTS}_data WHERE id > 10)")


DAMAGES = {  # name: (what a problem says, the damage)
    "one row deleted": ("have no full-text row", _delete_row),
    "one row's text changed": ("other than their document", _change_text),
    "an extra row for a record without a document": ("without a document have full-text text", _extra_row),
    "the index disagrees with its content": ("integrity-check", _index_disagrees),
    "a garbage index block": ("full-text index", _garbage_block),
}


@pytest.mark.parametrize("version", [OLDEST, LATEST])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_each_damage_is_a_problem(copy_of, version, damage):
    db = copy_of(version)
    expected, apply = DAMAGES[damage]
    documented, undocumented = _records(db, "words", documented=True)[20], _records(db, "words", documented=False)[0]
    apply(db, documented, undocumented)
    problems = fulltext_problems(db, metadata_segments(db))
    assert any(expected in problem for problem in problems), problems
    if "row" in damage:  # row damage names the collection and the record
        record = undocumented if "without a document" in damage else documented
        assert any(problem.startswith("words: 1 of ") and record[1] in problem for problem in problems), problems


def test_a_row_pointing_nowhere_is_a_problem_once_1x_writes_the_file(copy_of):
    for version, is_problem in ((OLDEST, False), ("0.6.3", False), (LATEST, True)):
        db = copy_of(version)
        _sql(db, f"INSERT INTO {FTS}(rowid, string_value) SELECT MAX(id) + 1, 'phantom text' FROM embeddings")
        report = check_fulltext(db, metadata_segments(db))
        found = [text for text in (report.problems if is_problem else report.notes) if "point to no record" in text]
        assert found and "1 lie above the highest record id" in found[0], (version, report.to_json())
        if not is_problem:
            assert report.problems == []


def test_probes_alone_find_an_index_that_answers_for_other_text(copy_of):
    """With the integrity-check off, trigram MATCH probes on the file still see a wrong index."""
    db = copy_of(LATEST)
    _break_index(db, [rowid for rowid, _, _ in _records(db, "words", documented=True)])
    report = check_fulltext(db, metadata_segments(db), integrity=False)
    assert any(p.startswith("words: the full-text index does not return") for p in report.problems), report.problems
    assert "integrity_check" not in report.seconds


def test_0_4_leaves_a_deleted_document_and_replaces_it_on_reuse(copy_of):
    db = copy_of(OLDEST)
    deleted = _in_runtime(OLDEST, "delete-last", str(db))
    after_delete = check_fulltext(db, metadata_segments(db))
    assert after_delete.problems == [] and "1 lie above the highest record id" in after_delete.notes[0]
    added = _in_runtime(OLDEST, "add", str(db), deleted["collection"], "new-without-document", "-")
    assert added["rowid"] == deleted["rowid"]  # SQLite hands out the freed rowid again
    assert fulltext_problems(db, metadata_segments(db)) == []  # 0.4 replaced the stale row with a NULL one


def test_a_stale_row_in_a_file_1x_migrated_breaks_later_writes(copy_of):
    """Why rows pointing nowhere are a problem in a 1.x file: 1.5.9 keeps 0.4's stale rows when it
    migrates the file, a documentless record reusing the rowid inherits the deleted text, and a
    record with a document fails to write."""
    spec = receipt_spec(missing_documents=False, big_dim=None)  # 1.x can upgrade these 0.4 files in place
    db = copy_of(OLDEST, spec)
    deleted = _in_runtime(OLDEST, "delete-last", str(db))
    second = shutil.copytree(db, db.with_name("second-copy"))

    added = _in_runtime(LATEST, "add", str(db), deleted["collection"], "new-without-document", "-")
    assert added["rowid"] == deleted["rowid"]
    report = check_fulltext(db, metadata_segments(db))
    assert any(p.startswith(f"{deleted['collection']}: 1 of ") and "new-without-document" in p
               for p in report.problems), report.problems
    assert any("point to no record" in p for p in report.problems)  # 0.4's other stale rows, now in a 1.x file

    failed = _in_runtime(LATEST, "add", str(second), deleted["collection"], "new-with-document", "a document")
    assert "metadata segment" in failed.get("error", ""), failed


# ---------------------------------------------------------------- queries: unit level

def _batch(documents: list[str | None], metadatas: list[dict | None]) -> RecordBatch:
    ids = [f"id-{i:03d}" for i in range(len(documents))]
    embeddings = np.arange(len(ids) * 4, dtype=np.float32).reshape(len(ids), 4)
    return RecordBatch(ids, embeddings, documents, [None] * len(ids),
                       [exchange.canonical_metadata(m) for m in metadatas])


def test_queries_are_built_from_what_the_sample_holds():
    documents = ["TOTAL 1", "Café 2", "😀 3", None, "Milk 2% 5", "東京 6", "TOTAL 7"]
    metadatas = [{"text": t, "n": i, "score": i / 3, "flag": i % 2 == 0} for i, t in enumerate("abcabca")]
    queries, reasons = build_queries(_batch(documents, metadatas))
    by_key = {q.key: q for q in queries}
    assert by_key["contains_emoji"].where_document == {"$contains": "😀"}
    assert by_key["not_contains_emoji"].where_document == {"$not_contains": "😀"}
    assert by_key["contains_percent"].where_document == {"$contains": "%"}
    assert len(by_key["contains_1_char"].where_document["$contains"]) == 1
    assert len(by_key["contains_2_chars"].where_document["$contains"]) == 2
    assert not any(by_key["contains_absent"].where_document["$contains"] in d for d in documents if d)
    assert {"and", "or", "not_contains_word", "str_eq", "str_ne", "str_in", "int_gt", "float_lt", "bool_eq",
            "where_and_document"} <= set(by_key)
    threshold = by_key["float_lt"].where["score"]["$lt"]
    assert threshold not in {m["score"] for m in metadatas}  # never on a stored value (1.x may shift it 1 ulp)
    assert reasons == []

    bare, reasons = build_queries(_batch([None, None], [None, None]))
    assert bare == [] and any("no sampled record has a document" in r for r in reasons)


def test_the_sample_comes_from_every_batch_and_is_bounded(copy_of, tmp_path):
    db = copy_of(LATEST)
    files = export_batches(db, "words", tmp_path / "batches", batch_size=100)
    sample = sample_records(files, limit=60)
    assert len(sample) <= 60 and sample.ids == sorted(sample.ids)
    for file in files:
        assert set(exchange.read_batch(file).ids) & set(sample.ids), f"nothing sampled from {file.name}"
    assert None in sample.documents and any("😀" in (d or "") for d in sample.documents)
    everything = sample_records(files, limit=10_000)
    assert len(everything) == sum(len(exchange.read_batch(f)) for f in files)


def test_comparison_rules():
    job = PreparedJob(TextCheckInput("words", []), Path("unused"), 4, [
        TextQuery("a", where_document={"$contains": "x"}), TextQuery("b", where_document={"$regex": "^x"}),
        TextQuery("c", where={"k": {"$ne": 1}})], [])
    target = {"answers": [
        {"key": "a", "fresh": ["1", "2"], "fresh_error": None, "target": ["1"], "target_error": None},
        {"key": "b", "fresh": ["1"], "fresh_error": None, "target": None, "target_error": "ValueError: boom"},
        {"key": "c", "fresh": ["1", "2", "3"], "fresh_error": None, "target": ["1", "2", "3"], "target_error": None}]}
    source = {"answers": [{"key": "a", "fresh": ["1", "2"], "fresh_error": None},
                          {"key": "b", "fresh": None, "fresh_error": "ValueError: no $regex"},
                          {"key": "c", "fresh": ["1"], "fresh_error": None}]}
    report = compare_text_answers(job, target, LATEST, source, OLDEST)
    assert len(report.problems) == 2 and "only fresh: 2" in report.problems[0] and "boom" in report.problems[1]
    assert report.notes == [f'words: where {{"k": {{"$ne": 1}}}} matches 1 of 4 sampled records in {OLDEST} '
                            f"and 3 in {LATEST} (only in {OLDEST}: -; only in {LATEST}: 2, 3)"]
    assert len(report.skipped) == 1 and "rejects it" in report.skipped[0]


def test_a_target_that_answered_nothing_is_a_problem_not_agreement():
    job = PreparedJob(TextCheckInput("words", []), Path("unused"), 4, [
        TextQuery("a", where_document={"$contains": "x"})], [])
    fresh_only = {"answers": [{"key": "a", "fresh": ["1"], "fresh_error": None}]}
    for target in ({}, fresh_only):
        report = compare_text_answers(job, target, LATEST)
        assert report.problems == ['words: the target gave no answer to 1 of 1 queries '
                                   '(e.g. where_document {"$contains": "x"})'], report.problems


# ---------------------------------------------------------------- queries against real versions

@pytest.mark.parametrize("version", shipped_version_names())
def test_the_target_answers_like_a_fresh_database_of_its_version(copy_of, tmp_path, version):
    db = copy_of(version)
    checks = [TextCheckInput(name, export_batches(db, name, tmp_path / name), {"hnsw:space": space})
              for name, space in (("words", "cosine"), ("lines", "l2"))]
    report = check_text_queries(db, version, checks, tmp_path / "scratch")
    assert report.problems == [], report.problems
    assert report.notes == []  # no source version: nothing to compare with
    for name in ("words", "lines"):
        assert 150 <= report.collections[name]["sample_size"] <= 200
        assert report.collections[name]["queries"] >= 15
    regex_skips = [s for s in report.skipped if "$regex" in s]
    assert bool(regex_skips) == version.startswith("0."), report.skipped


@pytest.mark.parametrize("version", [v for v in shipped_version_names() if not v.startswith("0.")])
def test_a_1x_target_s_sample_database_answers_exactly_like_the_target(copy_of, tmp_path, version):
    """1.x targets are asked through a copy of their rows of the sampled records (worker/sample_database.py):
    on every collection of the fidelity fixture (tenants, arrays, every metadata type) it must give the
    whole target's answers, query for query."""
    db = copy_of(version, fidelity_spec())
    labels = sorted(metadata_segments(db))
    checks = [TextCheckInput(label, export_batches(db, label, tmp_path / f"b{n}")) for n, label in enumerate(labels)]
    jobs = [item.to_job() for item in prepare_jobs(checks, tmp_path / "scratch")]
    answers = {}
    for whole in (False, True):
        data = run_worker(version, "text_queries", {"path": str(db), "jobs": jobs, "scratch_dir": str(tmp_path),
                                                    "whole_target": whole}).data["jobs"]
        answers[whole] = {label: [(a["key"], a["target"], a["target_error"]) for a in job["answers"]]
                          for label, job in data.items()}
        assert {job["asked_of"] for job in data.values()} == {"target" if whole else "sample database"}
    assert len(answers[False]) == len(labels) >= 3
    assert sum(len(queries) for queries in answers[False].values()) >= 30
    assert answers[False] == answers[True]


def test_a_real_0_4_to_1_5_migration_passes_and_reports_the_behaviour_changes(copy_of, tmp_path):
    source = copy_of(OLDEST)
    files = export_batches(source, "words", tmp_path / "batches")
    out = tmp_path / "out"
    result = run_cli("migrate", str(source), str(out), "--target", LATEST, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fulltext_problems(out, metadata_segments(out)) == []

    prepared = prepare_jobs([TextCheckInput("words", files, {"hnsw:space": "cosine"})], tmp_path / "scratch")
    report = run_text_jobs(out, LATEST, prepared, tmp_path / "scratch", source_version=OLDEST)
    assert report.problems == [], report.problems
    changes = {change["key"]: change for change in report.changes}
    sample = exchange.read_batch(prepared[0].sample_file)
    with_emoji = {i for i, d in zip(sample.ids, sample.documents, strict=True) if d and "😀" in d}
    without_document = {i for i, d in zip(sample.ids, sample.documents, strict=True) if d is None}
    # `$contains "😀"`: 0.4.24 (SQLite's trigram LIKE on a short non-ASCII pattern) finds none of them.
    assert with_emoji and changes["contains_emoji"]["source"] == []
    assert set(changes["contains_emoji"]["target"]) == with_emoji
    # `$not_contains`: records without a document are excluded by 0.4.24, included by 1.5.9.
    word_change = changes["not_contains_word"]
    assert without_document and set(word_change["target"]) - set(word_change["source"]) == without_document
    assert set(word_change["source"]) <= set(word_change["target"])
    assert any(note.startswith('words: where_document {"$contains": "😀"} matches 0 of ') for note in report.notes)
    assert any("$regex" in s and "rejects it" in s for s in report.skipped)


def _word_and_matching_record(prepared: PreparedJob) -> tuple[str, str]:
    word = next(q for q in prepared.queries if q.key == "contains_word").where_document["$contains"]
    sample = exchange.read_batch(prepared.sample_file)
    return word, next(i for i, d in zip(sample.ids, sample.documents, strict=True) if d and word in d)


@pytest.mark.parametrize("where", ["metadata and full-text", "metadata only", "full-text only"])
def test_a_document_changed_with_sqlite_is_caught(copy_of, tmp_path, where):
    db = copy_of(LATEST)
    files = export_batches(db, "words", tmp_path / "batches")  # the records as they were: the sample's truth
    prepared = prepare_jobs([TextCheckInput("words", files, {"hnsw:space": "cosine"})], tmp_path / "scratch")
    _word, record_id = _word_and_matching_record(prepared[0])
    rowid = _rowid(db, "words", record_id)
    _set_document(db, rowid, "changed text", metadata=where != "full-text only", fts=where != "metadata only")

    index_problems = fulltext_problems(db, metadata_segments(db))
    answers = run_text_jobs(db, LATEST, prepared, tmp_path / "scratch")
    answer_problems = [m for m in answers.mismatches if record_id in m["only_fresh"]]
    if where == "metadata and full-text":  # consistent with itself, so only the answers show it
        assert index_problems == [] and answer_problems
    elif where == "metadata only":  # chromadb answers from the full-text table, so only the index check shows it
        assert any(record_id in p for p in index_problems) and not answers.mismatches
    else:
        assert any(record_id in p for p in index_problems) and answer_problems
    assert all(p.startswith("words: ") for p in answers.problems)


def test_0_4_answers_through_the_index_so_a_broken_one_changes_its_answers(copy_of, tmp_path):
    db = copy_of(OLDEST)
    files = export_batches(db, "words", tmp_path / "batches")
    prepared = prepare_jobs([TextCheckInput("words", files, {"hnsw:space": "cosine"})], tmp_path / "scratch")
    _word, record_id = _word_and_matching_record(prepared[0])
    rowid = _rowid(db, "words", record_id)
    _break_index(db, [rowid])
    assert fulltext_problems(db, metadata_segments(db), probes=0)  # the integrity-check alone sees it
    report = run_text_jobs(db, OLDEST, prepared, tmp_path / "scratch")
    assert any(m["key"] == "contains_word" and m["only_fresh"] == [record_id] for m in report.mismatches)


def test_collections_of_other_tenants_and_databases(tmp_path):
    from tests.conftest import database_copy

    db = database_copy(LATEST, tmp_path, fidelity_spec())
    segments = metadata_segments(db)
    assert "tenant_two/db_two/words" in segments and "words" in segments
    assert fulltext_problems(db, segments) == []
    checks = [TextCheckInput(label, export_batches(db, label, tmp_path / f"b{n}")) for n, label in
              enumerate(("words", "tenant_two/db_two/words"))]
    report = check_text_queries(db, LATEST, checks, tmp_path / "scratch")
    assert report.problems == [] and set(report.collections) == {"words", "tenant_two/db_two/words"}
