"""A campaign: hypothesis draws (version, mutation) pairs, each runs as a bounded case, all are counted.

Findings do not stop the campaign (no shrinking by hypothesis, which would rerun a failing
case many times); each is minimised here instead (fewer flipped bytes, the longest
truncation that still fails) and written as a JSON case that `tests/fuzz` can replay.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st

from chroma_migrate_testkit.fuzz.case import CaseResult, run_case
from chroma_migrate_testkit.fuzz.inventory import Inventory, take_inventory
from chroma_migrate_testkit.fuzz.seeds import SEED_VERSIONS, seed_database
from chroma_migrate_testkit.fuzz.strategies import ROLES, mutations


@dataclass
class CampaignConfig:
    cache: Path
    work: Path
    versions: tuple[str, ...] = SEED_VERSIONS
    cases: int = 200
    seconds: float | None = None
    random_seed: int = 15
    oracle: int = 0  # cases at most whose changed answer is checked against the writing version
    per_cell: int = 4  # hypothesis examples per (version, kind of file) turn
    min_cases: int = 0  # cases run whatever the time budget says
    min_turns: int = 0  # (version, kind of file) turns that get a case whatever the time budget says (all: 42)
    findings: Path | None = None


@dataclass
class Campaign:
    config: CampaignConfig
    results: list[CaseResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    oracle_used: int = 0
    skipped: int = 0  # drawn mutations that did not apply to the seed (nothing to damage)

    def summary(self) -> dict[str, Any]:
        by_role: dict[str, Counter] = defaultdict(Counter)
        for r in self.results:
            by_role[role_of(r.target)][r.outcome] += 1
        longest = max(self.results, key=lambda r: r.seconds, default=None)
        findings = [r for r in self.results if r.finding]
        return {
            "cases": len(self.results),
            "seconds": round(time.monotonic() - self.started, 1),
            "random_seed": self.config.random_seed,
            "by_version": dict(sorted(Counter(r.version for r in self.results).items())),
            "by_file": {role: sum(c.values()) for role, c in sorted(by_role.items())},
            "outcomes": dict(Counter(r.outcome for r in self.results).most_common()),
            "outcomes_by_file": {role: dict(c.most_common()) for role, c in sorted(by_role.items())},
            "peak_rss_mib": max((r.peak_rss_mib for r in self.results), default=0.0),
            "longest_case": None if longest is None else {
                "seconds": longest.seconds, "version": longest.version, "mutation": longest.mutation,
                "outcome": longest.outcome},
            "oracle_checked": self.oracle_used,
            "findings": [{"version": r.version, "outcome": r.outcome, "finding": r.finding, "mutation": r.mutation}
                         for r in findings],
        }


def role_of(target: str) -> str:
    """`words/data_level0.bin` -> `data_level0.bin`: figures are per kind of file, not per collection."""
    return target.split("/", 1)[1] if "/" in target else target


def run_campaign(config: CampaignConfig, log: Callable[[str], None] = lambda _m: None) -> Campaign:
    config.work.mkdir(parents=True, exist_ok=True)
    seeds = {v: seed_database(config.cache, v) for v in config.versions}  # built once, outside the time budget
    campaign = Campaign(config)
    inventories: dict[str, Inventory] = {v: take_inventory(seeds[v], v) for v in config.versions}
    baselines = {}
    for version in config.versions:
        clean = run_case(seeds[version], version, {"target": "chroma.sqlite3", "op": "flip", "edits": []},
                         config.work, None)
        if clean.finding or clean.digest is None:
            raise RuntimeError(f"the undamaged {version} seed does not read cleanly: {clean.outcome} {clean.finding}")
        baselines[version] = clean.digest
    deadline = None if config.seconds is None else campaign.started + config.seconds
    from chroma_migrate_testkit.fuzz.oracle import writer_digests

    def oracle(db: Path, version: str) -> dict[str, str] | str | None:
        if campaign.oracle_used >= config.oracle:
            return None
        campaign.oracle_used += 1
        return writer_digests(db, version)

    seen: set[str] = set()
    ran_in_turn: Counter[int] = Counter()

    def cell(version: str, role: str, turn: int) -> None:
        """A short hypothesis run for one (version, kind of file): its choices depend on nothing outside it."""
        @seed(config.random_seed * 100_003 + turn)
        @settings(max_examples=config.per_cell, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False)
        @given(st.data())
        def one(data: st.DataObject) -> None:
            mutation = data.draw(mutations(inventories[version], role))
            over = deadline is not None and time.monotonic() > deadline
            if over and len(campaign.results) >= config.min_cases:  # after the draws: hypothesis replays this one
                if turn >= config.min_turns:
                    raise _TimeIsUp
                if ran_in_turn[turn]:  # a loaded machine still gets one case of every pair it owes
                    raise _TurnIsDone
            key = json.dumps([version, mutation], sort_keys=True)
            if key in seen or len(campaign.results) >= config.cases:  # each run starts with the simplest example
                return
            seen.add(key)
            result = run_case(seeds[version], version, mutation, config.work, baselines[version],
                              oracle=oracle if config.oracle else None)
            if result.outcome == "not_applicable":
                campaign.skipped += 1
                return
            if result.finding:
                result = minimise(seeds[version], version, result, config.work, baselines[version])
                _write_finding(config.findings, result, len(campaign.results))
                log(f"FINDING {version} {result.outcome}: {result.finding[:200]} "
                    f"{json.dumps(result.mutation)[:300]}")
            campaign.results.append(result)
            ran_in_turn[turn] += 1
            if len(campaign.results) % 100 == 0:
                log(f"{len(campaign.results)} cases, {time.monotonic() - campaign.started:.0f} s, "
                    f"{sum(1 for r in campaign.results if r.finding)} findings")

        with contextlib.suppress(_TurnIsDone):
            one()

    turn = 0
    with contextlib.suppress(_TimeIsUp):
        while len(campaign.results) < config.cases:  # (version, file) pairs in turn: 42 turns visit all of them
            cell(config.versions[turn % len(config.versions)], ROLES[turn % len(ROLES)], turn)
            turn += 1
            if turn > 50 * max(1, config.cases):  # every draw a duplicate: nothing new to try
                break
    return campaign


class _TimeIsUp(Exception):
    """The campaign's time budget is spent: stops hypothesis's loop (it is not a finding)."""


class _TurnIsDone(Exception):
    """Past the time budget, a turn still owed its one case has had it: on to the next turn."""


def minimise(seed_db: Path, version: str, result: CaseResult, work: Path, baseline: dict[str, str]) -> CaseResult:
    """Make a finding's mutation smaller while it still gives the same finding."""
    mutation = dict(result.mutation)

    def same(candidate: dict[str, Any]) -> CaseResult | None:
        again = run_case(seed_db, version, candidate, work, baseline)
        return again if again.outcome == result.outcome else None

    best = result
    if mutation["op"] == "flip" and len(mutation["edits"]) > 1:
        edits = list(mutation["edits"])
        for edit in list(edits):
            trial = [e for e in edits if e != edit]
            found = same({**mutation, "edits": trial}) if trial else None
            if found:
                edits, best = trial, found
        mutation["edits"] = edits
    if mutation["op"] == "truncate":
        low, high = mutation["size"], mutation["size"] * 2 + 64  # search the longest failing length
        while low + 1 < high:
            middle = (low + high) // 2
            found = same({**mutation, "size": middle})
            if found:
                low, best = middle, found
            else:
                high = middle
        mutation["size"] = low
    best.mutation = mutation
    return best


def _write_finding(folder: Path | None, result: CaseResult, number: int) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    case = {"version": result.version, "mutation": result.mutation, "found": result.outcome,
            "finding": result.finding}
    (folder / f"finding-{number:04d}-{result.version}.json").write_text(json.dumps(case, indent=2) + "\n")
