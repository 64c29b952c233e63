"""The deterministic index-health check on databases the real versions wrote: sound ones pass, every
time, and damaged copies fail with a problem that names the collection.

Reachability is the subtle part: hnswlib itself leaves a few live elements that no search path
reaches (its neighbour pruning drops every link to them). The tests pin that down too: the
elements the check calls unreachable are exactly ones the version's own query() cannot find,
even with their own vector as the query.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from chroma_migrate.native import open_database
from chroma_migrate.native.hnsw_health import IndexHealth, check_index_health
from chroma_migrate.worker_client import run_worker
from tests.conftest import database_copy
from tests.native import hnsw_damage as damage

pytestmark = pytest.mark.integration

VERSIONS = ["0.4.24", "0.5.23", "0.6.3", "1.0.20", "1.3.7", "1.5.9"]
CHURN_VERSIONS = ["0.4.24", "1.5.9"]
SEEDS = range(20)
SEEDS_IN_EVERY_RUN = 5  # the other 15 builds run with `make test-slow`, to keep `make test` within CI's budget


def healths(db: Path) -> dict[str, IndexHealth]:
    with open_database(db) as native:
        return {c.name: check_index_health(c, c.name) for c in native.collections()}


def churn_health(db: Path, baseline: IndexHealth | None = None, label: str = "churn") -> IndexHealth:
    with open_database(db) as native:
        return check_index_health(native.collection("churn"), label, baseline)


def assert_fails_naming(health: IndexHealth, label: str, *fragments: str) -> str:
    """The check failed and one problem names the collection and every fragment; that problem."""
    assert not health.passed, health.notes
    for problem in health.problems:
        if problem.startswith(f"collection {label!r}: ") and all(f in problem for f in fragments):
            return problem
    raise AssertionError(f"no problem names {label!r} and {fragments}: {health.problems}")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_s_default_fixture_passes(copy_of, version):
    found = healths(copy_of(version))
    assert all(h.passed for h in found.values()), {n: h.problems for n, h in found.items()}
    for name in ("words", "lines", "words_1536"):
        health = found[name]
        assert health.elements >= health.live > 0
        assert health.mapped == health.live and health.links > 0
        assert health.reachable + len(health.unreachable_ids) == health.live
    for name in ("log_only", "empty_collection", "scores_ip"):  # never flushed: nothing to check, said so
        assert found[name].elements == 0 and found[name].notes, name
    assert json.loads(json.dumps(found["words"].to_dict()))["passed"] is True


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_many_small_flushes_with_churn_pass(copy_of, version):
    db = copy_of(version, damage.churn_spec())
    health = churn_health(db)
    assert health.passed, health.problems
    assert health.elements > health.live > 2500  # deletes reached the index: deleted elements are walked through
    assert health.reachable + len(health.unreachable_ids) == health.live
    assert churn_health(db, baseline=health).passed  # the same graph against itself


@pytest.mark.parametrize("seed", [pytest.param(seed, marks=[pytest.mark.slow] if position >= SEEDS_IN_EVERY_RUN else [])
                                  for position, seed in enumerate(SEEDS)])
def test_twenty_seeds_of_churn_never_refused(tmp_path, seed):
    """No false refusal: 20 independent 1.5.9 builds, each with hnswlib's own orphans, all pass
    (5 in every run, all 20 with `make test-slow`)."""
    health = churn_health(database_copy("1.5.9", tmp_path / f"seed-{seed}", damage.churn_spec(seed)))
    assert health.passed, (seed, health.problems)
    assert health.live > 2500


def test_hnswlib_orphans_elements_of_sound_indexes(tmp_path):
    """Why the reachability check needs a baseline: sound builds already leave orphans."""
    orphans = [len(churn_health(database_copy("1.5.9", tmp_path / f"seed-{seed}", damage.churn_spec(seed)))
                   .unreachable_ids) for seed in SEEDS[:SEEDS_IN_EVERY_RUN]]
    assert sum(orphans) > 0, "hnswlib's pruning orphans a few elements in indexes like these"


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_unreachable_elements_are_what_the_version_s_query_cannot_find(copy_of, tmp_path, version):
    db = copy_of(version, damage.churn_spec())
    with open_database(db) as native:
        collection = native.collection("churn")
        health = check_index_health(collection, "churn")
        sources = collection.vectors.sources
        orphans = [i for i in health.unreachable_ids if i not in sources.from_log]
        # About 100 reachable elements: with 29 (every 97th) a correct 0.4.24 build measured 26 found (0.897).
        reachable = sorted(set(sources.persisted) - set(health.unreachable_ids) - set(sources.from_log))[::29]
        queries = collection.vectors.vectors_for(orphans + reachable)
    assert orphans, "this fixture has orphans"
    np.save(tmp_path / "queries.npy", queries)
    answers = run_worker(version, "query", {"path": str(db), "jobs": [
        {"collection": "churn", "queries_file": str(tmp_path / "queries.npy"), "k": 3}]}).data["churn"]
    assert not [i for i, hits in zip(orphans, answers, strict=False) if i in hits]  # never found, own vector or not
    found = sum(i in hits for i, hits in zip(reachable, answers[len(orphans):], strict=True))
    assert found >= 0.85 * len(reachable)  # while the others are found by the same queries, at the search ef


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_elements_cut_off_from_the_graph_fail_against_the_baseline(copy_of, version):
    db = copy_of(version, damage.churn_spec())
    before = churn_health(db)
    victims = damage.cut_off(damage.segment_folder(db, "churn"))
    after = churn_health(db, baseline=before, label="tenant2/db_two/churn")
    # A victim can have been the only way to an element: that one is lost too, so the count is at least the victims'.
    lost = set(after.unreachable_ids) - set(before.unreachable_ids)
    assert len(lost) >= len(victims)
    problem = assert_fails_naming(after, "tenant2/db_two/churn", "data_level0.bin", f"{len(lost)} records",
                                  "cannot be reached")
    assert "ids 'IMAGE#" in problem
    alone = churn_health(db)  # without a baseline the orphans are counted and reported, not refused
    assert alone.passed and any("cannot be reached" in note for note in alone.notes)


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_cutting_elements_off_leaves_every_other_element_linked(tmp_path, version):
    """The damage above is one fault: about 1 in 60 random victim sets would also leave an element no link at all."""
    db = database_copy(version, tmp_path / "source", damage.churn_spec())
    for seed in range(60):
        copy = tmp_path / f"cut-{seed}"
        shutil.copytree(db, copy)
        damage.cut_off(damage.segment_folder(copy, "churn"), seed=seed)
        index = damage.read_index(damage.segment_folder(copy, "churn"))
        lengths = index.words[:, 0] & np.uint32(damage.COUNT_MASK)
        assert not np.flatnonzero(index.live & (lengths == 0)).size, seed
        shutil.rmtree(copy)


def test_a_graph_split_in_two_fails_without_a_baseline(copy_of):
    db = copy_of("0.4.24", damage.churn_spec())
    victims = damage.cut_off(damage.segment_folder(db, "churn"), fraction=0.6, spare_stranded=False)
    health = churn_health(db)
    assert_fails_naming(health, "churn", "data_level0.bin", "the graph is split")
    assert health.unreachable is not None and health.unreachable >= len(victims)


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_live_elements_marked_deleted_fail(copy_of, version):
    db = copy_of(version, damage.churn_spec())
    before = churn_health(db)
    victims = damage.mark_deleted(damage.segment_folder(db, "churn"))
    health = churn_health(db)
    assert_fails_naming(health, "churn", "data_level0.bin", f"has no live element for {len(victims)} labels")
    assert_fails_naming(health, "churn", f"{len(victims)} ids that index_metadata.pickle maps resolve to elements "
                                         "marked deleted")
    assert health.live == before.live - len(victims)


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_deleted_elements_brought_back_fail(copy_of, version):
    db = copy_of(version, damage.churn_spec())
    victims = damage.undelete(damage.segment_folder(db, "churn"))
    assert_fails_naming(churn_health(db), "churn", "index_metadata.pickle", f"does not map {len(victims)} labels")


def test_a_label_on_two_live_elements_fails(copy_of):
    db = copy_of("1.5.9", damage.churn_spec())
    first, second = damage.duplicate_label(damage.segment_folder(db, "churn"))
    health = churn_health(db)
    assert_fails_naming(health, "churn", "has no live element for 1 labels")  # the overwritten one, said by the reader
    assert_fails_naming(health, "churn", "1 labels are each carried by more than one live element",
                        f"elements {first} (label", f", {second} (label")


@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_emptied_level0_lists_fail(copy_of, version):
    db = copy_of(version, damage.churn_spec())
    victims = damage.zero_lists(damage.segment_folder(db, "churn"))
    problem = assert_fails_naming(churn_health(db), "churn", "data_level0.bin",
                                  f"{len(victims)} live elements have no level-0 links")
    assert f"elements {victims[0]} (label" in problem


@pytest.mark.parametrize("how", damage.UPPER_DAMAGE)
@pytest.mark.parametrize("version", CHURN_VERSIONS)
def test_broken_upper_level_lists_fail(copy_of, version, how):
    db = copy_of(version, damage.churn_spec())
    damage.break_link_lists(damage.segment_folder(db, "churn"), how)
    assert_fails_naming(churn_health(db), "churn", "link_lists.bin")


def test_an_entry_point_below_the_top_level_fails(copy_of):
    db = copy_of("1.5.9", damage.churn_spec())
    element = damage.move_entry_point(damage.segment_folder(db, "churn"))
    assert_fails_naming(churn_health(db), "churn", "header.bin", f"entry point {element} has 0 upper levels")


def test_damage_in_one_collection_names_only_that_one(copy_of):
    db = copy_of("0.6.3")
    victims = damage.zero_lists(damage.segment_folder(db, "words"), fraction=0.02)
    found = healths(db)
    assert_fails_naming(found["words"], "words", f"{len(victims)} live elements have no level-0 links")
    assert all(h.passed for name, h in found.items() if name != "words")
