"""Snapshots on S3 as CLI sources: an `s3://` version prefix, or an environment's live pointer.

The engineer's own workflow starts on a laptop against the real snapshots: the CLI resolves
them with the same configuration file, key layout and manifest check as the DAG, with the
credentials and endpoint of the standard AWS chain (environment, profile, `AWS_ENDPOINT_URL`
for a local server). Downloads land in a cache keyed by bucket and version prefix and are
checked against the manifest every time they are used, so a second probe of the same version
downloads nothing and a changed or damaged cache is never trusted. Uploading a result writes
a new version prefix (manifest last); it never moves a pointer: publishing stays with the DAG,
under the lock and the approval.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chroma_migrate.configuration import load_config
from chroma_migrate.errors import MigrationError
from chroma_migrate.native import check_integrity
from chroma_migrate.progress import PhaseDisplay
from chroma_migrate.snapshots.layout import SnapshotLayout, new_version_id, validate_version_id
from chroma_migrate.snapshots.manifest import check_directory, read_manifest_file
from chroma_migrate.snapshots.s3_store import STANDARD_RETRIES, S3SnapshotStore
from chroma_migrate.snapshots.transfers import POOL_CONNECTIONS

CACHE_ENV = "CHROMA_MIGRATE_CACHE"
S3_SCHEME = "s3://"
_NO_EFS = Path("/nonexistent-efs")  # the CLI never touches a working copy on EFS


@dataclass(frozen=True)
class RemoteSnapshot:
    """One version of a snapshot on S3 and the store that reads its prefix."""

    store: S3SnapshotStore
    version_id: str

    @property
    def prefix(self) -> str:
        return self.store.layout.version_prefix(self.version_id)

    @property
    def url(self) -> str:
        return self.store.url(self.prefix)


def is_s3_url(text: str | os.PathLike | None) -> bool:
    return isinstance(text, str) and text.startswith(S3_SCHEME)


def s3_client() -> Any:
    """The standard AWS chain, standard-mode retries; `AWS_ENDPOINT_URL` points it at a local server."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(retries=dict(STANDARD_RETRIES),
                                                              max_pool_connections=POOL_CONNECTIONS))


def snapshot_at(url: str, client: Any) -> RemoteSnapshot:
    """`s3://bucket/.../<version_id>/`: the version prefix itself (its last segment is the version id)."""
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    parts = [part for part in key.split("/") if part]
    if not bucket or not parts or not key.endswith("/"):
        raise MigrationError(f"{url!r} is not a snapshot version prefix.",
                             "Pass s3://BUCKET/<collection>/snapshot/timestamped/<version_id>/ (with the final "
                             "slash), or --env ENV --collection NAME for the live snapshot.")
    version_id = _version_id(parts[-1], url)
    parent = "/".join(parts[:-1])
    layout = SnapshotLayout(bucket=bucket, collection=_collection_of(parts), efs_root=_NO_EFS,
                            prefix_template=(parent + "/" if parent else "") + "{version_id}/")
    return RemoteSnapshot(S3SnapshotStore(client, layout), version_id)


def _version_id(segment: str, url: str) -> str:
    try:
        return validate_version_id(segment)
    except MigrationError as exc:
        raise MigrationError(f"{url!r} does not end in a version id: {exc.problem}",
                             "Name a version prefix (its last segment is a version id such as "
                             "20260101_000000), not its parent.") from exc


def _collection_of(parts: list[str]) -> str:
    """The compactor's layout starts with the collection; any other layout gets a neutral name."""
    return parts[0] if len(parts) > 1 else "snapshot"


def live_snapshot(env: str, collection: str, client: Any, config_path: Path | None = None) -> RemoteSnapshot:
    """The version an environment's live pointer names, found as the DAG finds it."""
    config = load_config(config_path)
    if collection not in config.collections:
        raise MigrationError(f"Collection {collection!r} is not in {config.path}.",
                             f"Use one of {', '.join(config.collections)}.")
    store = S3SnapshotStore(client, config.environment(env).layout(collection))
    return RemoteSnapshot(store, store.read_pointer())


def cache_root() -> Path:
    """`$CHROMA_MIGRATE_CACHE`, else ~/.cache/chroma-migrate."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "chroma-migrate") / "snapshots"


def cached_copy(snapshot: RemoteSnapshot, log: Any = print, display: PhaseDisplay | None = None) -> Path:
    """The version's database, downloaded once into the cache and checked on every use; `display`
    (the CLI's bars on a terminal) shows the download's bytes."""
    key = hashlib.sha256(f"{snapshot.store.bucket}/{snapshot.prefix}".encode()).hexdigest()[:12]
    folder = cache_root() / snapshot.store.bucket / f"{snapshot.version_id}-{key}"
    database = folder / "db"
    if database.is_dir() and _still_matches(snapshot, database):
        log(f"using the cached copy of {snapshot.url} ({database})")
        return database
    partial = folder / "db.downloading"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(database, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"downloading {snapshot.url} to {database}")
    if display is not None:
        display.start("download", sum(snapshot.store.list_objects(snapshot.prefix).values()), "bytes")
    try:
        snapshot.store.download(snapshot.version_id, partial,  # checks every file against the manifest
                                progress=display.advance if display is not None else None)
    finally:
        if display is not None:
            display.finish()
    check_integrity(partial)
    partial.rename(database)
    return database


def _still_matches(snapshot: RemoteSnapshot, database: Path) -> bool:
    """The cached files are exactly what the version's manifest on S3 names, byte for byte."""
    remote = snapshot.store.read_manifest(snapshot.prefix)
    local = read_manifest_file(database)
    if remote is None or local is None or remote != local:
        return False
    return not check_directory(database, remote)


def local_source(text: str | None, *, env: str | None, collection: str | None, client_factory: Any = s3_client,
                 config_path: Path | None = None, log: Any = print,
                 display: PhaseDisplay | None = None) -> tuple[Path, RemoteSnapshot | None]:
    """A CLI source as a local database folder: a path as given, an `s3://` prefix or the live
    snapshot of `--env/--collection`, downloaded into the cache; and the snapshot it came from."""
    if env or collection:
        if not (env and collection) or text:
            raise MigrationError("--env and --collection go together, and replace PATH.",
                                 "Pass either PATH (a folder or s3://...) or both --env ENV and --collection NAME.")
        snapshot = live_snapshot(env, collection, client_factory(), config_path)
        return cached_copy(snapshot, log, display), snapshot
    if text is None:
        raise MigrationError("No source given.", "Pass PATH (a folder or s3://...), or --env ENV --collection NAME.")
    if is_s3_url(text):
        snapshot = snapshot_at(text, client_factory())
        return cached_copy(snapshot, log, display), snapshot
    return Path(text), None


def upload_result(out: Path, source: RemoteSnapshot, extra: dict[str, Any]) -> str:
    """A new version prefix beside the source's (same layout), manifest last; no pointer moves.
    Files byte-identical to the source version's are copied inside S3, not uploaded again."""
    store = source.store
    version_id = new_version_id(datetime.now(UTC), store.version_in_use)
    store.upload(out, version_id, {"migrated_from": source.version_id, "uploaded_by": "chroma-migrate CLI",
                                   **extra}, previous=source.version_id)
    return store.url(store.layout.version_prefix(version_id))
