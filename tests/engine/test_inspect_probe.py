"""inspect and probe read real databases and never change a byte of them."""

from __future__ import annotations

import json

import pytest

from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import run_cli, tree_digest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", ["0.4.24", "0.6.3", "1.0.20", "1.5.9"])
def test_inspect_reports_the_database_and_leaves_it_byte_identical(copy_of, version):
    db = copy_of(version)
    before = tree_digest(db)
    info = json.loads(run_cli("inspect", str(db), "--json", check=True).stdout)
    assert tree_digest(db) == before
    assert version in info["written_by"]
    collections = {c["name"]: c for c in info["collections"]}
    assert set(collections) == {"words", "lines", "scores_ip", "log_only", "empty_collection", "words_1536"}
    words = collections["words"]
    assert words["index"] == {"space": "cosine", "M": 24, "construction_ef": 120, "search_ef": 10 if
                              version.startswith("0.") else 100, "resize_factor": 1.2, "batch_size": 50,
                              "sync_threshold": 200}
    assert words["metadata"]["owner"] == "receipts"
    assert collections["scores_ip"]["index"]["space"] == "ip"
    assert collections["scores_ip"]["index"]["search_ef"] == 50
    assert collections["words_1536"]["dimension"] == 1536
    assert collections["empty_collection"]["records"] == 0
    assert collections["log_only"]["records"] == 60
    assert info["size_bytes"] > 0


def test_probe_noop_when_the_target_already_reads_it_untouched(copy_of):
    db = copy_of("1.5.9")
    before = tree_digest(db)
    result = json.loads(run_cli("probe", str(db), "--target", "1.5.9", "--json", check=True).stdout)
    assert tree_digest(db) == before
    assert result["strategy"] == "noop"
    assert {c["strategy"] for c in result["collections"]} == {"noop"}


def test_probe_transplant_for_a_downgrade_names_the_migration_and_each_graph(copy_of):
    db = copy_of("1.5.9")
    before = tree_digest(db)
    result = json.loads(run_cli("probe", str(db), "--target", "1.0.20", "--json", check=True).stdout)
    assert tree_digest(db) == before
    assert result["strategy"] == "transplant"
    assert "sysdb migration 10" in result["reason"] and "1.0.20" in result["reason"]
    reasons = {c["collection"]: c["reason"] for c in result["collections"]}
    assert "graph carried" in reasons["words"] and "graph built" in reasons["log_only"]


def test_probe_upgrade_between_0x_families(copy_of):
    db = copy_of("0.4.24")
    before = tree_digest(db)
    result = json.loads(run_cli("probe", str(db), "--target", "0.6.3", "--json", check=True).stdout)
    assert tree_digest(db) == before
    assert result["strategy"] == "upgrade"
    assert "sysdb 4→9" in result["reason"]


def test_probe_blocks_list_metadata_for_targets_before_1_5(copy_of):
    db = copy_of("1.5.9", receipt_spec(with_lists=True, big_dim=None))
    result = json.loads(run_cli("probe", str(db), "--target", "1.3.7", "--json", check=True).stdout)
    assert result["strategy"] == "blocked"
    assert "'labels'" in result["reason"] and "words" in result["reason"]


def test_inspect_and_a_noop_probe_start_no_chromadb_process(copy_of, monkeypatch):
    """The native reader answers both in place: any runtime child would fail this test."""
    from chroma_migrate import inspection, probe, worker_client

    def no_child(*_args, **_kwargs):
        raise AssertionError("a chromadb process was started")

    for module in (worker_client, probe):
        monkeypatch.setattr(module, "run_worker", no_child)
    db = copy_of("1.3.7")
    before = tree_digest(db)
    info = inspection.describe_database(db)
    assert {c.name: c.records for c in info.collections}["words"] == 582
    assert probe.probe(db, "1.3.7").strategy == "noop"
    assert tree_digest(db) == before
