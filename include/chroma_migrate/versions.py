"""The supported chromadb versions and what each one writes, read from the runtime files.

Adding a version is adding `runtimes/chromadb-X.Y.Z.txt`: its header carries the facts the
engine needs without starting that version (its schema migrations, each by file name and md5,
and its batch limit; tests/engine/test_runtimes.py checks them against the version itself).
A release without a file is resolved on demand (runtime_resolution.py), which writes the file
into `$CHROMA_MIGRATE_RUNTIME_FILES` when set (a folder the workers share), else beside these.
Everything else the engine knows about a version is a capability derived from its schema
below; no code compares version strings.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from chroma_migrate.errors import UnsupportedVersionError

RUNTIME_FILES_DIR = Path(__file__).parent / "runtimes"
RUNTIME_FILES_ENV = "CHROMA_MIGRATE_RUNTIME_FILES"
MIGRATION_DIRS = ("sysdb", "metadb", "embeddings_queue")

_FILE_NAME = re.compile(r"^chromadb-(\d+\.\d+\.\d+)\.txt$")
_MIGRATIONS_LINE = re.compile(r"^# migrations: (.+)$", re.MULTILINE)
_BATCH_LINE = re.compile(r"^# max-batch-size: (\d+)$", re.MULTILINE)
RESOLVED_MARK = "resolved on demand"  # in the first line of a file runtime_resolution.py wrote
_MIGRATION_FILE_LINE = re.compile(r"^# migration: (\w+) (\d+) (\S+) ([0-9a-f]{32})$", re.MULTILINE)

Signature = dict[str, int]
MigrationFiles = dict[tuple[str, int], tuple[str, str]]  # (dir, version) -> (file name, md5 of its SQL)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class ChromaVersion:
    """One supported chromadb release and the facts measured on databases it writes."""

    version: str
    requirements: Path
    signature: Signature
    max_batch_size: int
    migration_files: MigrationFiles
    resolved_on_demand: bool = False  # not one of the shipped, tested files: never chosen as a reader

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    @property
    def supports_list_metadata(self) -> bool:
        """1.5+ store list values (metadb migration 6, `embedding_metadata_array`)."""
        return self.signature.get("metadb", 0) >= 6

    @property
    def is_rust_core(self) -> bool:
        """1.x (the Rust core, metadb migration 5's INTEGER watermarks) keeps collection settings in
        `configuration`; 0.x only in `hnsw:*` metadata."""
        return self.signature.get("metadb", 0) >= 5

    @property
    def stores_bool_collection_metadata(self) -> bool:
        """0.4's `collection_metadata` has no bool_value column (sysdb migration 6 adds it): a bool
        written there comes back as an int."""
        return self.signature.get("sysdb", 0) >= 6

    @property
    def stores_schema(self) -> bool:
        """1.3+ keep a collection's configuration in `collections.schema_str` (sysdb migration 10)."""
        return self.signature.get("sysdb", 0) >= 10

    @property
    def stores_embedding_function(self) -> bool:
        """Only 1.x configurations name an embedding function; 0.x stores none."""
        return self.is_rust_core

    @property
    def configurable_index_settings(self) -> frozenset[str]:
        """Index settings this version keeps in a collection's configuration (none before 1.x, where
        they live in `hnsw:*` metadata); measured on what each version stores."""
        if not self.is_rust_core:
            return frozenset()
        settings = {"space", "M", "construction_ef", "search_ef", "resize_factor", "sync_threshold"}
        return frozenset(settings | {"batch_size"} if self.stores_schema else settings)


def _parse_runtime_file(path: Path, version: str) -> ChromaVersion:
    text = path.read_text()
    migrations = _MIGRATIONS_LINE.search(text)
    batch = _BATCH_LINE.search(text)
    if not migrations or not batch:
        raise UnsupportedVersionError(
            f"Runtime file {path} lacks its '# migrations:' or '# max-batch-size:' header line.",
            "Copy the header of another runtime file and fill in the values measured for this version.",
        )
    signature = {}
    for pair in migrations.group(1).split():
        name, _, number = pair.partition("=")
        signature[name] = int(number)
    files = {(d, int(n)): (name, md5) for d, n, name, md5 in _MIGRATION_FILE_LINE.findall(text)}
    expected = {(d, n) for d, newest in signature.items() for n in range(1, newest + 1)}
    if set(files) != expected:
        raise UnsupportedVersionError(
            f"Runtime file {path} names migration files {sorted(files)}, but its '# migrations:' line says "
            f"{sorted(expected)}.",
            "List one '# migration: DIR N FILE MD5' line for each migration the version applies "
            "(the `facts` worker operation reports them).",
        )
    return ChromaVersion(version, path, signature, int(batch.group(1)), files, RESOLVED_MARK in text)


def resolved_files_dir() -> Path:
    """Where a version resolved on demand gets its runtime file."""
    return Path(os.environ.get(RUNTIME_FILES_ENV) or RUNTIME_FILES_DIR)


def runtime_file_dirs() -> list[Path]:
    """The shipped runtime files first, then the resolved ones (a shipped file wins)."""
    extra = resolved_files_dir()
    return [RUNTIME_FILES_DIR] + ([extra] if extra.resolve() != RUNTIME_FILES_DIR.resolve() else [])


@functools.cache
def supported_versions() -> tuple[ChromaVersion, ...]:
    found: dict[str, ChromaVersion] = {}
    for folder in runtime_file_dirs():
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            match = _FILE_NAME.match(path.name)
            if match and match.group(1) not in found:
                found[match.group(1)] = _parse_runtime_file(path, match.group(1))
    return tuple(sorted(found.values(), key=lambda v: v.key))


def forget_runtime_files() -> None:
    """Read the runtime files again on next use (a version was resolved meanwhile)."""
    supported_versions.cache_clear()
    known_migrations.cache_clear()


def shipped_versions() -> list[ChromaVersion]:
    """The versions whose files ship with the package and its tests: the ones that read sources
    and define the formats the native reader knows. Resolved versions are targets and readers."""
    return [v for v in supported_versions() if not v.resolved_on_demand]


@functools.cache
def known_migrations() -> MigrationFiles:
    """Every migration file a shipped version applies; one name and hash per (dir, version)."""
    known: MigrationFiles = {}
    for version in shipped_versions():
        for key, file in version.migration_files.items():
            if known.setdefault(key, file) != file:
                raise UnsupportedVersionError(
                    f"chromadb {version.version}'s runtime file names {key[0]} migration {key[1]} {file}, another "
                    f"supported version {known[key]}.", "Measure both again with the `facts` worker operation.")
    return known


def supported_range() -> str:
    """`oldest to newest` of the supported versions, for messages."""
    names = shipped_version_names()
    return f"{names[0]} to {names[-1]}"


def shipped_version_names() -> list[str]:
    return [v.version for v in shipped_versions()]


def supported_version_names() -> list[str]:
    return [v.version for v in supported_versions()]


def get_version(version: str) -> ChromaVersion:
    """A version with a runtime file; read the files again once first, since another process
    may have resolved the version after this one listed them."""
    for attempt in range(2):
        for candidate in supported_versions():
            if candidate.version == version:
                return candidate
        if attempt == 0:
            forget_runtime_files()
    raise UnsupportedVersionError(
        f"chromadb {version!r} is not a supported version.",
        f"Use one of {', '.join(supported_version_names())}, or any release from 0.4.15 on: "
        "the engine's entry points resolve one on demand (chroma_migrate.runtime_resolution).",
    )


def latest_version() -> ChromaVersion:
    """The newest shipped version: the default target."""
    return shipped_versions()[-1]


def versions_with_signature(signature: Signature) -> list[ChromaVersion]:
    """The shipped versions that write exactly this set of migrations (several can share one)."""
    return [v for v in shipped_versions() if v.signature == signature]


def newest_known_signature() -> Signature:
    """Per migration directory, the highest migration any shipped version applies."""
    newest: Signature = {}
    for version in shipped_versions():
        for name, number in version.signature.items():
            newest[name] = max(newest.get(name, 0), number)
    return newest
