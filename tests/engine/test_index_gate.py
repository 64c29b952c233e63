"""The index gate never refuses a correct migration and always refuses a damaged index.

Both halves on databases written by the real versions: the hard case that the old recall
gate refused (a 0.4.24 database, 3,000 l2 records of 64 dimensions with upserts, deletes
and many small index flushes, searched at the default ef 10) rebuilt again and again; and
an upgraded target whose index was damaged afterwards (1% of its elements unreachable,
marked deleted, or with an empty link list), which `verify` must refuse naming the collection.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.native.hnsw_damage import churn_spec, cut_off, mark_deleted, segment_folder, zero_lists

pytestmark = pytest.mark.integration

REBUILDS = 20
# Rounds 0 and 3 cover both databases and both targets; the other 18 run with `make test-slow`,
# to keep `make test` within CI's budget.
IN_EVERY_RUN = (0,)  # one round in CI (its budget), all with `make test-slow`


@pytest.mark.parametrize("round_", [pytest.param(n, marks=[] if n in IN_EVERY_RUN else [pytest.mark.slow])
                                    for n in range(REBUILDS)])
def test_a_correct_rebuild_of_hard_data_is_never_refused(copy_of, tmp_path, round_):
    """Each round is a fresh build by the target, so its graph (and its recall at ef 10) differs.
    Rounds alternate between the two databases the old recall gate refused (default index
    batches; small batches and sync thresholds) and between a 1.x and a 0.x target."""
    spec = churn_spec(seed=0)
    if round_ % 4 >= 2:  # the same churn with chromadb's default index batches
        spec["collections"][0]["metadata"] = {"hnsw:space": "l2"}
    db = copy_of("0.4.24", spec)
    target = "1.5.9" if round_ % 2 == 0 else "0.6.3"
    result = run_cli("migrate", str(db), str(tmp_path / "out"), "--target", target, "--strategy", "rebuild",
                     "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    churn = json.loads(result.stdout)["verification"]["collections"][0]
    found = churn["recall"]["self_retrieval"]
    assert found["checked"] > 0 and found["missed"] == 0


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory, request):
    """A 1.0.20 database upgraded to 1.5.9: the target carries the source's graph over."""
    from tests.conftest import database_copy

    root = tmp_path_factory.mktemp("gate")
    db = database_copy("1.0.20", root, churn_spec(seed=3))
    out = root / "out"
    run_cli("migrate", str(db), str(out), "--target", "1.5.9", "--strategy", "upgrade", check=True)
    return db, out


@pytest.mark.parametrize("damage", [cut_off, mark_deleted, zero_lists], ids=["unreachable", "deleted", "zeroed"])
def test_a_damaged_index_is_refused_naming_the_collection(upgraded, tmp_path, damage):
    import shutil

    source, out = upgraded
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    changed = damage(segment_folder(damaged, "churn"), 0.01)
    assert len(changed) > 0
    result = run_cli("verify", str(source), str(damaged), "--json")
    assert result.returncode in (1, 2), result.stdout[-2000:] + result.stderr[-2000:]
    text = result.stdout
    assert "churn" in text, text[-2000:]
    if result.returncode == 1:
        report = json.loads(text)
        assert any(p.startswith("churn: ") for p in report["problems"]), report["problems"]


def test_the_undamaged_upgrade_passes(upgraded):
    source, out = upgraded
    result = run_cli("verify", str(source), str(out), "--json")
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_sampled_orphan_the_source_also_orphans_is_left_to_the_health_check(upgraded, tmp_path):
    """The CI failure this guards: hnswlib's pruning orphaned an element of a sound 1.0.20 index,
    the upgrade carried it over, and a sampled query landed on it. Here both sides lose the same
    1% of elements (the same graph, the same surgery), so the health check passes them against the
    baseline, and self-retrieval sets those misses aside instead of refusing; without the health
    check's verdict the same misses are refused, and a reachable vector is still found."""
    import shutil

    import numpy as np

    from chroma_migrate.native import open_database
    from chroma_migrate.native.hnsw_health import check_index_health
    from chroma_migrate.verification import index_gate
    from tests.native.hnsw_damage import cut_off, segment_folder

    source, out = upgraded
    both = {side: tmp_path / side for side in ("source", "target")}
    shutil.copytree(source, both["source"])
    shutil.copytree(out, both["target"])
    victims = [cut_off(segment_folder(db, "churn"), 0.01) for db in both.values()]
    assert np.array_equal(*victims)
    with open_database(both["source"]) as mine, open_database(both["target"]) as theirs:
        health = check_index_health(theirs.collection("churn"), "churn", check_index_health(mine.collection("churn"),
                                                                                            "churn"))
        assert health.passed and health.unreachable_ids, health.problems
        reachable = next(i for i in theirs.collection("churn").ids() if i not in set(health.unreachable_ids))
        asked = [*health.unreachable_ids[:3], reachable]
        batches = [theirs.collection("churn").read_range(i, i + "\0") for i in asked]
    queries = tmp_path / "queries.npy"
    np.save(queries, np.vstack([b.embeddings for b in batches]))
    best = [[(0.0, record_id)] for record_id in asked]

    judged = index_gate.self_retrieval("l2", best, None, both["target"], "churn", queries, 10,
                                       frozenset(health.unreachable_ids))
    assert (judged.checked, judged.found_by_graph_walk, len(judged.orphans), judged.missed) == (4, 1, 3, [])
    assert index_gate.self_retrieval_problem(judged, best) is None

    alone = index_gate.self_retrieval("l2", best, None, both["target"], "churn", queries, 10)
    assert len(alone.missed) == 3 and "3 of 4" in index_gate.self_retrieval_problem(alone, best)

    # Judged against the source's own answers instead: what the equally damaged source misses too is
    # the graph the source had (the source still answers a record its log alone holds, which the
    # upgrade put into the damaged graph: that one stays the target's loss).
    same_graph = index_gate.self_retrieval("l2", best, None, both["target"], "churn", queries, 10,
                                           source_db=both["source"])
    assert same_graph.missed_by_source_too and sorted(same_graph.missed + same_graph.missed_by_source_too) == sorted(
        alone.missed)

    # A source whose segment folder and log are the target's, byte for byte (what an upgrade that had
    # nothing to apply leaves): its walk is not repeated, and what it would have said is what it says.
    twin = tmp_path / "twin"
    shutil.copytree(both["target"], twin)
    walked = index_gate.self_retrieval("l2", best, None, both["target"], "churn", queries, 10, source_db=twin)
    taken = index_gate.self_retrieval("l2", best, None, both["target"], "churn", queries, 10, source_db=twin,
                                      same_graph=True)
    assert walked.missed_by_source_too and taken.to_dict() == walked.to_dict()
    assert taken.missed_by_source_too == walked.missed_by_source_too


def test_the_undamaged_source_excuses_none_of_what_the_target_alone_lost(upgraded, tmp_path):
    """The tolerance for misses the source's graph also makes must not excuse a loss: every element cut
    off in the target alone is found by the undamaged source's walk, so each stays a miss and a problem.
    (Elements hnswlib's pruning orphaned in the source itself are left out: the source misses those too,
    rightly.)"""
    import shutil

    import numpy as np

    from chroma_migrate.native import open_database
    from chroma_migrate.native.hnsw_health import check_index_health
    from chroma_migrate.verification import index_gate
    from tests.native.hnsw_damage import cut_off, segment_folder

    source, out = upgraded
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    cut_off(segment_folder(damaged, "churn"), 0.01)
    with open_database(source) as mine, open_database(damaged) as theirs:
        orphaned_at_the_source = set(check_index_health(mine.collection("churn"), "churn").unreachable_ids)
        lost = [i for i in check_index_health(theirs.collection("churn"), "churn").unreachable_ids
                if i not in orphaned_at_the_source]
        assert len(lost) >= 10, lost
        vectors = np.vstack([theirs.collection("churn").read_range(i, i + "\0").embeddings for i in lost])
    queries = tmp_path / "queries.npy"
    np.save(queries, vectors)
    best = [[(0.0, record_id)] for record_id in lost]
    judged = index_gate.self_retrieval("l2", best, None, damaged, "churn", queries, 10, source_db=source)
    assert (len(judged.missed), judged.missed_by_source_too) == (len(lost), [])
    assert f"{len(lost)} of {len(lost)}" in index_gate.self_retrieval_problem(judged, best)

