"""The proof's probe is found by a wide query, so a correct transplant is not refused by chance.

Found by `make bench-transplant` (4 December): a 50,000 × 384 database written by chromadb 0.4.24,
transplanted into 1.5.9, keeps 0.x's default search ef of 10. The proof's probe copies the
vector of a sampled record (the first one, an element that beam is hard to reach in that graph),
and the reopened 1.5.9 did not return it among 10 neighbours, so the transplant was refused
and the migration fell back to a rebuild (55 s instead of 11 s). Asked for 100 neighbours (hnswlib
searches with the larger of ef and k) it finds the probe at distance 0. 0.4.24 builds its graph
on all cores, so whether a given build has such an element differs from build to build (this
test's own build, checked with 10 neighbours, had none): it asks that the transplant is proven on
the database size where the refusal was seen, not that the refusal comes back without the fix.
"""

from __future__ import annotations

import pytest

from chroma_migrate_testkit.fixtures import cached_database
from tests.conftest import FIXTURE_CACHE
from tests.transplant.test_transplant import graphs, transplant

pytestmark = pytest.mark.integration

SPEC = {"seed": 0, "collections": [{"name": "bench", "kind": "word", "dim": 384, "records": 50_000,
                                    "history": False, "tail": 0, "metadata": {"hnsw:space": "cosine"}}]}


def test_a_0_4_database_at_the_default_search_ef_is_transplanted_not_refused(tmp_path):
    source = cached_database(FIXTURE_CACHE, "0.4.24", SPEC)  # about 45 s to write the first time
    report = transplant(source, tmp_path / "out", "1.5.9", "--strategy", "transplant")
    assert [a["outcome"] for a in report["attempts"]] == ["verified"], report["attempts"]
    assert report["strategy"] == "transplant" and report["verification"]["passed"]
    assert graphs(report)["bench"]["graph"] == "carried"
