"""The migration as separate, idempotent steps keyed by a run: what the DAG's tasks call.

A run's working files live under `{staging_root}/{collection}/{run_key}/`, on storage
every worker shares (EFS in production, a local folder in the demo): the downloaded
source, the exported batches, the new database and the reports. Each step can run again
(retry, clear, backfill) and converge: the caller's ledger skips finished batches, loads
upsert, and the plan, once written, is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chroma_migrate.batches import Batch, CollectionPlan, export_collections, plan_collections
from chroma_migrate.collection_spec import refuse_unrepresentable, target_collection_spec
from chroma_migrate.dbfile import size_on_disk
from chroma_migrate.errors import MigrationError, TransplantFailedError, VerificationFailedError, WorkerFailedError
from chroma_migrate.estimate import estimate, render_estimate, work_units
from chroma_migrate.faults import fault_point
from chroma_migrate.inspection import describe_database
from chroma_migrate.migrate import MigrationRequest, migrate
from chroma_migrate.phases import PhaseLog
from chroma_migrate.progress import Advance, counting_copy
from chroma_migrate.reader_policy import breaking_readers, gate_readers, prepare_readers, render_readers_markdown
from chroma_migrate.run_types import BatchJob, BatchKind, ExportOutcome, LoadOutcome, MigrationPlan
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.snapshots.manifest import MANIFEST_NAME
from chroma_migrate.staging_space import cleaned_when_full
from chroma_migrate.strategy import Strategy, StrategyChoice, choose_strategy, fallback_reason, requested_strategy
from chroma_migrate.target_collections import create_target_collections
from chroma_migrate.verification.report import behaviour_markdown, render_verification, self_retrieval_text
from chroma_migrate.verification.verify import VerifyRequest, verify_databases
from chroma_migrate.worker_client import run_worker

PLAN_FORMAT = 1
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def for_run(cls, staging_root: Path, collection: str, run_key: str) -> RunPaths:
        return cls(Path(staging_root) / collection / run_key)

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def plan_verification(self) -> Path:
        return self.root / "plan-verification.json"

    @property
    def report_json(self) -> Path:
        return self.root / "verification.json"

    @property
    def report_md(self) -> Path:
        return self.root / "verification.md"


def read_plan(paths: RunPaths) -> MigrationPlan:
    """The plan the run's plan step wrote (a later step never re-plans)."""
    return json.loads(paths.plan_file.read_text())


def run_key_for(run_id: str) -> str:
    """A file- and key-safe name for an Airflow run id, unique per run id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def plan_run(paths: RunPaths, target_version: str, strategy: str = "auto", batch_size: int = 5000,
             sample_queries: dict[str, list[dict[str, Any]]] | None = None) -> MigrationPlan:
    """Choose the strategy (strategy.py: under `auto` the upgrade is done and verified here, and a
    copy that fails either way is rebuilt instead) and cut the work into batches; reuse the plan
    if it exists."""
    if paths.plan_file.is_file():
        return json.loads(paths.plan_file.read_text())
    if batch_size < 1:
        raise MigrationError(f"batch_size must be at least 1, got {batch_size}.", "Pass a positive batch_size.")
    target = resolve_version(target_version)
    info = describe_database(paths.source)
    refuse_unrepresentable(info.collections, target)
    requested = requested_strategy(strategy)
    choice = choose_strategy(info, target, requested)
    chosen, reason, done_in_plan = choose_in_plan(paths, choice, target.version, batch_size, sample_queries)
    batches: list[BatchJob] = []
    if chosen in (Strategy.UPGRADE, Strategy.TRANSPLANT):
        total = sum(c.records for c in info.collections)
        batches = [{"index": 0, "kind": BatchKind(str(chosen)).value, "collection": None, "records": total,
                    "upgraded_in_plan": done_in_plan}]
    elif chosen is Strategy.REBUILD:
        dimensions = {c.name: c.dimension for c in info.collections}
        records = {c.name: c.records for c in info.collections}
        for name, plan in plan_collections(paths.source, dimensions, batch_size).items():
            for batch in plan.batches:
                batches.append({"index": len(batches), "kind": BatchKind.REBUILD.value, "collection": name,
                                "records": records[name], "batch": asdict(batch), "dimension": dimensions[name]})
    plan: MigrationPlan = {
        "format": PLAN_FORMAT, "strategy": str(chosen), "requested_strategy": strategy, "reason": reason,
        "source_version": info.reader_version, "written_by": info.written_by, "target_version": target.version,
        "collections": [c.name for c in info.collections], "records": {c.name: c.records for c in info.collections},
        "batch_size": batch_size, "batches": batches,
        # What each load creates in the target, decided once here instead of re-reading the source per batch.
        "target_specs": {c.name: target_collection_spec(c, target) for c in info.collections},
        "databases": info.databases,
        "estimate": estimate(str(chosen), work_units(info.collections)),
    }
    paths.root.mkdir(parents=True, exist_ok=True)
    temporary = paths.plan_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(plan, indent=2))
    temporary.replace(paths.plan_file)
    return plan


IN_PLAN = (Strategy.UPGRADE, Strategy.TRANSPLANT)


def choose_in_plan(paths: RunPaths, choice: StrategyChoice, target_version: str, batch_size: int,
                   sample_queries: dict[str, list[dict[str, Any]]] | None = None) -> tuple[Strategy, str, bool]:
    """Run `auto`'s upgrade and any transplant in the plan step, in the order strategy.py chose, by the
    same engine call as the CLI: (strategy, reason, done in the plan). A forced upgrade stays a batch
    of its own; a strategy that fails gives way to the next, and a rebuild runs as mapped batches."""
    reason = choice.reason
    order = choice.order
    if order == [Strategy.UPGRADE]:
        return Strategy.UPGRADE, reason, False
    for position, strategy in enumerate(order):
        if strategy not in IN_PLAN:
            return strategy, reason, False
        problem = attempt_in_plan(paths, strategy, target_version, batch_size, sample_queries)
        if problem is None:
            return strategy, f"{reason}; verified", True
        following = order[position + 1] if position + 1 < len(order) else None
        if following is None:
            raise TransplantFailedError(f"{strategy} failed: {problem}", "Run again with the rebuild strategy.")
        reason = fallback_reason(strategy, problem, following)
    raise AssertionError("unreachable: the last strategy returns")


def attempt_in_plan(paths: RunPaths, strategy: Strategy, target_version: str, batch_size: int,
                    sample_queries: dict[str, list[dict[str, Any]]] | None = None) -> str | None:
    """One strategy into the run's target folder, verified against the source; the problem if it failed
    (migrate never wrote OUT then)."""
    shutil.rmtree(paths.target, ignore_errors=True)
    request = MigrationRequest(paths.source, paths.target, target_version, strategy=str(strategy),
                               batch_size=batch_size, sample_queries=sample_queries, fall_back=False)
    with cleaned_when_full(f"writing the {strategy} of the source", paths.root, paths.target):
        try:
            result = migrate(request, log=logger.info)
        except (WorkerFailedError, VerificationFailedError, TransplantFailedError) as exc:
            return exc.problem
    paths.plan_verification.write_text(json.dumps(
        {"fingerprint": tree_fingerprint(paths.target), "report": result["verification"]}, default=str))
    return None


def tree_fingerprint(folder: Path) -> str:
    """Every file's path, size and modification time: whether a folder changed since it was verified."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def verified_in_plan(paths: RunPaths, plan: MigrationPlan) -> dict[str, Any] | None:
    """The report of `auto`'s upgrade, verified while planning, if the target is unchanged since
    (a file that changed, for instance damage on the staging disk, is verified again)."""
    if not (plan["batches"] and plan["batches"][0].get("upgraded_in_plan") and paths.plan_verification.is_file()):
        return None
    kept = json.loads(paths.plan_verification.read_text())
    return kept["report"] if kept["fingerprint"] == tree_fingerprint(paths.target) else None


def batch_label(batch: BatchJob) -> str:
    """What the Airflow UI shows for a mapped batch."""
    if batch["kind"] == BatchKind.UPGRADE:
        return "upgrade copy"
    if batch["kind"] == BatchKind.TRANSPLANT:
        return "transplant (native writer)"
    low, high = batch["batch"]["low"] or "start", batch["batch"]["high"] or "end"
    return f"{batch['collection']} #{batch['batch']['index']} [{low[:24]} .. {high[:24]})"


def export_size(paths: RunPaths, plan: MigrationPlan, batch: BatchJob) -> tuple[int, str]:
    """What exporting `batch` goes through, for its task's progress log: the source's bytes for the
    upgrade's copy, else the batch's records (every range of a collection holds batch_size ids but its last)."""
    if BatchKind(batch["kind"]).whole_database:
        return size_on_disk(paths.source), "bytes"
    before = batch["batch"]["index"] * plan["batch_size"]
    return max(0, min(plan["batch_size"], batch["records"] - before)), "records"


def export_batch(paths: RunPaths, plan: MigrationPlan, batch: BatchJob, progress: Advance | None = None,
                 ) -> ExportOutcome:
    """Rebuild: one id range to Parquet. Upgrade: copy the source and let the target open it.
    `progress` hears of the records exported (the upgrade's copy: bytes copied), for the task's log."""
    fault_point("export_batch", batch["index"])
    kind = BatchKind(batch["kind"])
    if kind.whole_database and batch.get("upgraded_in_plan") and paths.target.is_dir():
        counts = {c.name: c.records for c in describe_database(paths.target).collections}
        return {"index": batch["index"], "kind": kind.value, "count": sum(counts.values()), "counts": counts}
    if kind is BatchKind.TRANSPLANT:  # the plan's result is gone (cleared staging): write it again
        problem = attempt_in_plan(paths, Strategy.TRANSPLANT, plan["target_version"], plan["batch_size"])
        if problem is not None:
            raise TransplantFailedError(f"The transplant, written again for batch {batch['index']}, failed: "
                                        f"{problem}.", "Run the migration again with the rebuild strategy.")
        return export_batch(paths, plan, {**batch, "upgraded_in_plan": True}, progress)
    if batch["kind"] == BatchKind.UPGRADE:
        staging = paths.root / "target.upgrading"
        shutil.rmtree(staging, ignore_errors=True)
        with cleaned_when_full("copying the source for the upgrade", paths.root, staging):
            # The downloaded source carries the old version's manifest; the new version gets its own.
            shutil.copytree(paths.source, staging, ignore=shutil.ignore_patterns(MANIFEST_NAME),
                            copy_function=counting_copy(progress))
            described = run_worker(plan["target_version"], "describe", {"path": str(staging)}).data
        shutil.rmtree(paths.target, ignore_errors=True)
        staging.rename(paths.target)
        counts = {c["name"]: c["count"] for c in described["collections"]}
        fault_point("export_batch_written", batch["index"])
        return {"index": batch["index"], "kind": "upgrade", "count": sum(counts.values()), "counts": counts}
    name = batch["collection"]
    piece = Batch(**batch["batch"])
    folder = paths.exports / f"{batch['index']:05d}"
    shutil.rmtree(folder, ignore_errors=True)  # files of an attempt that died are never mixed with this one's
    with cleaned_when_full(f"exporting batch {batch['index']}", paths.root, folder):
        exported = export_collections(
            plan["source_version"], paths.source, {name: CollectionPlan(name, [piece], batch["dimension"])},
            folder, workers=1, phases=PhaseLog(), complete=False, progress=progress,
        )[name]
    fault_point("export_batch_written", batch["index"])
    return {"index": batch["index"], "kind": "rebuild", "collection": name, "count": exported.exported,
            "files": [str(f) for f in exported.files], "sha256": [file_sha256(f) for f in exported.files],
            "collection_count": exported.count}


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def changed_exports(exported: ExportOutcome) -> list[str]:
    """Exported files that are gone or whose bytes differ from what the export recorded."""
    recorded = exported.get("sha256") or [None] * len(exported.get("files", []))
    problems = []
    for name, sha256 in zip(exported.get("files", []), recorded, strict=True):
        if not Path(name).is_file():
            problems.append(f"{name} is missing")
        elif sha256 is not None and file_sha256(name) != sha256:
            problems.append(f"{name} changed since it was exported (sha256 differs from the recorded {sha256[:12]}…)")
    return problems


def load_batch(paths: RunPaths, plan: MigrationPlan, batch: BatchJob, exported: ExportOutcome,
               progress: Advance | None = None) -> LoadOutcome:
    """Write one exported batch into the target with upsert, so a retried load converges.
    `progress` hears of each exchange file written, for the task's log."""
    fault_point("load_batch", batch["index"])
    if BatchKind(batch["kind"]).whole_database:
        return {"index": batch["index"], "kind": batch["kind"], "count": exported["count"]}
    problems = changed_exports(exported)
    if problems:
        raise MigrationError(
            f"Load batch {batch['index']} refused: " + "; ".join(problems) + ".",
            "The staging area was damaged after the export; nothing was loaded from it. Rerun (clear) the run: "
            "the export of this batch is redone because its files no longer match.",
        )
    spec = plan["target_specs"][batch["collection"]]
    # No cleanup here: the new database holds the batches loaded before; a rerun upserts this one
    # again and verification proves the result.
    with cleaned_when_full(f"loading batch {batch['index']} into the new database", paths.root):
        create_target_collections(plan["target_version"], paths.target, [spec], plan.get("databases", []))
        result = run_worker(plan["target_version"], "load", {
            "path": str(paths.target), "jobs": [{"collection": spec, "files": exported["files"]}], "mode": "upsert",
        }, progress=progress)
    loaded = result.data[batch["collection"]]
    fault_point("load_batch_written", batch["index"])
    return {"index": batch["index"], "kind": "rebuild", "collection": batch["collection"],
            "count": loaded["written"], "collection_count_after": loaded["count"]}


def verify_run(paths: RunPaths, plan: MigrationPlan, batch_size: int | None = None,
               readers: dict[str, str] | None = None,
               sample_queries: dict[str, list[dict[str, Any]]] | None = None,
               dev_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify the new database against the source, let every declared reader smoke-read a copy of
    it, and store the report beside the run's files.

    The source is read again here (in place, by the native reader) rather than trusting the
    batch files: a retried or cleared run may have lost them, and the check stays independent
    of the export. `auto`'s upgrade was verified by the plan step; its report stands while the
    target is unchanged.
    """
    report = verified_in_plan(paths, plan)
    if report is not None:
        report["verified_while_planning"] = True
    else:
        with cleaned_when_full("verifying (the verifier's copies are removed with it)", paths.root):
            report = verify_databases(VerifyRequest(
                paths.source, paths.target, source_version=plan["source_version"],
                target_version=plan["target_version"], batch_size=batch_size or plan["batch_size"],
                work_dir=paths.root, sample_queries=sample_queries))
    report["strategy"] = plan["strategy"]
    report["readers"] = None
    if report["passed"] and readers:
        report["readers"] = gate_readers(paths.target, prepare_readers(readers, log=logger.info), paths.root)
    paths.report_json.write_text(json.dumps(report, indent=2, default=str))
    paths.report_md.write_text(render_report_markdown(plan, report, dev_run))
    return report


def verification_summary(plan: MigrationPlan, report: dict[str, Any], report_url: str, markdown: str,
                         ) -> dict[str, Any]:
    """What the approver reads and later tasks get from a passed verification."""
    return {"passed": True, "strategy": plan["strategy"], "source_version": plan["source_version"],
            "target_version": plan["target_version"], "records": target_counts(report), "report": report_url,
            "markdown": markdown, "breaking_readers": breaking_readers(report.get("readers"))}


def read_report(paths: RunPaths) -> dict[str, Any]:
    """The verification report the verify step stored for this run."""
    if not paths.report_json.is_file():
        raise MigrationError(f"No verification report at {paths.report_json}: the run's verify step has not passed.",
                             "Run the migration from the start; publishing needs a verified target.")
    return json.loads(paths.report_json.read_text())


def target_counts(report: dict[str, Any]) -> dict[str, int | None]:
    """Records per collection in the verified target, from a verification report."""
    return {c["collection"]: (c.get("records") or {}).get("target_count") for c in report["collections"]}


def render_report_markdown(plan: MigrationPlan, report: dict[str, Any],
                           dev_run: dict[str, Any] | None = None) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Verification {verdict}: chromadb {plan['source_version']} → {plan['target_version']}",
        "",
        f"- strategy: **{plan['strategy']}** ({plan['reason']})",
        *(["- verified while planning; the upgraded copy is unchanged since"]
          if report.get("verified_while_planning") else []),
        f"- collections: {', '.join(plan['collections'])}",
        *([f"- {render_estimate(plan['estimate'])}"] if plan.get("estimate") else []),
        *([f"- the dev run {dev_run['run_key']} took: "
           + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in dev_run["phases"].items())]
          if dev_run else []),
        "",
        "| collection | source | target | identical | equivalent | missing | extra | different | recall | "
        "self-retrieval |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for c in report["collections"]:
        r = c.get("records") or {}
        recall = c.get("recall") or {}
        recall_text = (f"{recall['source_recall']:.3f} → {recall['target_recall']:.3f}"
                       if recall.get("queries") else "n/a")
        lines.append(f"| {c['collection']} | {r.get('source_count', '-')} | {r.get('target_count', '-')} | "
                     f"{r.get('identical', '-')} | {r.get('equivalent', '-')} | {r.get('missing', '-')} | "
                     f"{r.get('extra', '-')} | {r.get('different', '-')} | {recall_text} | "
                     f"{self_retrieval_text(recall)} |")
    if report["problems"]:
        lines += ["", "## Problems", *[f"- {p}" for p in report["problems"]]]
    if report.get("transplant"):
        lines += ["", "## Transplant", *[f"- {item['name']}: graph {item['graph']} ({item['reason']})"
                                        for item in report["transplant"]["collections"]]]
    notes = [f"- {c['collection']}: {n}" for c in report["collections"] for n in c.get("notes", [])]
    if notes:
        lines += ["", "## Notes", *notes]
    lines += behaviour_markdown(report)
    lines += render_readers_markdown(report.get("readers"))
    lines += ["", "```", render_verification(report), "```", ""]
    return "\n".join(lines)
