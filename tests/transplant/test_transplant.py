"""The transplant writes databases every target version reads, writes and queries as its own.

Sources are written by the real versions. The oracle is the versions themselves, apart from
the engine: the source version's get() and query() on a copy of the source against the
target version's on a copy of OUT, and the target writing to OUT and reopening it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chroma_migrate.exchange import RecordBatch, write_batch
from chroma_migrate.native import open_database
from chroma_migrate.transplant.graph_choice import GraphPath, choose_graph
from chroma_migrate.versions import shipped_version_names, version_key
from chroma_migrate.worker_client import run_worker
from tests.conftest import CLI, REPO, dump_records, tree_digest
from tests.engine.records import assert_same_records, spaces_of
from tests.native.hnsw_damage import move_entry_point, segment_folder

pytestmark = pytest.mark.integration

VERSIONS = shipped_version_names()


def _needs_transplant(source: str, target: str) -> bool:
    """Pairs an upgrade cannot serve: a downgrade, or 0.x into 1.x (the fixtures' documentless log rows)."""
    return version_key(target) < version_key(source) or (source.startswith("0.") and target.startswith("1."))


ALL_PAIRS = [(s, t) for s in VERSIONS for t in VERSIONS if _needs_transplant(s, t)]
# Every target family (0.4, 0.5/0.6, 1.x) and source family once in CI; the whole matrix with `make test-slow`.
# (tests/engine/test_migrate.py transplants four more downgrades and every 0.x source into 1.5.9 in CI,
# compared record by record; tests/engine/test_fidelity.py one more, written to by the target.)
CI_PAIRS = {("1.5.9", "0.6.3")}
PAIRS = [pytest.param(s, t, marks=() if (s, t) in CI_PAIRS else pytest.mark.slow) for s, t in ALL_PAIRS]


def transplant(db: Path, out: Path, target: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    before = tree_digest(db)
    result = subprocess.run([*CLI, "migrate", str(db), str(out), "--target", target, "--json", *extra],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_digest(db) == before, "the source database was modified"
    return json.loads(result.stdout)


def graphs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in report["verification"]["transplant"]["collections"]}


def may_round(db: Path, report: dict[str, Any]) -> dict[str, set[str]]:
    """Per cosine collection, the records whose vector cannot come back bit for bit: those 0.x serves
    raw from its unflushed batch (they go through the target's index once), and every record of a
    graph built anew (hnswlib normalises what get() returned)."""
    built = {name for name, item in graphs(report).items() if item["graph"] == GraphPath.BUILT}
    found = {}
    with open_database(db) as native:
        for collection in native.collections():
            if collection.space != "cosine":
                continue
            sources = collection.vectors.sources
            found[collection.name] = (set(collection.ids()) if collection.name in built
                                      else {i for i, (_, raw) in sources.from_log.items() if raw})
    return found


def assert_bit_exact(expected: dict[str, Any], got: dict[str, Any], allowed: dict[str, set[str]]) -> None:
    for name, collection in expected.items():
        for record_id, record in collection["records"].items():
            same = (np.asarray(record["embedding"], np.float32).tobytes()
                    == np.asarray(got[name]["records"][record_id]["embedding"], np.float32).tobytes())
            assert same or record_id in allowed.get(name, set()), f"{name}/{record_id}: embedding not bit-exact"


def nearest(version: str, db: Path, scratch: Path, queries: dict[str, np.ndarray]) -> dict[str, list[list[str]]]:
    """The version's own query() on a copy of `db` (every open may write)."""
    copy = scratch / f"query-{version}-{db.name}"
    shutil.copytree(db, copy)
    jobs = []
    for name, vectors in queries.items():
        np.save(scratch / f"{name}-{db.name}.npy", vectors)
        jobs.append({"collection": name, "queries_file": str(scratch / f"{name}-{db.name}.npy"), "k": 10})
    return run_worker(version, "query", {"path": str(copy), "jobs": jobs}).data


def query_vectors(dump: dict[str, Any], per_collection: int = 20) -> dict[str, np.ndarray]:
    found = {}
    for name, collection in dump.items():
        records = sorted(collection["records"])[::max(1, len(collection["records"]) // per_collection)]
        if records:
            found[name] = np.asarray([collection["records"][i]["embedding"] for i in records], np.float32)
    return found


@pytest.mark.parametrize(("source_version", "target_version"), PAIRS)
def test_the_target_reads_queries_and_writes_what_was_transplanted(copy_of, tmp_path, source_version,
                                                                   target_version):
    db = copy_of(source_version)
    out = tmp_path / "out"
    report = transplant(db, out, target_version, "--strategy", "transplant")
    assert report["strategy"] == "transplant", report["attempts"]
    paths = {name: item["graph"] for name, item in graphs(report).items()}
    assert paths["words"] == paths["lines"] == GraphPath.CARRIED  # flushed, sound, the target's settings
    assert paths["log_only"] == GraphPath.BUILT and paths["empty_collection"] == GraphPath.EMPTY

    expected, got = dump_records(source_version, db), dump_records(target_version, out)
    assert_same_records(expected, got, spaces_of(expected))
    assert_bit_exact(expected, got, may_round(db, report))

    queries = query_vectors(expected)
    theirs, ours = nearest(source_version, db, tmp_path, queries), nearest(target_version, out, tmp_path, queries)
    for name in ("words", "lines"):  # carried graphs: the same neighbours (0.x → 1.x searches with ef 100, not 10)
        overlap = np.mean([len(set(a) & set(b)) / max(len(a), 1)
                           for a, b in zip(theirs[name], ours[name], strict=True)])
        assert overlap >= 0.95, f"{name}: the transplanted graph answers {overlap:.0%} like the source version"

    proof = report["verification"]["transplant"]["proof"]
    assert set(proof["reopened"]) == {n for n, c in expected.items() if c["records"]}, "every collection was probed"


@pytest.mark.slow  # 30-45 s; in CI, test_fidelity.py's transplant pair is written to by its target
def test_the_target_keeps_writing_to_the_result_itself(copy_of, tmp_path):
    """Apart from the engine's own probe on a copy: the target upserts new and existing records into
    OUT and a fresh process reads them back with the transplanted ones."""
    db = copy_of("1.5.9")
    out = tmp_path / "out"
    transplant(db, out, "0.6.3")
    before = dump_records("0.6.3", out)["lines"]["records"]
    existing = sorted(before)[0]
    dim = len(before[existing]["embedding"])
    batch = RecordBatch([existing, "new-after-transplant"], np.ones((2, dim), np.float32),
                        ["changed", "added"], [None, None], [None, '{"k":1}'])
    write_batch(batch, tmp_path / "more.parquet")
    job = {"collection": {"name": "lines"}, "files": [str(tmp_path / "more.parquet")]}
    run_worker("0.6.3", "load", {"path": str(out), "mode": "upsert", "jobs": [job]})
    after = dump_records("0.6.3", out)["lines"]["records"]
    assert len(after) == len(before) + 1
    assert after[existing]["document"] == "changed" and after["new-after-transplant"]["document"] == "added"
    assert all(after[i] == record for i, record in before.items() if i != existing)


def test_a_damaged_source_graph_is_built_natively(copy_of, tmp_path):
    db = copy_of("1.5.9")
    expected = dump_records("1.5.9", db)  # 1.5.9 itself crashes reading the damaged copy
    move_entry_point(segment_folder(db, "words"))  # the records read, but no search starts where it should
    out = tmp_path / "out"
    report = transplant(db, out, "1.0.20")
    words = graphs(report)["words"]
    assert words["graph"] == GraphPath.BUILT and "health check" in words["reason"]
    assert graphs(report)["lines"]["graph"] == GraphPath.CARRIED
    assert_same_records(expected, dump_records("1.0.20", out), spaces_of(expected))


def test_a_failed_transplant_falls_back_to_the_rebuild(copy_of, tmp_path):
    report = transplant(copy_of("1.5.9"), tmp_path / "out", "1.0.20",
                        env={"CHROMA_MIGRATE_FAULT": "transplant_written"})
    assert [(a["strategy"], a["outcome"]) for a in report["attempts"]] == [("transplant", "failed"),
                                                                           ("rebuild", "verified")]
    assert "InjectedFault" in report["attempts"][0]["reason"] and report["strategy"] == "rebuild"


def test_a_target_configured_for_another_graph_gets_one_built(copy_of):
    with open_database(copy_of("1.5.9")) as native:
        words = native.collection("words")  # cosine, M 24, ef_construction 120
        same = choose_graph(words, {"space": "cosine", "M": 24, "construction_ef": 120})
        other = choose_graph(words, {"space": "cosine", "M": 16, "construction_ef": 120})
    assert same.path == GraphPath.CARRIED
    assert other.path == GraphPath.BUILT and "M 24 in the source graph, 16 in the target" in other.reason
