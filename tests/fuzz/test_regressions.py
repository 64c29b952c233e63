"""Every finding of the fuzz campaign (and the three of issue 15) replayed from its committed minimised case.

Each case damages a copy of the real database its version wrote, reads it the way the CLI
does in a forked child under the harness's memory and time bounds, and must end exactly as
recorded: refused with that kind (exit 2, one JSON document, the damaged file named), the
input unchanged. `before_the_fix` in each case says what it did before.
"""

from __future__ import annotations

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
