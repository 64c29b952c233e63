"""How long the index-health check takes and how much memory it adds, per collection of a database.

Usage: .venv/bin/python -m tests.native.hnsw_health_speed DB [DB ...] [--repeat N]

The reader is opened first (its own pass over data_level0.bin is timed apart, as "open"),
then the check runs N times; the best and median wall times are printed, with the peak
memory the check added on top of the open reader (Linux: VmHWM reset through clear_refs).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

from chroma_migrate.native import open_database
from chroma_migrate.native.hnsw_health import check_index_health

STATUS = Path("/proc/self/status")


def _kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("databases", nargs="+")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for db in args.databases:
        with open_database(db) as native:
            for collection in native.collections():
                started = time.perf_counter()
                segment = collection.vectors
                opened = time.perf_counter() - started
                if segment.files is None or not segment.files.count:
                    continue
                before = _kib("VmRSS")
                _reset_peak()
                seconds = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    health = check_index_health(collection, collection.name)
                    seconds.append(time.perf_counter() - started)
                added = max(0, _kib("VmHWM") - before)
                header = segment.files.header
                print(f"{Path(db).name} {collection.name}: {health.elements:,} elements × {header.dimension} dims "
                      f"({health.elements * header.element_size / 2**20:,.0f} MiB data_level0), {health.links:,} "
                      f"level-0 links, passed={health.passed}, unreachable={health.unreachable}; reader open "
                      f"{opened:.3f} s, check best {min(seconds):.3f} s / median {statistics.median(seconds):.3f} s "
                      f"({health.elements / min(seconds):,.0f} elements/s), peak memory added {added / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
