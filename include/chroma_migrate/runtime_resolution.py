"""Resolve a chromadb release that has no runtime file yet: pin it, build it, measure it, record it.

The six shipped runtime files are not a closed list. For any other release from 0.4.15 (the
first with tenants and databases) on, the first use compiles its requirements with hashes,
builds its runtime, asks that runtime for its facts (the migrations it applies, its batch
limit) and writes `chromadb-X.txt` beside the others: from then on it is one more supported
version, and the file can be committed so that production builds from the same pins.

A release that applies a migration the native reader was not built for (a newer format, or
a migration file whose SQL differs from the one every known version ships) is refused
naming that migration, and no file is written. Resolution runs under a file lock and ends
with a rename, so concurrent tasks resolve a version once and never read half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chroma_migrate import versions
from chroma_migrate.errors import MigrationError, UnsupportedVersionError, WorkerFailedError
from chroma_migrate.runtimes import (
    COMPLETE_MARKER,
    Runtime,
    build_lock,
    install_commands,
    runtimes_root,
    uv_executable,
)
from chroma_migrate.versions import ChromaVersion, get_version, known_migrations, version_key

OLDEST_RELEASE = "0.4.15"
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")

# Tried in order: a release is pinned with the first set whose runtime starts and reports its
# facts. 0.4.x breaks on numpy 2 (`np.float_`), and pyarrow 21+ needs numpy 2.
EXTRA_REQUIREMENT_SETS: tuple[tuple[str, ...], ...] = (("pyarrow",), ("pyarrow<21", "numpy<2"))

Log = Callable[[str], None]
logger = logging.getLogger(__name__)


def check_release(version: str) -> None:
    """Refuse, before any work, what cannot be a chromadb release this engine could serve."""
    if not _RELEASE.match(version):
        raise UnsupportedVersionError(
            f"{version!r} is not a chromadb release number.",
            f"Name a release as X.Y.Z, e.g. {versions.latest_version().version}.")
    if version_key(version) < version_key(OLDEST_RELEASE):
        raise UnsupportedVersionError(
            f"chromadb {version} is older than {OLDEST_RELEASE}, the first release with tenants and databases.",
            f"Move the database with chromadb {OLDEST_RELEASE} or newer; this engine reads and writes only those.")


def resolve_version(version: str, *, log: Log = logger.info) -> ChromaVersion:
    """The version's facts, resolving it on demand (pin, build, measure, record) the first time."""
    try:
        return get_version(version)
    except UnsupportedVersionError:
        check_release(version)
    folder = versions.resolved_files_dir()
    with _resolution_lock(folder, version):
        versions.forget_runtime_files()
        try:
            return get_version(version)  # another process resolved it while we waited
        except UnsupportedVersionError:
            pass
        log(f"resolving chromadb {version}: no runtime file yet; pinning, building and measuring it")
        _resolve(version, folder, log)
    versions.forget_runtime_files()
    return get_version(version)


@contextmanager
def _resolution_lock(folder: Path, version: str) -> Iterator[None]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f".resolve-chromadb-{version}.lock", "w")  # noqa: SIM115 (held for the block)
    except OSError as exc:
        raise MigrationError(
            f"Cannot write a runtime file for chromadb {version} in {folder}: {exc.strerror or exc}.",
            f"Set ${versions.RUNTIME_FILES_ENV} to a writable folder shared by the workers (e.g. on EFS), "
            "or commit the runtime file and rebuild the image.") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _resolve(version: str, folder: Path, log: Log) -> None:
    root = runtimes_root()
    root.mkdir(parents=True, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix=f"chroma-migrate-resolve-{version}-", dir=folder) as scratch:
        for extras in EXTRA_REQUIREMENT_SETS:
            pins = Path(scratch) / "pins.txt"
            _compile(version, extras, pins)
            staging = root / f".resolving-chromadb-{version}-{os.getpid()}"
            try:
                facts = _build_and_measure(version, pins, staging)
            except (WorkerFailedError, MigrationError) as exc:
                shutil.rmtree(staging, ignore_errors=True)
                failures.append(f"with {', '.join(extras)}: {exc.problem}")
                log(f"chromadb {version} did not start with {', '.join(extras)}; trying the next pins")
                continue
            _refuse_unknown_migrations(version, facts)
            text = runtime_file_text(version, facts, pins.read_text(), extras)
            final = folder / f"chromadb-{version}.txt"
            partial = Path(scratch) / final.name
            partial.write_text(text)
            _install_built_runtime(staging, root / f"chromadb-{version}", text)
            partial.rename(final)
            log(f"chromadb {version} resolved: {final}")
            return
    raise UnsupportedVersionError(
        f"chromadb {version} could not be installed and started on Python 3.11: {'; '.join(failures)}",
        "Check that the release exists on the package registry; or write its runtime file by hand "
        "(copy another one's header, then check it with the `facts` worker operation).")


def _compile(version: str, extras: tuple[str, ...], out: Path) -> None:
    """Fully pinned, with hashes, for the Python the runtimes run on."""
    uv = uv_executable()
    if uv is None:
        raise MigrationError(f"Resolving chromadb {version} needs uv, which is not installed.",
                             "Install the pinned uv (`make setup` does) or add the runtime file by hand.")
    wanted = "\n".join([f"chromadb=={version}", *extras]) + "\n"
    result = subprocess.run([uv, "pip", "compile", "--quiet", "--generate-hashes", "--python-version", "3.11",
                             "--no-header", "-o", str(out), "-"], input=wanted, capture_output=True, text=True)
    if result.returncode != 0:
        raise UnsupportedVersionError(
            f"chromadb {version}'s requirements cannot be resolved: {result.stderr.strip()[-1200:]}",
            "Check the release number (it must exist on the package registry) and that the registry is reachable.")


def _build_and_measure(version: str, pins: Path, staging: Path) -> dict[str, Any]:
    from chroma_migrate.worker_client import run_worker

    shutil.rmtree(staging, ignore_errors=True)
    for command in install_commands(staging, pins):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise MigrationError(f"installing failed: {result.stderr.strip()[-800:]}")
    provisional = ChromaVersion(version, pins, {}, 0, {})
    facts = run_worker(version, "facts", {"round_trip": True}, runtime=Runtime(provisional, staging),
                       timeout_s=300).data
    if facts["version"] != version:
        raise MigrationError(f"the runtime reports chromadb {facts['version']}")
    return facts


def _refuse_unknown_migrations(version: str, facts: dict[str, Any]) -> None:
    """Closed world: every migration the release applies must be one the native reader knows."""
    known = known_migrations()
    for directory, number, name, md5 in facts["migration_files"]:
        if directory not in versions.MIGRATION_DIRS:
            problem = f"applies migrations of a kind the native reader does not know ({directory} {name})"
        elif (directory, int(number)) not in known:
            problem = f"applies {directory} migration {number} ({name}), newer than any the native reader knows"
        elif known[(directory, int(number))] != (name, md5):
            problem = (f"ships {directory} migration {number} as {name} (md5 {md5}), unlike every known version "
                       f"({known[(directory, int(number))][0]}, md5 {known[(directory, int(number))][1]})")
        else:
            continue
        raise UnsupportedVersionError(
            f"chromadb {version} {problem}: its on-disk format is one this engine was not built for.",
            "Use a release whose format is known (up to the newest shipped runtime); support for a new format "
            "means teaching the native reader about it first (docs/FORMAT.md).")


def runtime_file_text(version: str, facts: dict[str, Any], pins: str, extras: tuple[str, ...]) -> str:
    """The same header the shipped files carry, then the compiled pins."""
    signature = " ".join(f"{d}={n}" for d, n in sorted(facts["signature"].items()))
    wanted = [f"chromadb=={version}", *extras]
    lines = [
        f"# chroma-migrate runtime for chromadb {version}: {versions.RESOLVED_MARK}, fully pinned with hashes.",
        "# The facts below were measured on an empty database written by this version's own runtime.",
        f"# migrations: {signature}",
        f"# max-batch-size: {facts['max_batch_size']}",
        *[f"# migration: {d} {n} {name} {md5}" for d, n, name, md5 in sorted(facts["migration_files"])],
        f"# compiled with: uv pip compile --generate-hashes --python-version 3.11 ({', '.join(wanted)})",
    ]
    return "\n".join(lines) + "\n" + pins


def _install_built_runtime(staging: Path, destination: Path, text: str) -> None:
    """The environment measured is the one kept, marked complete for the file just written; under
    the build lock, so a runtime another process built for the same pins is left as it is."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    marker = destination / COMPLETE_MARKER
    with build_lock(destination.parent, destination.name.removeprefix("chromadb-")):
        if marker.is_file() and marker.read_text().strip() == digest:
            shutil.rmtree(staging, ignore_errors=True)
            return
        (staging / COMPLETE_MARKER).write_text(digest + "\n")
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
