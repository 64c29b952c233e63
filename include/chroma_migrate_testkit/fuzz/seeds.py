"""The undamaged databases a campaign starts from: real ones, one per supported version.

They are the suite's own fixtures (`receipt_spec()`, written by each version's chromadb and
cached under .cache/fixtures), so CI builds nothing extra for the fuzz tests. The spec flushes
several times with upserts, deletes and re-adds, keeps a tail in the write log, has cosine, l2
and ip indexes, 1536 dimensions, a log-only and an empty collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chroma_migrate_testkit.fixtures import cached_database, receipt_spec

SEED_VERSIONS = ("0.4.24", "0.5.23", "0.6.3", "1.0.20", "1.3.7", "1.5.9")


def fuzz_spec() -> dict[str, Any]:
    return receipt_spec()


def seed_database(cache_dir: Path, version: str) -> Path:
    """The cached seed of `version` (built once with that version's chromadb); copy it before damaging it."""
    return cached_database(cache_dir, version, fuzz_spec())
