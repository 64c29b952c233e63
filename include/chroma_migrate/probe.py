"""Decide per collection whether a target version needs noop, upgrade, transplant or rebuild.

Facts come from the native reader, in place (no copy, no child process): the schema, the
collections, and for `noop` the proof that every collection reads back consistently.
Only what the native reader cannot know, whether the target's own migration of the file
succeeds, is learned by letting the target open a copy, in a child process.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.collection_spec import unrepresentable
from chroma_migrate.errors import WorkerFailedError
from chroma_migrate.estimate import estimate, work_units
from chroma_migrate.inspection import DatabaseInfo, describe_database
from chroma_migrate.reader_policy import gate_readers, prepare_readers
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.strategy import Strategy, choose_strategy
from chroma_migrate.versions import ChromaVersion
from chroma_migrate.worker_client import run_worker


@dataclass
class CollectionVerdict:
    collection: str
    strategy: str  # noop | upgrade | transplant | rebuild | blocked
    reason: str


@dataclass
class ProbeResult:
    path: str
    target: str
    source_signature: dict[str, int]
    written_by: list[str]
    strategy: str
    reason: str
    collections: list[CollectionVerdict]
    readers: dict[str, Any] | None = None  # reader_gate's verdicts on the target's form of the data
    readers_note: str = ""
    estimate: dict[str, Any] | None = None  # estimate.py: seconds per phase of the chosen strategy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def try_open_copy(info: DatabaseInfo, target: ChromaVersion, work_dir: Path | None,
                  readers: dict[str, str] | None = None) -> tuple[bool, str, dict[str, Any] | None]:
    """Open a copy with the target; (True, summary) or (False, why it cannot), and the declared
    readers' verdicts on the copy the target opened (the upgrade's form of the data)."""
    with tempfile.TemporaryDirectory(prefix="chroma-migrate-probe-", dir=work_dir) as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(info.path, copy)
        try:
            described = run_worker(target.version, "describe", {"path": str(copy)}).data
        except WorkerFailedError as exc:
            return False, f"chromadb {target.version} cannot open a copy: {exc.problem}", None
        gate = gate_readers(copy, readers or {}, Path(scratch))
    opened, detail = _counts_match(info, target, described)
    return opened, detail, gate if opened else None


def _counts_match(info: DatabaseInfo, target: ChromaVersion, described: dict[str, Any]) -> tuple[bool, str]:
    counts = {c["name"]: c["count"] for c in described["collections"]}
    wrong = [c.name for c in info.collections if counts.get(c.name) != c.records]
    if wrong:
        return False, f"chromadb {target.version} opened a copy but counts differ for {', '.join(wrong)}"
    return True, f"chromadb {target.version} opened a copy and counts match"


def predicted_graphs(path: Path) -> dict[str, str]:
    """Per collection, whether a transplant would carry its graph or build one (the target is
    configured with the source's settings, so only the graph's own soundness decides)."""
    from chroma_migrate.native import open_database
    from chroma_migrate.transplant.graph_choice import choose_graph

    with open_database(path) as native:
        return {c.name: f"; graph {choice.path}: {choice.reason}"
                for c in native.collections() for choice in [choose_graph(c, c.index)]}


def probe(path: Path, target_version: str, *, work_dir: Path | None = None,
          readers: dict[str, str] | None = None) -> ProbeResult:
    """A dry run of `auto` (strategy.py): the same decision, where an upgrade is predicted by the
    target opening a copy and counting its records, not yet verified as the migration would.
    Declared readers smoke-read the upgraded copy (or the source, for a noop); a rebuild writes a
    new database, which only `migrate --reader` can show them."""
    target = resolve_version(target_version)
    readers = prepare_readers(readers or {}, log=lambda _m: None)
    info = describe_database(path)
    blocked = {c.name: "; ".join(problem for problem, _fix in found) for c in info.collections
               if (found := unrepresentable(c, target))}
    choice = choose_strategy(info, target, Strategy.AUTO)
    strategy, reason = choice.first, choice.reason
    gate = None
    if strategy is Strategy.UPGRADE:
        opened, detail, gate = try_open_copy(info, target, work_dir, readers)
        strategy, reason = (Strategy.UPGRADE, f"{reason}; {detail}") if opened else (Strategy.TRANSPLANT, detail)
    elif strategy is Strategy.NOOP and readers:
        with tempfile.TemporaryDirectory(prefix="chroma-migrate-probe-", dir=work_dir) as scratch:
            gate = gate_readers(Path(path), readers, Path(scratch))
    note = ("" if gate or not readers else
            f"readers not measured: a {strategy} writes a new database; `migrate --reader` checks them on it")
    graphs = predicted_graphs(Path(path)) if strategy is Strategy.TRANSPLANT else {}
    verdicts = [CollectionVerdict(c.name, "blocked" if c.name in blocked else str(strategy),
                                  blocked.get(c.name, reason + graphs.get(c.name, ""))) for c in info.collections]
    overall = "blocked" if blocked else str(strategy)
    expected = None if blocked else estimate(str(strategy), work_units(info.collections))
    return ProbeResult(str(path), target.version, info.signature, info.written_by, overall,
                       "; ".join(blocked.values()) if blocked else reason, verdicts, gate, note, expected)
