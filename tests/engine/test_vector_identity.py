"""Verification proves an upgrade's untouched vectors by their files (issue 16), and misses nothing.

The target is what an upgrade writes: a copy of a chromadb 1.0.20 database that chromadb 1.5.9
opened (and so migrated). Its compacted segments keep their HNSW files byte for byte, so the
target's vectors are not read; one changed vector in those files, or one changed write-log row,
must send the collection down the path that reads both sides, and the changed vector must be
found there.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from chroma_migrate.native import open_database
from chroma_migrate.verification.vector_identity import vectors_proven_alike
from chroma_migrate.verification.verify import VerifyRequest, verify_databases
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fixtures import cached_database, receipt_spec
from tests.conftest import FIXTURE_CACHE
from tests.native import hnsw_damage as damage

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=300, dim=16, big_dim=None)
CARRIED = "lines"  # l2 and compacted: an upgrade leaves its segment's files as they were


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory) -> tuple[Path, Path]:
    source = cached_database(FIXTURE_CACHE, "1.0.20", SPEC)
    target = tmp_path_factory.mktemp("vector-identity") / "upgraded"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".complete"))
    run_worker("1.5.9", "describe", {"path": str(target)})
    return source, target


def _copy(target: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(target, tmp_path / "damaged"))


def _alike(source: Path, target: Path, name: str = CARRIED) -> bool:
    with open_database(source) as s, open_database(target) as t:
        return vectors_proven_alike(s.collection(name), t.collection(name), source, target)


def _records(report: dict, name: str) -> dict:
    return next(r for r in report["collections"] if r["collection"] == name)["records"]


def test_an_upgrades_carried_vectors_are_proven_by_their_files_and_it_verifies(upgraded):
    source, target = upgraded
    assert _alike(source, target)
    report = verify_databases(VerifyRequest(source, target, source_version="1.0.20", target_version="1.5.9"))
    assert report["passed"], report["problems"]
    carried = _records(report, CARRIED)
    assert carried["vectors_by_files"] == carried["identical"] == carried["source_count"] > 0
    assert _records(report, "log_only")["vectors_by_files"] == 0  # its vectors are only in the log: read both
    health = _health(report, CARRIED)  # the same bytes: the source's health check stands for the target's
    assert health["reachable"] == health["live"] > 0 and str(target) in health["folder"]
    assert any("byte for byte: the source's health check stands for it" in note for note in health["notes"])


def _health(report: dict, name: str) -> dict:
    return next(r for r in report["collections"] if r["collection"] == name)["recall"]["index_health"]


def test_a_target_graph_with_lost_links_is_checked_on_its_own_bytes_and_fails(upgraded, tmp_path: Path):
    source, target = upgraded
    damaged = _copy(target, tmp_path)
    victims = damage.zero_lists(damage.segment_folder(damaged, CARRIED))  # vectors kept, links gone
    assert len(victims) and not _alike(source, damaged)
    report = verify_databases(VerifyRequest(source, damaged, source_version="1.0.20", target_version="1.5.9"))
    assert not report["passed"]
    assert any(f"{len(victims)} live elements have no level-0 links" in p for p in report["problems"]), report
    assert not any("stands for it" in note for note in _health(report, CARRIED)["notes"])


def test_one_changed_vector_in_the_hnsw_file_is_read_and_found(upgraded, tmp_path: Path):
    source, target = upgraded
    damaged = _copy(target, tmp_path)
    with open_database(source) as native:
        collection = native.collection(CARRIED)
        segment = collection.facts.vector_segment
        victim = next(i for i in collection.ids() if collection.vectors.sources.label_of(i) is not None)
        vector = np.ascontiguousarray(collection.vectors.vectors_for([victim])[0], dtype="<f4")
    path = damaged / segment / "data_level0.bin"
    data = bytearray(path.read_bytes())
    at = data.find(vector.tobytes())
    assert at >= 0 and data.find(vector.tobytes(), at + 1) < 0
    data[at:at + 4] = np.float32(vector[0] + 1.0).tobytes()  # same size, one float of one vector
    path.write_bytes(bytes(data))
    assert not _alike(source, damaged)
    report = verify_databases(VerifyRequest(source, damaged, source_version="1.0.20", target_version="1.5.9"))
    assert not report["passed"]
    records = _records(report, CARRIED)
    assert records["different"] == 1 and records["different_sample"][0] == {"id": victim, "fields": ["embedding"]}
    assert records["vectors_by_files"] == 0


def test_a_changed_write_log_row_is_not_taken_for_proof(upgraded, tmp_path: Path):
    source, target = upgraded
    damaged = _copy(target, tmp_path)
    with open_database(damaged) as native:
        collection_id = native.collection(CARRIED).id
    with sqlite3.connect(damaged / "chroma.sqlite3") as conn:
        seq_id, vector = conn.execute("SELECT seq_id, vector FROM embeddings_queue WHERE topic LIKE ? "
                                      "AND vector IS NOT NULL ORDER BY seq_id DESC LIMIT 1",
                                      (f"%/{collection_id}",)).fetchone()
        conn.execute("UPDATE embeddings_queue SET vector = ? WHERE seq_id = ?", (bytes(reversed(vector)), seq_id))
    assert not _alike(source, damaged)
