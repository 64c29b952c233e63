"""How S3 transfers use the link: several objects at once, each in parts, and S3 checksums to prove them.

A snapshot is a handful of large HNSW files plus many small ones; one object at a time leaves
the link idle while each small request waits for its answer. Objects run in a thread pool and
each large one in parts (a `TransferConfig` sized for the worker). Every upload and server-side
copy asks S3 for a SHA-256 checksum of what it stored (`ChecksumAlgorithm`), which the upload's
verification compares with the manifest's sha256: a single-part object's checksum is the file's
sha256 itself, a multipart one's the sha256 of its parts' digests ("composite"), computed here
from the local file with the part size the transfer used.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

MIB = 2**20
PART_BYTES = 64 * MIB  # multipart threshold and part size: few parts per HNSW file, bounded memory per stream
PARTS_AT_ONCE = 4  # parts in flight per object
OBJECTS_ENV = "CHROMA_MIGRATE_S3_OBJECTS"  # objects in flight (default: 2 per CPU, 4 to 16)
CHECKSUM = "SHA256"
# HTTP connections a client keeps: objects × parts in flight at most (botocore's default of 10 would
# make the pool drop and reopen connections under that load).
POOL_CONNECTIONS = 64

T = TypeVar("T")
R = TypeVar("R")


def objects_at_once() -> int:
    """Objects transferred at the same time on this worker: 2 per CPU (the work is waiting on the
    network, not computing), between 4 and 16, or $CHROMA_MIGRATE_S3_OBJECTS."""
    configured = os.environ.get(OBJECTS_ENV)
    if configured:
        return max(1, int(configured))
    return max(4, min(16, 2 * (os.cpu_count() or 1)))


def transfer_config(part_bytes: int = PART_BYTES) -> Any:
    """boto3's TransferConfig for one object: parts of `part_bytes` (also the multipart threshold),
    PARTS_AT_ONCE of them in flight.

    s3transfer streams parts from the file and bounds its download queue, so memory does not grow
    with the snapshot: 143 MiB peak for the download and 251 MiB for the publish of a 577 MiB
    snapshot in bench_million.py (4 objects × 4 parts in flight)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes,
                          max_concurrency=PARTS_AT_ONCE, use_threads=True)


def part_size_for(size: int, part_bytes: int = PART_BYTES) -> int:
    """The part size s3transfer uses for an object of `size` bytes (it grows parts past 10,000)."""
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(part_bytes, size)


def sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def expected_checksum(path: Path, sha256_hex: str, size: int, part_bytes: int = PART_BYTES) -> tuple[str, int]:
    """(base64 checksum, parts) S3 reports for this file uploaded or copied by `transfer_config(part_bytes)`:
    parts 1 is the full-object sha256 (from the manifest, no read); more is the composite over the
    parts' sha256 digests, which needs one read of the local file."""
    if size < part_bytes:
        return sha256_b64(sha256_hex), 1
    part = part_size_for(size, part_bytes)
    digests = hashlib.sha256()
    parts = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(part):
            digests.update(hashlib.sha256(chunk).digest())
            parts += 1
    return base64.b64encode(digests.digest()).decode("ascii"), parts


def checksum_matches(stored: str | None, expected: tuple[str, int]) -> bool:
    """S3 writes a composite checksum as `<base64>-<parts>`; some servers (moto) leave the suffix off."""
    if not stored:
        return False
    value, _, parts = stored.partition("-")
    return value == expected[0] and (not parts or int(parts) == expected[1])


def run_parallel(work: Callable[[T], R], items: Iterable[T], workers: int,
                 on_done: Callable[[int, T, R], None] | None = None) -> list[R]:
    """`work` over `items` on `workers` threads, at most 2 × workers queued (a listing of 100,000
    objects does not become 100,000 futures); `on_done(count, item, result)` runs in this thread as
    each finishes. The first failure stops the submission and is raised once running work ends."""
    results: list[R] = []
    count = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3-object") as pool:
        pending: dict[Future[R], T] = {}
        iterator: Iterator[T] = iter(items)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * workers:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(work, item)] = item
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                item = pending.pop(future)
                try:
                    result = future.result()
                except BaseException:
                    for other in pending:
                        other.cancel()
                    raise
                results.append(result)
                count += 1
                if on_done is not None:
                    on_done(count, item, result)
    return results


@dataclass
class TransferReport:
    """What one upload moved: bytes sent over the link versus bytes S3 copied inside itself."""

    uploaded_files: int = 0
    uploaded_bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    copied_from: str | None = None
    seconds: float = 0.0
    objects_at_once: int = 0

    def count(self, copied: bool, size: int) -> None:
        if copied:
            self.copied_files, self.copied_bytes = self.copied_files + 1, self.copied_bytes + size
        else:
            self.uploaded_files, self.uploaded_bytes = self.uploaded_files + 1, self.uploaded_bytes + size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        source = f" from {self.copied_from}" if self.copied_from else ""
        return (f"uploaded {self.uploaded_files} files ({self.uploaded_bytes / MIB:,.1f} MiB), copied "
                f"{self.copied_files} unchanged files inside S3{source} ({self.copied_bytes / MIB:,.1f} MiB) "
                f"in {self.seconds:.2f} s, {self.objects_at_once} objects at once")
