"""The estimate before the work: conservative until measured, then the median of measured rates.

Whether it is right within a factor of two is the benchmark's to say (bench/bench_migrate.py
prints the estimate next to the measured time); these tests pin down how it is made.
"""

from __future__ import annotations

import json
import os
import subprocess
from types import SimpleNamespace

import pytest

from chroma_migrate.estimate import (
    DEFAULT_RATES,
    MIN_UNITS,
    OVERHEAD_S,
    STATS_ENV,
    PhaseMeasure,
    estimate,
    last_run,
    record,
    work_units,
)
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import CLI, REPO


def test_work_is_records_times_dimension():
    collections = [SimpleNamespace(records=10, dimension=384), SimpleNamespace(records=5, dimension=None),
                   SimpleNamespace(records=0, dimension=16)]
    assert work_units(collections) == 10 * 384 + 5


def test_without_measurements_the_defaults_apply(tmp_path):
    found = estimate("rebuild", 50_000 * 384, tmp_path / "none.jsonl")
    assert [p["phase"] for p in found["phases"]] == ["rebuild: export", "rebuild: load", "verify"]
    load = found["phases"][1]
    assert load["basis"] == "conservative default"
    assert load["seconds"] == pytest.approx(OVERHEAD_S["rebuild: load"] + 50_000 * 384 / DEFAULT_RATES["rebuild: load"],
                                            abs=0.1)


def test_measured_rates_replace_the_defaults_by_their_median(tmp_path):
    stats = tmp_path / "throughput.jsonl"
    units = 1_000_000
    overhead = OVERHEAD_S["rebuild: load"]
    record([PhaseMeasure("rebuild: load", units, overhead + seconds) for seconds in (1.0, 2.0, 10.0)], stats)
    record([PhaseMeasure("rebuild: load", MIN_UNITS - 1, 500.0)], stats)  # too small to say anything: ignored
    record([PhaseMeasure("a phase nobody estimates", units, 5.0)], stats)  # not kept
    stats.write_text(stats.read_text() + "not json\n")  # a damaged line is skipped, not fatal
    found = estimate("rebuild", 2 * units, stats)
    load = next(p for p in found["phases"] if p["phase"] == "rebuild: load")
    assert load["basis"] == "median of 3 measured"
    assert load["seconds"] == pytest.approx(overhead + 2 * 2.0, abs=0.1)  # median rate: units per 2 s
    assert len(stats.read_text().splitlines()) == 5


def test_the_last_run_of_a_collection_in_an_environment(tmp_path):
    stats = tmp_path / "throughput.jsonl"
    record([PhaseMeasure("rebuild: export", 10, 3.0, "rebuild", "words", "dev", "run-1"),
            PhaseMeasure("rebuild: export", 10, 4.0, "rebuild", "words", "dev", "run-2"),
            PhaseMeasure("rebuild: export", 10, 5.0, "rebuild", "words", "dev", "run-2"),
            PhaseMeasure("rebuild: load", 10, 7.0, "rebuild", "words", "dev", "run-2"),
            PhaseMeasure("rebuild: load", 10, 9.0, "rebuild", "words", "prod", "run-3")], stats)
    assert last_run("words", "dev", stats) == {"run_key": "run-2", "env": "dev",
                                               "phases": {"rebuild: export": 9.0, "rebuild: load": 7.0}}
    assert last_run("lines", "dev", stats) is None


@pytest.mark.integration
def test_probe_states_an_estimate_and_migrate_records_what_it_measured(copy_of, tmp_path):
    source = copy_of("1.0.20", receipt_spec(records=200, big_dim=None))
    env = {**os.environ, STATS_ENV: str(tmp_path / "throughput.jsonl")}
    probed = subprocess.run([*CLI, "probe", str(source), "--target", "1.5.9", "--json"], capture_output=True,
                            text=True, cwd=REPO, env=env, check=True)
    found = json.loads(probed.stdout)["estimate"]
    assert found["strategy"] == "upgrade" and found["total_seconds"] > 0
    assert {p["basis"] for p in found["phases"]} == {"conservative default"}
    migrated = subprocess.run([*CLI, "migrate", str(source), str(tmp_path / "out"), "--target", "1.5.9", "--json"],
                              capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert json.loads(migrated.stdout)["estimate"]["strategy"] == "upgrade"
    phases = {json.loads(line)["phase"] for line in (tmp_path / "throughput.jsonl").read_text().splitlines()}
    assert {"upgrade: copy", "verify"} <= phases
