"""Benchmark the transplant (issue 14) against the rebuild and the copy-plus-open floor.

In one run, on generated collections (default 50,000 records × 384 dims, cosine) written by the
real chromadb versions and cached under .cache/bench/, each case is measured three ways:

1. floor       copying the source's files plus the target version opening a database of the same
               records in its own format once (the transplant's result: an older version cannot
               open the newer source at all, and 1.x's open of the 0.4 source panics);
2. transplant  chroma_migrate.migrate.migrate(strategy="transplant"), verification included;
3. rebuild     the same with strategy="rebuild" (chromadb's own add() of every record).

Cases (`--cases`): the downgrades 1.5.9 → 1.0.20 and 1.5.9 → 0.6.3, and 0.4.24 → 1.5.9 of a
database whose write log holds records without a document, which 1.x's upgrade cannot replay.
Apart from the cases, the native index build (hnswlib's parallel add_items, what the transplant
uses for a graph it cannot carry; native_build.py) is timed against the target's raw add().

Targets, as ratios in one run: the transplant within 3× the floor; the native build at least 3×
the raw add() throughput; the transplant's peak RSS stated with the batch size. Each engine run is
a child process of its own, so every peak RSS is that run's. Results go to
bench/results/transplant-<timestamp>.json. `make bench-transplant BENCH_ARGS="--records 200000"`.
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
    RESULTS_DIR,
    measure_engine,
    measure_raw_add,
    measure_unavoidable,
    measurement,
    run_child,
    warm_page_cache,
)

from chroma_migrate.inspection import describe_database
from chroma_migrate_testkit.fixtures import cached_database

FLOOR_TARGET = 3.0  # transplant, verified, within 3× copy + open once
BUILD_VS_RAW_TARGET = 3.0  # native build at least 3× the target's raw add() throughput
DEFAULT_CASES = "1.5.9:1.0.20,1.5.9:0.6.3,0.4.24:1.5.9"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per collection (default 50000)")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimension (default 384)")
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"SOURCE:TARGET pairs (default {DEFAULT_CASES})")
    parser.add_argument("--batch-size", type=int, default=5000, help="engine batch size (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="rebuild export workers (default 2)")
    parser.add_argument("--skip-rebuild", action="store_true", help="do not run the chromadb rebuilds")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    return parser.parse_args(argv)


def fixture_spec(records: int, dim: int, source_version: str) -> dict[str, Any]:
    """Bulk adds, cosine. A 0.x source also gets records without a document and keeps them in its
    never-purged write log (0.4), which 1.x's upgrade panics on: only a rebuild or a transplant moves it."""
    collection: dict[str, Any] = {"name": COLLECTION, "kind": "word", "dim": dim, "records": records,
                                  "history": False, "tail": 0, "metadata": {"hnsw:space": "cosine"}}
    if source_version.startswith("0."):
        collection["missing_documents"] = True
    return {"seed": 0, "collections": [collection]}


def source_database(version: str, args: argparse.Namespace) -> Path:
    print(f"source: {args.records:,} × {args.dim} written by chromadb {version} (cached after the first run) ...",
          flush=True)
    path = cached_database(CACHE_DIR, version, fixture_spec(args.records, args.dim, version))
    if describe_database(path).collection(COLLECTION).records != args.records:
        raise SystemExit(f"{path} does not hold {args.records} records; delete it")
    return path


def measure_native_build(source: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    answer = work / "native-build.json"
    child = run_child([sys.executable, str(BENCH_DIR / "native_build.py"), str(source), str(work / "native-build"),
                       str(answer), "--batch-size", str(args.batch_size)], answer,
                      dict(os.environ, PYTHONUNBUFFERED="1"))
    inside = child.answer or {}
    return measurement("native build", inside.get("add_seconds"), args.records, child.peak_rss_bytes,
                       child.cpu_seconds, child.ok and bool(inside), inside=inside)


def measure_floor(source: Path, result: Path, work: Path, args: argparse.Namespace, records: int) -> dict[str, Any]:
    """Copy the source's files, then the target opens (a copy of) the result once."""
    started = time.perf_counter()
    copy = work / "floor-copy"
    shutil.copytree(source, copy)
    copied = time.perf_counter() - started
    shutil.rmtree(copy)
    opened = measure_unavoidable(result, work, args, records)
    shutil.rmtree(result, ignore_errors=True)
    opening = opened["steps"]["open"]
    return measurement("copy + open once", copied + opening["wall_seconds"], records, opening["peak_rss_bytes"],
                       opening["cpu_seconds"], opened["ok"], copy_seconds=copied, open=opening)


def run_case(source_version: str, target_version: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    source = source_database(source_version, args)
    warm_page_cache(source)
    case_args = argparse.Namespace(**{**vars(args), "target_version": target_version})
    case_work = work / f"{source_version}-to-{target_version}"
    case_work.mkdir(parents=True, exist_ok=True)
    found = {"transplant": measure_engine("transplant", source, case_work, case_args, args.records, keep_out=True)}
    found["floor"] = measure_floor(source, case_work / "transplant-out", case_work, case_args, args.records)
    if not args.skip_rebuild:
        found["rebuild"] = measure_engine("rebuild", source, case_work, case_args, args.records)
    transplant = found["transplant"]
    graphs = [(c["name"], c["graph"]) for c in ((transplant.get("verification") or {}).get("transplant") or {})
              .get("collections", [])]
    ratio = _ratio(transplant["wall_seconds"], found["floor"]["wall_seconds"])
    print(f"  {source_version} → {target_version}: floor {found['floor']['wall_seconds']:.1f} s, transplant "
          f"{transplant['wall_seconds']:.1f} s ({ratio:.2f}× the floor; graphs {graphs}; verified "
          f"{transplant.get('verified')}; peak {transplant['peak_rss_bytes'] / MIB:.0f} MiB)"
          + (f", rebuild {found['rebuild']['wall_seconds']:.1f} s" if "rebuild" in found else ""), flush=True)
    return {"case": f"{source_version}→{target_version}", "measurements": found, "transplant_over_floor": ratio,
            "graphs": graphs,
            "rebuild_over_transplant": _ratio(found.get("rebuild", {}).get("wall_seconds"), transplant["wall_seconds"])}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [tuple(pair.split(":")) for pair in args.cases.split(",")]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="chroma-bench-transplant-"))
    work.mkdir(parents=True, exist_ok=True)
    results = [run_case(source, target, work, args) for source, target in cases]
    build_source = source_database(cases[0][0], args)
    build = measure_native_build(build_source, work, args)
    raw = measure_raw_add(work, argparse.Namespace(**{**vars(args), "target_version": cases[0][1]}), args.records)
    build_ratio = _ratio(build.get("records_per_second"), raw.get("records_per_second"))
    targets = [{"target": f"transplant within {FLOOR_TARGET}× copy + open ({r['case']})",
                "value": r["transplant_over_floor"],
                "met": r["transplant_over_floor"] is not None and r["transplant_over_floor"] <= FLOOR_TARGET
                and bool(r["measurements"]["transplant"].get("verified"))} for r in results]
    targets.append({"target": f"native build at least {BUILD_VS_RAW_TARGET}× raw add() records/s",
                    "value": build_ratio, "met": build_ratio is not None and build_ratio >= BUILD_VS_RAW_TARGET})
    print(f"native build {build.get('records_per_second') or 0:,.0f} records/s, raw add "
          f"{raw.get('records_per_second') or 0:,.0f} records/s ({(build_ratio or 0):.1f}×)")
    for target in targets:
        value = f"{target['value']:.2f}" if target["value"] is not None else "n/a"
        print(f"  {'met ' if target['met'] else 'MISSED'} {target['target']}: {value}")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"transplant-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"records": args.records, "dim": args.dim, "batch_size": args.batch_size,
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "cases": results, "native_build": build, "raw_add": raw, "targets": targets},
                              indent=2, default=str))
    print(f"results: {out}")
    return 0 if all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
