"""`--reader NAME=VERSION` on probe and migrate: each declared reader's own chromadb smoke-reads a
copy of the result, and the output says who can read it and who must be upgraded first."""

from __future__ import annotations

import json

import pytest

from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=200, big_dim=None)


def rows_of(document: dict) -> dict[str, dict]:
    return {row["reader"]: row for row in document["readers"]["readers"]}


def test_migrate_to_1_5_9_flags_nothing_for_readers_that_read_it(copy_of, tmp_path):
    source = copy_of("1.3.7", SPEC)
    result = run_cli("migrate", str(source), str(tmp_path / "out"), "--target", "1.5.9", "--reader", "app=1.3.7",
                     "--reader", "search=1.5.9", "--json", check=True)
    document = json.loads(result.stdout)
    assert document["readers"]["breaking"] == [] and document["verification"]["readers"] == document["readers"]
    assert all(row["can_read"] for row in rows_of(document).values())
    text = run_cli("migrate", str(source), str(tmp_path / "again"), "--target", "1.5.9", "--reader", "app=1.3.7",
                   check=True).stdout
    assert "readers (each declared reader's own chromadb" in text and "app" in text and "upgrade first" not in text


def test_probe_names_the_readers_an_upgrade_to_1_5_9_breaks(copy_of, tmp_path):
    """The plan's readers: an old container on 0.4.22 (resolved on demand) and services on 0.6.3 and 1.0.20."""
    source = copy_of("1.0.20", SPEC)
    result = run_cli("probe", str(source), "--target", "1.5.9", "--reader", "merchant_validation=0.4.22",
                     "--reader", "legacy=0.6.3", "--reader", "receipt_api=1.0.20", "--reader", "app=1.5.9", "--json",
                     check=True)
    document = json.loads(result.stdout)
    assert document["strategy"] == "upgrade"
    rows = rows_of(document)
    assert sorted(document["readers"]["breaking"]) == ["legacy", "merchant_validation", "receipt_api"]
    assert rows["app"]["can_read"]
    assert "Panic" in rows["receipt_api"]["reason"] or "panic" in rows["receipt_api"]["reason"].lower()
    text = run_cli("probe", str(source), "--target", "1.5.9", "--reader", "legacy=0.6.3", check=True).stdout
    assert "upgrade first: legacy" in text


@pytest.mark.parametrize(("option", "named"), [
    ("search", "is not NAME=VERSION"),
    ("search=", "is not NAME=VERSION"),
    ("search=1.3", "not of the form X.Y.Z"),
    ("search=0.4.1", "older than 0.4.15"),
])
def test_a_malformed_reader_is_refused_before_any_work(copy_of, tmp_path, option, named):
    result = run_cli("migrate", str(copy_of("1.5.9", SPEC)), str(tmp_path / "out"), "--reader", option, "--json")
    assert result.returncode == 2
    assert named in json.loads(result.stdout)["error"]
    assert not (tmp_path / "out").exists()
