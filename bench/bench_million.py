"""The million-record benchmark (issue 16): 1,000,000 × 384 written by chromadb 1.0.20's own add().

Outside CI (`make bench-million`): the source takes about an hour to write through chromadb and
is cached under .cache/bench/ (the same cache and spec as bench_migrate.py, so
`bench_migrate.py --records 1000000 --source-version 1.0.20` reuses it). In one run, each step in
a child process of its own (peak RSS is that process tree's):

1. plain copy, and copy + the target opening the copy once: the floor no upgrade can beat;
2. the engine's verified `upgrade` (and `--strategies upgrade,transplant` for the transplant),
   with the plan's estimate against what was measured;
3. the DAG's transfers against a local moto server (not AWS: the figures show what the code does,
   the link is loopback): the compactor's full upload of the source, resolve_source's download,
   publish's upload of the upgraded database with unchanged files copied inside S3, the EFS copy,
   and for comparison the old publish (upload_file per file, one at a time).

Targets, as ratios in one run: the verified upgrade within 2× the copy-plus-open floor; its peak RSS
no more than the target's own open of the collection plus a batch. Results go to
bench/results/million-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_migrate import (
    BENCH_DIR,
    CACHE_DIR,
    COLLECTION,
    MIB,
    REPO_ROOT,
    RESULTS_DIR,
    measure_copy,
    measure_engine,
    measure_unavoidable,
    measurement,
    observed,
    run_child,
    runtime_env,
    source_database,
    tree_bytes,
    warm_page_cache,
)

from chroma_migrate.runtimes import ensure_runtime
from chroma_migrate_testkit.standins import MotoServer

UPGRADE_FLOOR_TARGET = 2.0  # verified upgrade within 2× copy + open once
SOURCE_VERSION, NEW_VERSION, NAIVE_VERSION = "20260101_000000", "20260102_000000", "20260103_000000"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--source-version", default="1.0.20")
    parser.add_argument("--target-version", default="1.5.9")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategies", default="upgrade", help="engine strategies to run, comma-separated "
                                                                "(upgrade, transplant, rebuild; rebuild takes ~1 h)")
    parser.add_argument("--skip-transfers", action="store_true", help="no S3/EFS transfer steps")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch (default .cache/bench/work)")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    return args


def upgraded_copy(source: Path, work: Path, args: argparse.Namespace) -> Path:
    """What the DAG publishes after an upgrade: a copy the target opened (and so migrated)."""
    copy, answer = work / "upgraded", work / "upgraded-open.json"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".complete"))
    child = run_child([str(ensure_runtime(args.target_version).python), str(BENCH_DIR / "open_once.py"), str(copy),
                       str(answer)], answer, runtime_env())
    if not child.ok:
        raise SystemExit(f"chromadb {args.target_version} could not open the copy: {child.exit}")
    return copy


def measure_transfers(source: Path, upgraded: Path, work: Path, records: int) -> dict[str, Any]:
    """The DAG's S3 and EFS steps, each a child process, against one moto server."""
    steps: dict[str, Any] = {}
    with MotoServer(work / "moto.log") as moto:
        request = {"endpoint": moto.endpoint, "bucket": "bench-million", "efs_root": str(work / "efs"),
                   "source": str(source), "target": str(upgraded), "staging": str(work / "staging"),
                   "source_version": SOURCE_VERSION, "new_version": NEW_VERSION, "naive_version": NAIVE_VERSION}
        request_path = work / "transfer-request.json"
        request_path.write_text(json.dumps(request))
        for step in ("seed", "download", "publish", "efs", "naive"):
            print(f"  {step} ...", flush=True)
            answer = work / f"transfer-{step}.json"
            child = run_child([sys.executable, str(BENCH_DIR / "transfer_run.py"), step, str(request_path),
                               str(answer)], answer, dict(os.environ, PYTHONUNBUFFERED="1"))
            inside = child.answer or {}
            seconds = inside.get("seconds")
            moved = (inside.get("uploaded_bytes") or 0) + (inside.get("copied_bytes") or 0) + (
                inside.get("bytes") or 0) + (inside.get("from_staging_bytes") or 0) + (
                inside.get("from_previous_bytes") or 0)
            steps[step] = measurement(step, seconds, records, child.peak_rss_bytes, child.cpu_seconds, child.ok,
                                      process_seconds=round(child.seconds, 2), exit=child.exit, inside=inside,
                                      mib_per_second=round(moved / MIB / seconds, 1) if seconds else None)
            if not child.ok:
                break
    shutil.rmtree(work / "staging", ignore_errors=True)
    shutil.rmtree(work / "efs", ignore_errors=True)
    return steps


def evaluate(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    floor, upgrade = results.get("unavoidable"), results.get("upgrade")
    rows: list[dict[str, Any]] = []
    if floor and upgrade and floor["ok"] and upgrade["ok"]:
        ratio = upgrade["wall_seconds"] / floor["wall_seconds"]
        rows.append({"target": "verified upgrade ÷ (copy + open once)", "value": round(ratio, 2),
                     "goal": f"≤ {UPGRADE_FLOOR_TARGET}×", "verdict": "MET" if ratio <= UPGRADE_FLOOR_TARGET
                     else "NOT MET"})
        open_peak = floor["steps"]["open"]["peak_rss_bytes"]
        batch = args.batch_size * args.dim * 4 * 2  # one batch of vectors from each side
        over = upgrade["peak_rss_bytes"] - open_peak
        rows.append({"target": "upgrade peak RSS − target's own open peak", "value": round(over / MIB),
                     "goal": f"≤ a batch ({batch / MIB:.0f} MiB)", "verdict": "MET" if over <= batch else "NOT MET"})
        rows.append({"target": "upgrade verified", "value": upgrade.get("verified"), "goal": "passes",
                     "verdict": "MET" if upgrade.get("verified") else "NOT MET"})
        if upgrade.get("estimated_seconds"):
            rows.append({"target": "upgrade measured ÷ plan's estimate",
                         "value": round(upgrade["wall_seconds"] / upgrade["estimated_seconds"], 2),
                         "goal": "0.5–2×", "verdict": "MET" if 0.5 <= upgrade["wall_seconds"] /
                         upgrade["estimated_seconds"] <= 2 else "NOT MET"})
    transfers = results.get("transfers") or {}
    publish, naive = transfers.get("publish"), transfers.get("naive")
    if publish and naive and publish["ok"] and naive["ok"]:
        rows.append({"target": "publish (changed files) ÷ old publish (all, one by one)",
                     "value": round(publish["wall_seconds"] / naive["wall_seconds"], 2), "goal": "(info)",
                     "verdict": "-"})
    return rows


def print_results(results: dict[str, Any], targets: list[dict[str, Any]], records: int) -> None:
    print(f"\n{'measurement':<40}{'wall s':>9}{'records/s':>12}{'MiB/s':>9}{'peak RSS':>11}  status")
    rows = [(key, m) for key, m in results.items() if key != "transfers"]
    rows += [(f"transfer: {key}", m) for key, m in (results.get("transfers") or {}).items()]
    for key, m in rows:
        nested = [(key, m), *((f"  {name}", step) for name, step in (m.get("steps") or {}).items())]
        for label, row in nested:
            wall = row.get("wall_seconds")
            rate = row.get("records_per_second")
            mibs = row.get("mib_per_second")
            peak = row.get("peak_rss_bytes")
            status = "ok" if row["ok"] else f"FAILED {row.get('error') or row.get('exit') or ''}"
            if row.get("verified") is False:
                status = f"NOT VERIFIED: {row.get('error')}"
            print(f"{label:<40}{wall or 0:>9.2f}{rate or 0:>12,.0f}{mibs or 0:>9.1f}"
                  f"{(peak or 0) / MIB:>8,.0f} MiB  {status}")
    for key, m in (results.get("transfers") or {}).items():
        inside = m.get("inside") or {}
        if "copied_bytes" in inside or "from_previous_bytes" in inside:
            print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in inside.items() if k not in ("ok",)))
    print(f"\n{'summary':<52}{'value':>10}  {'target':<22}verdict")
    for row in targets:
        print(f"{row['target']:<52}{row['value']!s:>10}  {row['goal']:<22}{row['verdict']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for version in (args.source_version, args.target_version):
        ensure_runtime(version)
    source, facts = source_database(args)  # bench_migrate's: cached, built through chromadb's add() once
    records = facts["records"]
    print(f"  {source} ({facts['bytes'] / MIB:,.0f} MiB)", flush=True)
    base = (args.work_dir or CACHE_DIR / "work").resolve()
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"million-{stamp}-", dir=base))
    results: dict[str, Any] = {}
    try:
        warm_page_cache(source)
        print("plain copy ...", flush=True)
        observed("plain_copy", results, measure_copy, source, work, records)
        shutil.rmtree(results["plain_copy"].pop("path"), ignore_errors=True)
        print(f"copy + chromadb {args.target_version} opening the copy once ...", flush=True)
        observed("unavoidable", results, measure_unavoidable, source, work, args, records)
        for strategy in args.strategies:
            print(f"engine {strategy} (verified) ...", flush=True)
            observed(strategy, results, measure_engine, strategy, source, work, args, records)
        if not args.skip_transfers:
            print("the DAG's transfers (moto server on loopback) ...", flush=True)
            upgraded = upgraded_copy(source, work, args)
            results["transfers"] = measure_transfers(source, upgraded, work, records)
            results["transfers"]["upgraded_bytes"] = tree_bytes(upgraded)  # type: ignore[assignment]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if isinstance((results.get("transfers") or {}).get("upgraded_bytes"), int):
        facts["upgraded_bytes"] = results["transfers"].pop("upgraded_bytes")
    targets = evaluate(results, args)
    print_results(results, targets, records)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"million-{stamp}.json"
    for strategy in args.strategies:  # keep the file readable: the per-call worker log stays out
        (results.get(strategy) or {}).pop("worker_calls", None)
    out.write_text(json.dumps({
        "timestamp": stamp, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_average": os.getloadavg()},
        "source": facts, "collection": COLLECTION, "results": results, "targets": targets,
    }, indent=2, default=str))
    print(f"\nresults written to {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
