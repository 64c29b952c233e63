"""Write a verified copy of a database in another chromadb version's format.

All work happens in a hidden sibling of OUT (same file system, so the final step is a
rename): the target being built, the exported batches and, for the runtime exporter
only, a copy of the source. The native reader reads the source in place, so PATH is
never copied for it. OUT appears only after verification passed; a failure removes the
sibling and leaves PATH and OUT as they were.
"""

from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chroma_migrate.batches import EXPORTERS, CollectionPlan, QuerySet, export_collections, plan_collections
from chroma_migrate.collection_spec import refuse_unrepresentable, target_collection_spec
from chroma_migrate.errors import (
    MigrationError,
    TransplantFailedError,
    VerificationFailedError,
    WorkerFailedError,
)
from chroma_migrate.estimate import PhaseMeasure, estimate, record, render_estimate, work_units
from chroma_migrate.faults import fault_point
from chroma_migrate.inspection import DatabaseInfo, describe_database
from chroma_migrate.phases import PhaseLog
from chroma_migrate.progress import PhaseDisplay, counting_copy
from chroma_migrate.reader_policy import gate_readers, prepare_readers
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.snapshots.manifest import MANIFEST_NAME
from chroma_migrate.strategy import Strategy, choose_strategy, fallback_reason, requested_strategy
from chroma_migrate.target_collections import create_target_collections
from chroma_migrate.verification.behaviour import check_sample_collections, validate_sample_queries
from chroma_migrate.verification.text_sample import TextAnswers, start_text_answers
from chroma_migrate.verification.verify import (
    SourceSide,
    VerifyRequest,
    pick_queries,
    query_jobs,
    query_sets_for,
    read_source_side,
    verify_databases,
)
from chroma_migrate.versions import ChromaVersion
from chroma_migrate.worker_client import run_worker

NEAREST_KEY = "__nearest__"  # where the load operation puts its answers (worker/write_ops.py)
TEXT_KEY = "__text__"

DEFAULT_BATCH_SIZE = 5000


@dataclass
class MigrationRequest:
    source: Path
    out: Path
    target: str
    strategy: str = "auto"
    collections: list[str] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 1
    export_with: str = "native"
    # Services that read the result, by name, and the chromadb release each pins (reader_policy.py).
    readers: dict[str, str] = field(default_factory=dict)
    # The operator's own queries per collection, compared across the versions (verification/behaviour.py).
    sample_queries: dict[str, list[dict]] | None = None
    # Whether a failed strategy falls back to the next one (strategy.py). The DAG's plan step tries
    # only the first and runs a rebuild as mapped batches itself.
    fall_back: bool = True

    def __post_init__(self) -> None:
        """Malformed sample queries are refused here, before any work."""
        validate_sample_queries(self.sample_queries)


@dataclass
class Attempt:
    strategy: str
    outcome: str
    reason: str = ""


@dataclass
class MigrationState:
    request: MigrationRequest
    target: ChromaVersion
    info: DatabaseInfo
    stage: Path
    names: list[str]
    phases: PhaseLog
    background: ThreadPoolExecutor
    attempts: list[Attempt] = field(default_factory=list)
    # Batches and queries depend on the source alone: a fallback to rebuild reuses the upgrade's.
    prepared: tuple[dict[str, CollectionPlan], dict[str, QuerySet], TextAnswers] | None = None

    @property
    def source_copy(self) -> Path:
        return self.stage / "source"

    @property
    def target_db(self) -> Path:
        return self.stage / "target"


def validate_request(request: MigrationRequest) -> tuple[ChromaVersion, DatabaseInfo, list[str]]:
    """Everything that can be refused before any work is refused here."""
    target = resolve_version(request.target)
    requested_strategy(request.strategy)
    if request.batch_size < 1:
        raise MigrationError(f"--batch-size must be at least 1, got {request.batch_size}.",
                             f"Use a positive number; {DEFAULT_BATCH_SIZE} is the default.")
    if request.workers < 1:
        raise MigrationError(f"--workers must be at least 1, got {request.workers}.", "Use 1 or more.")
    if request.export_with not in EXPORTERS:
        raise MigrationError(f"Unknown exporter {request.export_with!r}.", f"Use one of {', '.join(EXPORTERS)}.")
    source, out = request.source.resolve(), request.out.resolve()
    if out == source or source in out.parents:
        raise MigrationError(f"OUT {out} is inside the source {source}.", "Choose an OUT outside PATH.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MigrationError(f"OUT {out} already exists and is not empty.",
                             "Choose a new path, or remove it first if its content is no longer needed.")
    if not out.parent.is_dir():
        raise MigrationError(f"The parent folder of OUT, {out.parent}, does not exist.", "Create it first.")
    info = describe_database(source)
    names = request.collections or [c.name for c in info.collections]
    for name in names:
        info.collection(name)
    refuse_unrepresentable([info.collection(name) for name in names], target)
    check_sample_collections(request.sample_queries, names)
    request.readers = prepare_readers(request.readers, log=lambda _m: None)
    return target, info, names


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def migrate(request: MigrationRequest, log=print, display: PhaseDisplay | None = None) -> dict[str, Any]:
    """`display` (the CLI's bars on a terminal) is shown each phase's progress; the result is the same."""
    target, info, names = validate_request(request)
    out = request.out.resolve()
    need = (3 if request.export_with == "runtime" else 2) * info.size_bytes
    if _free_bytes(out.parent) < need:
        raise MigrationError(f"{out.parent} has {_free_bytes(out.parent)} bytes free; this migration needs "
                             f"about {need} (the new database and the batches).", "Free space first.")
    stage = out.parent / f".{out.name}.chroma-migrate-{uuid.uuid4().hex[:8]}"
    background = ThreadPoolExecutor(max_workers=1)  # the source version's fresh database, during the target's work
    state = MigrationState(request, target, info, stage, names, PhaseLog(log, display=display), background)
    units = work_units(info.collection(name) for name in names)
    # The likely first strategy, without the native read-back a noop decision makes (done once, below).
    likely = choose_strategy(info, target, Strategy(request.strategy), reads_whole=(True, "")).first
    expected = estimate(str(likely), units)
    log(render_estimate(expected))
    stage.mkdir()
    try:
        verification = _run_strategies(state, log)
        verification["readers"] = None
        if request.readers:
            with state.phases.phase("readers", readers=len(request.readers)):
                verification["readers"] = gate_readers(state.target_db, request.readers, stage)
        if out.exists():
            out.rmdir()
        state.target_db.rename(out)
    finally:
        background.shutdown(wait=True)
        shutil.rmtree(stage, ignore_errors=True)
    final = state.attempts[-1]
    record([PhaseMeasure(p.name, units, p.seconds, final.strategy) for p in state.phases.phases])
    return {
        "source": info.path, "out": str(out), "source_version": info.reader_version,
        "export_with": request.export_with,
        "written_by": info.written_by, "target_version": target.version, "strategy": final.strategy,
        "attempts": [a.__dict__ for a in state.attempts], "collections": names,
        "verification": verification, "readers": verification["readers"], "phases": state.phases.to_list(),
        "total_seconds": state.phases.total_seconds, "estimate": expected,
    }


def _run_strategies(state: MigrationState, log) -> dict[str, Any]:
    """Run the chosen strategy (strategy.py); under `auto` a failed open or verification falls back
    to a rebuild from the source."""
    info, target = state.info, state.target
    requested = Strategy(state.request.strategy)
    choice = choose_strategy(info, target, requested)
    reason = choice.reason
    order = choice.order if state.request.fall_back else [choice.first]
    for position, strategy in enumerate(order):
        shutil.rmtree(state.target_db, ignore_errors=True)
        try:
            verification = STRATEGY_STEPS.get(strategy, _upgrade)(state)
        except (WorkerFailedError, VerificationFailedError, TransplantFailedError) as exc:
            state.attempts.append(Attempt(str(strategy), "failed", exc.problem))
            if position == len(order) - 1:
                raise
            following = order[position + 1]
            log(f"{strategy} failed ({exc.problem}); falling back to {following}")
            reason = fallback_reason(strategy, exc.problem, following)
            continue
        done = "the files were copied and verified" if strategy is Strategy.NOOP else "verified"
        state.attempts.append(Attempt(str(strategy), "verified", f"{reason}; {done}" if position == 0 else reason))
        return verification
    raise AssertionError("unreachable: the last strategy either returns or raises")


def _verify(state: MigrationState, source_plans: dict[str, CollectionPlan] | None = None,
            query_sets: dict[str, QuerySet] | None = None,
            target_nearest: dict[str, list[list[str]]] | None = None,
            plans: dict[str, CollectionPlan] | None = None, text: TextAnswers | None = None,
            side: SourceSide | None = None) -> dict[str, Any]:
    """The native reader compares the source in place with the new database; chromadb is not started."""
    with state.phases.phase("verify", total=_records(state)):
        report = verify_databases(VerifyRequest(
            Path(state.info.path), state.target_db, source_version=state.info.reader_version,
            target_version=state.target.version, collections=state.names, batch_size=state.request.batch_size,
            workers=state.request.workers, work_dir=state.stage, phases=state.phases,
            source_plans=source_plans, query_sets=query_sets, target_nearest=target_nearest, source_info=state.info,
            plans=plans, text=text, sample_queries=state.request.sample_queries, source_side=side,
        ))
    if not report["passed"]:
        raise VerificationFailedError("Verification failed: " + "; ".join(report["problems"][:5]), report)
    return report


def _records(state: MigrationState) -> int:
    """The records of the selected collections: what an export, a load or a verification goes through."""
    return sum(state.info.collection(name).records for name in state.names)


def _recall_queries(state: MigrationState) -> tuple[dict[str, CollectionPlan], dict[str, QuerySet], TextAnswers]:
    """Batches, recall queries and the text queries' sample, all taken natively from the source before
    the target runs; the source version's fresh answers to the text queries start meanwhile (once
    per migration: a fallback attempt reuses them)."""
    if state.prepared is not None:
        return state.prepared
    query_dir = state.stage / "queries"
    query_dir.mkdir(exist_ok=True)
    dimensions = {name: state.info.collection(name).dimension for name in state.names}
    plans = plan_collections(Path(state.info.path), dimensions, state.request.batch_size)
    query_sets = query_sets_for(state.names, query_dir)
    pick_queries(Path(state.info.path), plans, query_sets)
    text = start_text_answers(Path(state.info.path), plans, state.stage / "text", state.info.reader_version,
                              state.target.version, state.background)
    state.prepared = (plans, query_sets, text)
    return state.prepared


def _upgrade(state: MigrationState) -> dict[str, Any]:
    """Copy, let the target open (and migrate) the copy and answer the recall queries in the same
    process, drop unselected collections, verify natively."""
    with ThreadPoolExecutor(max_workers=1) as ahead:  # the copy is the kernel's work: read the source meanwhile
        prepared = ahead.submit(_recall_queries, state)
        with state.phases.phase("upgrade: copy", total=state.info.size_bytes, unit="bytes"):
            # A snapshot downloaded from S3 carries its version's manifest; the new version gets its own.
            shutil.copytree(state.info.path, state.target_db, ignore=shutil.ignore_patterns(MANIFEST_NAME),
                            copy_function=counting_copy(state.phases.progress))
        plans, query_sets, text = prepared.result()
    with ThreadPoolExecutor(max_workers=1) as beside:  # the source's share of verification, meanwhile
        source_side = beside.submit(read_source_side, Path(state.info.path), state.names, query_sets)
        with state.phases.phase("upgrade: open with target"):
            result = run_worker(state.target.version, "describe", {
                "path": str(state.target_db), "queries": query_jobs(query_sets), **text.worker_args()})
            text.target_answers = result.data.get("text")
            state.phases.child_peak(result.peak_rss_bytes)
            unselected = [c.name for c in state.info.collections if c.name not in state.names]
            if unselected:
                run_worker(state.target.version, "delete_collections",
                           {"path": str(state.target_db), "names": unselected})
        side = source_side.result()
    return _verify(state, query_sets=query_sets, target_nearest=result.data.get("nearest", {}), plans=plans,
                   text=text, side=side)


def _rebuild(state: MigrationState) -> dict[str, Any]:
    """Export the source in id-range batches (natively in place, or with its chromadb on a copy),
    create the collections in a fresh target database with the source's ids and configuration,
    load the batches, and let the target answer the recall queries.

    Verification then reads the source again, in place: never the export files, so a record
    that changed between export and load cannot pass.
    """
    state.target_db.mkdir()
    source = Path(state.info.path)
    if state.request.export_with == "runtime" and not state.source_copy.exists():
        with state.phases.phase("copy source", total=state.info.size_bytes, unit="bytes"):
            shutil.copytree(state.info.path, state.source_copy, copy_function=counting_copy(state.phases.progress))
        source = state.source_copy
    plans, query_sets, text = _recall_queries(state)
    with state.phases.phase("rebuild: export", total=_records(state), workers=state.request.workers,
                            exporter=state.request.export_with):
        exported = export_collections(state.info.reader_version, source, plans, state.stage / "export",
                                      workers=state.request.workers, phases=state.phases,
                                      export_with=state.request.export_with, progress=state.phases.progress)
    fault_point("rebuild_exported")
    with ThreadPoolExecutor(max_workers=1) as beside:  # the source's share of verification, meanwhile
        source_side = beside.submit(read_source_side, Path(state.info.path), state.names, query_sets)
        with state.phases.phase("rebuild: load", total=sum(plan.exported for plan in exported.values())):
            specs = [target_collection_spec(state.info.collection(name), state.target) for name in state.names]
            create_target_collections(state.target.version, state.target_db, specs, state.info.databases)
            jobs = [{"collection": spec, "files": [str(f) for f in exported[spec["name"]].files]} for spec in specs]
            result = run_worker(state.target.version, "load", {
                "path": str(state.target_db), "jobs": jobs, "queries": query_jobs(query_sets), **text.worker_args()},
                progress=state.phases.progress)
            text.target_answers = result.data.get(TEXT_KEY)
            state.phases.child_peak(result.peak_rss_bytes)
        side = source_side.result()
    return _verify(state, query_sets=query_sets, target_nearest=result.data.get(NEAREST_KEY, {}), plans=plans,
                   text=text, side=side)


def _transplant(state: MigrationState) -> dict[str, Any]:
    """The target's chromadb creates the collections with the source's ids and configuration; the
    native writer fills them (each sound graph carried over, the others built with hnswlib) and
    the id maps are written in the target's form. Then, side by side: the target proves it reads
    and writes (a copy of) the result, and verification runs as for every strategy. Any failure of
    the writer or of its proof is a TransplantFailedError, on which `auto` rebuilds through chromadb."""
    from chroma_migrate.transplant.database_writer import write_database
    from chroma_migrate.transplant.id_maps import write_id_maps
    from chroma_migrate.transplant.proof import prove_transplant

    state.target_db.mkdir()
    plans, query_sets, text = _recall_queries(state)
    try:
        with state.phases.phase("transplant: write", total=_records(state)):
            specs = [target_collection_spec(state.info.collection(name), state.target) for name in state.names]
            create_target_collections(state.target.version, state.target_db, specs, state.info.databases)
            written, id_maps = write_database(Path(state.info.path), state.target_db, state.names, state.target,
                                              state.request.batch_size, progress=state.phases.progress)
            write_id_maps(state.target, id_maps)
            fault_point("transplant_written")
    except (TransplantFailedError, WorkerFailedError):
        raise
    except Exception as exc:  # the native writer's own failure: reported, and `auto` rebuilds instead
        raise TransplantFailedError(f"the native writer failed: {type(exc).__name__}: {exc}",
                                    "The migration falls back to a rebuild through chromadb.") from exc
    dimensions = {name: state.info.collection(name).dimension for name in state.names}
    with ThreadPoolExecutor(max_workers=1) as proving:  # the target's own read-back beside verification
        proof = proving.submit(prove_transplant, state.target.version, state.target_db, written, dimensions,
                               state.stage, state.request.batch_size)
        report = _verify(state, query_sets=query_sets, plans=plans, text=text)
        report["transplant"] = {"collections": [item.to_report() for item in written], "proof": proof.result()}
    return report


STRATEGY_STEPS = {Strategy.REBUILD: _rebuild, Strategy.TRANSPLANT: _transplant, Strategy.UPGRADE: _upgrade,
                  Strategy.NOOP: _upgrade}
