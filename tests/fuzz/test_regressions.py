"""Every finding of the fuzz campaign (and the three of issue 15) replayed from its committed minimised case.

Each case damages a copy of the real database its version wrote, reads it the way the CLI
does in a forked child under the harness's memory and time bounds, and must end exactly as
recorded: refused with that kind (exit 2, one JSON document, the damaged file named), the
input unchanged. `before_the_fix` in each case says what it did before.
"""

from __future__ import annotations

import shutil
from contextlib import closing

import pytest

from chroma_migrate_testkit.fuzz.case import run_case
from chroma_migrate_testkit.fuzz.seeds import seed_database
from tests.conftest import FIXTURE_CACHE
from tests.fuzz.cases import load_cases

pytestmark = pytest.mark.integration

CASES = load_cases()
MEMORY_MIB = 400  # a case's child stays far below this: the 9-byte pickle used to take 2 GiB


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_committed_finding_is_refused_naming_the_file(case, tmp_path):
    result = run_case(seed_database(FIXTURE_CACHE, case["version"]), case["version"], case["mutation"], tmp_path, None)
    assert result.finding is None, result.finding
    assert result.outcome == case["expect"], result.steps
    assert result.step_outcomes == case["expect_steps"]
    read = result.steps["read"]["document"]
    if result.step_outcomes["read"] != "ok":
        assert read["file"].startswith(str(tmp_path)), read
        assert read["fix"] and read["error"].startswith(read["file"]), read
    assert result.peak_rss_mib < MEMORY_MIB


def test_the_cases_cover_the_issues_findings_and_every_kind_of_input():
    names = {c["name"] for c in CASES}
    assert {"issue15-pickle-long-binput-memo", "issue15-pickle-label-minus-one",
            "issue15-link-lists-size-word"} <= names
    targets = {c["mutation"]["target"].split("/")[-1] for c in CASES}
    assert {"chroma.sqlite3", "embeddings_queue", "index_metadata.pickle", "link_lists.bin", "header.bin",
            "data_level0.bin"} <= targets


def test_a_case_s_peak_is_its_own_and_not_the_harness_s(tmp_path):
    """A forked child starts with every page of the harness mapped, and a pytest worker grows with the
    tests it ran before: the bound must judge what the case itself adds."""
    case = CASES[0]
    ballast = bytearray(600 * 2**20)  # a harness grown well past the bound
    ballast[:: 4096] = b"\1" * len(range(0, len(ballast), 4096))  # touched: resident, copied into the fork
    result = run_case(seed_database(FIXTURE_CACHE, case["version"]), case["version"], case["mutation"], tmp_path, None)
    del ballast
    assert result.finding is None, result.finding
    assert 0 < result.peak_rss_mib < MEMORY_MIB, result.peak_rss_mib


def test_an_index_missing_a_row_its_table_holds_is_refused_as_corrupt(tmp_path):
    """Found by CI's short campaign (4 December): one flipped byte of a 0.5.23 chroma.sqlite3 made the
    count of metadata ids say some have no record while the query for such a row found none, and
    `inspect` ended in an IndexError. The seeds differ from build to build, so the flip does not
    replay here; the same disagreement is made on purpose: the index of `embeddings` lacks one row
    its table holds (swapped in through writable_schema)."""
    import json
    import sqlite3
    import subprocess

    from tests.conftest import CLI, REPO, tree_digest

    db = tmp_path / "db"
    shutil.copytree(seed_database(FIXTURE_CACHE, "0.5.23"), db, ignore=shutil.ignore_patterns(".complete"))
    with closing(sqlite3.connect(db / "chroma.sqlite3")) as conn:
        conn.execute("CREATE TABLE shadow (segment_id TEXT NOT NULL, embedding_id TEXT NOT NULL, "
                     "UNIQUE (segment_id, embedding_id))")
        conn.execute("INSERT INTO shadow SELECT segment_id, embedding_id FROM embeddings WHERE id != "
                     "(SELECT MIN(e.id) FROM embeddings e JOIN embedding_metadata m ON m.id = e.id)")
        conn.commit()
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_shadow_1'").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'sqlite_autoindex_embeddings_1'", (root,))
        conn.execute("DELETE FROM sqlite_master WHERE tbl_name = 'shadow'")
        conn.commit()
    before = tree_digest(db)
    result = subprocess.run([*CLI, "inspect", "--json", str(db)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "sqlite_corrupt" and document["file"].endswith("chroma.sqlite3"), document
    assert "a count and the rows it counts disagree" in document["error"] and document["fix"]
    assert "Traceback" not in result.stderr
    assert tree_digest(db) == before
