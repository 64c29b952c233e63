"""Helpers for the full-text tests: exchange batches of a real database, read with the native reader."""

from __future__ import annotations

from pathlib import Path

from chroma_migrate import exchange
from chroma_migrate.native import open_database


def export_batches(db: Path, collection: str, out_dir: Path, batch_size: int = 150) -> list[Path]:
    """Every record of `collection` as exchange files of about `batch_size` records, cut by id."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with open_database(db) as native:
        handle = native.collection(collection)
        bounds: list[str | None] = [None, *handle.boundaries(batch_size), None]
        for index in range(len(bounds) - 1):
            path = out_dir / f"batch-{index:05d}.parquet"
            exchange.write_batch(handle.read_range(bounds[index], bounds[index + 1]), path)
            files.append(path)
    return files
