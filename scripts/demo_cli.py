"""`make demo`: write a real chromadb 1.0.20 database, then inspect, probe and migrate it to 1.5.9.

Everything goes through the `chroma-migrate` CLI, exactly as a user would run it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
CLI = [sys.executable, "-m", "chroma_migrate"]


def run(*args: str, allow: tuple[int, ...] = (0,)) -> int:
    print(f"\n$ chroma-migrate {' '.join(args)}", flush=True)
    code = subprocess.run([*CLI, *args], cwd=REPO).returncode
    if code not in allow:
        raise SystemExit(f"demo step failed with exit code {code}")
    return code


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    source, out = DEMO / "snapshot-1.0.20", DEMO / "snapshot-1.5.9"
    run("fixture", "build", str(source), "--version", "1.0.20", "--records", "2000", "--dim", "64")
    run("inspect", str(source))
    run("probe", str(source), "--target", "1.5.9")
    run("migrate", str(source), str(out), "--target", "1.5.9", "--workers", "2")
    run("inspect", str(out))
    print("\nThe same data taken back to 0.6.3 (a downgrade is always a rebuild):")
    run("migrate", str(out), str(DEMO / "snapshot-0.6.3"), "--target", "0.6.3", "--batch-size", "1000")
    print(f"\nDemo databases are in {DEMO}")


if __name__ == "__main__":
    main()
