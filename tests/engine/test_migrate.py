"""migrate moves real databases between real versions; every record is checked independently.

Each test opens OUT with the target version and compares every record with what the
source version itself returns (tests/engine/records.py), not with the engine's verify.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate.versions import shipped_version_names
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import dump_records, run_cli, tree_digest
from tests.engine.records import assert_same_records, spaces_of

pytestmark = pytest.mark.integration

LATEST = "1.5.9"


def migrate_and_check(source_db, out, source_version, target_version, *extra, collections=None):
    before = tree_digest(source_db)
    result = run_cli("migrate", str(source_db), str(out), "--target", target_version, "--json", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert tree_digest(source_db) == before, "the source database was modified"
    assert report["verification"]["passed"]
    expected = dump_records(source_version, source_db)
    if collections:
        expected = {name: expected[name] for name in collections}
    assert_same_records(expected, dump_records(target_version, out), spaces_of(expected))
    assert not list(out.parent.glob(f".{out.name}.chroma-migrate-*")), "staging left behind"
    return report


@pytest.mark.parametrize("strategy", ["auto", pytest.param("rebuild", marks=pytest.mark.slow)])
@pytest.mark.parametrize("source_version", shipped_version_names())
def test_every_version_to_the_latest(copy_of, tmp_path, source_version, strategy):
    db = copy_of(source_version)
    report = migrate_and_check(db, tmp_path / "out", source_version, LATEST, "--strategy", strategy)
    if strategy == "rebuild":
        assert report["strategy"] == "rebuild"
    elif source_version == LATEST:
        assert report["strategy"] == "noop"
    elif source_version.startswith("1."):
        assert report["strategy"] == "upgrade"
    else:
        # 1.x panics ("Document not found in metadata") replaying 0.x log rows of records
        # without a document, which these fixtures have: auto must fall back and say why.
        assert [a["strategy"] for a in report["attempts"]] == ["upgrade", "transplant"]
        assert "backfill" in report["attempts"][0]["reason"]
    words = next(c for c in report["verification"]["collections"] if c["collection"] == "words")
    assert words["index"]["target"]["space"] == "cosine" and words["index"]["target"]["M"] == 24


def test_0x_upgrade_by_1x_keeps_records_and_reports_the_search_ef_default(copy_of, tmp_path):
    """Without documentless records in the write log, 1.5.9 upgrades a 0.6.3 copy in place."""
    db = copy_of("0.6.3", receipt_spec(missing_documents=False, big_dim=None))
    report = migrate_and_check(db, tmp_path / "out", "0.6.3", LATEST)
    assert report["strategy"] == "upgrade"
    words = next(c for c in report["verification"]["collections"] if c["collection"] == "words")
    assert words["notes"] == ["search_ef 10 (0.x default, never set) became 100 (chromadb 1.x default)"]
    scores = next(c for c in report["verification"]["collections"] if c["collection"] == "scores_ip")
    assert scores["notes"] == [] and scores["index"]["target"]["search_ef"] == 50


@pytest.mark.parametrize(("source_version", "target_version"), [
    pytest.param("1.5.9", "1.0.20", marks=pytest.mark.slow), pytest.param("1.3.7", "0.6.3", marks=pytest.mark.slow),
    ("1.5.9", "0.4.24"), ("1.0.20", "0.5.23"),  # CI: the 0.4 and 0.5 targets (the transplant tests cover 0.6 and 1.x)
])
def test_downgrades_transplant_into_the_older_format(copy_of, tmp_path, source_version, target_version):
    report = migrate_and_check(copy_of(source_version), tmp_path / "out", source_version, target_version)
    assert report["strategy"] == "transplant"
    assert "cannot open a newer schema" in report["attempts"][0]["reason"]


def test_list_metadata_survives_into_1_5(copy_of, tmp_path):
    spec = receipt_spec(with_lists=True, big_dim=None)
    db = copy_of(LATEST, spec)
    migrate_and_check(db, tmp_path / "out", LATEST, LATEST, "--strategy", "rebuild")
    words = dump_records(LATEST, tmp_path / "out")["words"]["records"]
    assert any(isinstance((r["metadata"] or {}).get("labels"), list) for r in words.values())


@pytest.mark.parametrize("strategy", ["upgrade", "rebuild"])
def test_selected_collections_only(copy_of, tmp_path, strategy):
    db = copy_of("1.0.20")
    report = migrate_and_check(db, tmp_path / "out", "1.0.20", LATEST, "--strategy", strategy,
                               "--collections", "words,empty_collection", collections=["words", "empty_collection"])
    assert report["collections"] == ["words", "empty_collection"]


def test_small_batches_and_parallel_workers_give_the_same_database(copy_of, tmp_path):
    db = copy_of("0.5.23")
    report = migrate_and_check(db, tmp_path / "out", "0.5.23", LATEST, "--strategy", "rebuild",
                               "--batch-size", "97", "--workers", "2")
    export = next(p for p in report["phases"] if p["name"] == "rebuild: export")
    assert export["detail"] == {"workers": 2, "exporter": "native"}


def test_the_runtime_exporter_gives_the_same_database(copy_of, tmp_path):
    """`--export-with runtime` (the source's own get() on a copy) stays available and agrees."""
    report = migrate_and_check(copy_of("1.0.20"), tmp_path / "out", "1.0.20", LATEST, "--strategy", "rebuild",
                               "--export-with", "runtime", "--batch-size", "150")
    phases = [p["name"] for p in report["phases"]]
    assert report["export_with"] == "runtime" and phases[0] == "copy source"


def test_a_0_4_database_no_chromadb_can_read_migrates(copy_of, tmp_path):
    """0.4.24 lost re-added vectors from its index (chroma-core/chroma#1987): its get() fails, so does the
    upgrade; the native export reads them from the log, and OUT holds what 0.5.23 makes of the same writes."""
    from tests.native.test_readd_04 import SPEC

    db = copy_of("0.4.24", SPEC)
    out = tmp_path / "out"
    result = run_cli("migrate", str(db), str(out), "--target", LATEST, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [a["strategy"] for a in report["attempts"]] == ["upgrade", "transplant"]
    expected = dump_records("0.5.23", copy_of("0.5.23", SPEC))
    assert_same_records(expected, dump_records(LATEST, out), spaces_of(expected), same_ids=False)


@pytest.mark.slow
@pytest.mark.parametrize("target_version", shipped_version_names())
@pytest.mark.parametrize("source_version", shipped_version_names())
def test_every_pair_of_versions(copy_of, tmp_path, source_version, target_version):
    migrate_and_check(copy_of(source_version), tmp_path / "out", source_version, target_version)
