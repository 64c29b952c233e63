"""A short fuzz campaign on every CI run: every supported version's real database, every input file.

`make fuzz` runs the long one (FUZZ_ARGS="--cases 2000"; figures in docs/faults.md). This one
is bounded by time (about 40 s of cases) and drawn from a fixed hypothesis seed, so a CI run
is repeatable; any case that ends outside the contract fails it, with the mutation to replay.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate_testkit.fuzz.campaign import CampaignConfig, run_campaign
from chroma_migrate_testkit.fuzz.report import render_summary
from chroma_migrate_testkit.fuzz.seeds import SEED_VERSIONS
from chroma_migrate_testkit.fuzz.strategies import ROLES
from tests.conftest import FIXTURE_CACHE

pytestmark = pytest.mark.integration

SECONDS = 15.0  # CI's budget; `make fuzz` runs the long campaign
CI_SEED = 15


def test_a_short_campaign_keeps_the_contract(tmp_path):
    config = CampaignConfig(cache=FIXTURE_CACHE, work=tmp_path / "work", versions=SEED_VERSIONS, cases=100_000,
                            seconds=SECONDS, random_seed=CI_SEED, oracle=1, findings=tmp_path / "findings",
                            min_cases=14, min_turns=len(SEED_VERSIONS) * len(ROLES))  # every version and kind of
    # file once even on a loaded machine (a CI run beside a million-record fixture build reached four versions)
    summary = run_campaign(config).summary()
    (tmp_path / "summary.md").write_text(render_summary(summary))
    assert summary["findings"] == [], json.dumps(summary["findings"], indent=2)
    assert summary["cases"] >= 14, summary
    assert set(summary["by_version"]) == set(SEED_VERSIONS)
    assert {"chroma.sqlite3", "embeddings_queue", "header.bin", "data_level0.bin", "length.bin", "link_lists.bin",
            "index_metadata.pickle"} <= set(summary["by_file"])
    assert any(o.startswith("refused:") for o in summary["outcomes"]) and "ok_same" in summary["outcomes"]
    assert summary["peak_rss_mib"] < 400
