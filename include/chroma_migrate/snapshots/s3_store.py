"""The master copy of a collection's snapshots in S3: versions, manifests, backups and the pointer.

A version is complete only when its `manifest.json` exists; it is uploaded last, so readers and
reruns can tell a finished upload from an interrupted one. Takes a boto3 S3 client so the same
code runs against AWS, a moto server, or an Airflow hook's client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chroma_migrate.faults import fault_point
from chroma_migrate.snapshots.errors import (
    InvalidVersionIdError,
    PointerChangedError,
    PointerMissingError,
    SnapshotError,
    SnapshotIntegrityError,
    VersionExistsError,
    VersionMissingError,
)
from chroma_migrate.snapshots.layout import SnapshotLayout, validate_version_id
from chroma_migrate.snapshots.manifest import (
    MANIFEST_NAME,
    build_manifest,
    file_problems,
    hash_stream,
    manifest_bytes,
    parse_manifest,
    safe_relative_path,
)
from chroma_migrate.snapshots.transfers import (
    CHECKSUM,
    PART_BYTES,
    TransferReport,
    checksum_matches,
    expected_checksum,
    objects_at_once,
    run_parallel,
    transfer_config,
)

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION_CODES = {"PreconditionFailed", "412"}


# Standard-mode retries (backoff with jitter, throttling and 5xx retried), 8 attempts in all:
# botocore's legacy default gives S3 5 attempts, which S3 SlowDown storms outlast.
STANDARD_RETRIES = {"mode": "standard", "total_max_attempts": 8}

def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3SnapshotStore:
    """Reads and writes one collection's snapshots under the layout's keys in one bucket."""

    def __init__(self, client: Any, layout: SnapshotLayout, *, page_size: int = 1000,
                 workers: int | None = None, part_bytes: int = PART_BYTES) -> None:
        self.client = client
        self.layout = layout
        self.page_size = page_size
        self.workers = workers or objects_at_once()  # objects in flight (transfers.py)
        self.part_bytes = part_bytes
        self.transfer = transfer_config(part_bytes)

    @property
    def bucket(self) -> str:
        return self.layout.bucket

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- listing and small objects -------------------------------------------------------------

    def list_objects(self, prefix: str) -> dict[str, int]:
        """Every key below `prefix` with its size (paginated: snapshots can hold >1000 objects)."""
        paginator = self.client.get_paginator("list_objects_v2")
        found: dict[str, int] = {}
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size})
        for page in pages:
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def prefix_in_use(self, prefix: str) -> bool:
        """Whether any object (even a leftover of an interrupted upload) exists below `prefix`."""
        response = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(response.get("Contents"))

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _MISSING_CODES:
                return None
            raise
        with response["Body"] as body:
            return body.read()

    def _hash_object(self, key: str) -> tuple[str, int]:
        """sha256 and size of the stored bytes, streamed (proves what S3 holds, not what we sent)."""
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        with response["Body"] as body:
            return hash_stream(body)

    def _object_exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _MISSING_CODES:
                return False
            raise
        return True

    def _relative_files(self, prefix: str, keys: dict[str, int]) -> dict[str, int]:
        """Snapshot files of a listing by relative path, without the manifest and folder markers."""
        files = {}
        for key, size in keys.items():
            relative = key[len(prefix):]
            if not relative or relative.endswith("/") or relative == MANIFEST_NAME:
                continue
            safe_relative_path(relative, self.url(key))
            files[relative] = size
        return files

    def remove_objects(self, prefix: str) -> int:
        """Delete every object below `prefix` (1,000 keys a request); how many there were."""
        keys = list(self.list_objects(prefix))
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})
        return len(keys)

    def put_file(self, local: Path, key: str) -> str:
        """Upload one file (a report) under `key`; its s3:// url."""
        self.client.upload_file(str(local), self.bucket, key)
        return self.url(key)

    # -- pointer ---------------------------------------------------------------------------------

    def read_pointer(self) -> str:
        """The live version id (the pointer body, surrounding whitespace ignored)."""
        return self.read_pointer_and_etag()[0]

    def read_pointer_and_etag(self) -> tuple[str, str]:
        """The live version id and the pointer object's ETag, for a conditional write over exactly it."""
        key = self.layout.pointer_key()
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) not in _MISSING_CODES:
                raise
            response = None
        if response is None:
            raise PointerMissingError(
                f"No snapshot pointer at {self.url(key)}.",
                "Check the bucket and collection name; a collection that was never published has no live "
                "version to migrate.",
            )
        with response["Body"] as body:
            text = body.read().decode("utf-8", errors="replace").strip()
        try:
            return validate_version_id(text), response["ETag"]
        except InvalidVersionIdError as error:
            raise InvalidVersionIdError(
                f"The pointer {self.url(key)} does not hold a version id: {error.problem}",
                "Fix the pointer body by hand (it must be exactly one existing version id) and rerun.",
            ) from None

    def write_pointer(self, version_id: str, *, expected: str | None = None, allow_legacy: bool = False,
                      guard: Callable[[], None] | None = None) -> None:
        """Make `version_id` live: the body is the version id only, as the compactor writes it.

        Refuses a version that is not complete (no manifest) unless `allow_legacy` (a rollback to a
        snapshot written before manifests existed, which must at least have objects). With
        `expected`, the pointer must still name that version, and the PUT is conditional on the
        ETag read in that check (S3 `If-Match`): a writer that lands in between makes it fail
        instead of being overwritten. `guard` (the lock check) runs right before the PUT.
        """
        prefix = self.layout.version_prefix(version_id)
        usable = self.version_exists(version_id) or (allow_legacy and self.prefix_in_use(prefix))
        if not usable:
            raise VersionMissingError(
                f"Refusing to point {self.url(self.layout.pointer_key())} at {version_id}: "
                f"{self.url(prefix)} has no {MANIFEST_NAME}" + (" and no objects." if allow_legacy else "."),
                "Upload the version completely first (the manifest is written last); pass allow_legacy=True "
                "only to roll back to a pre-manifest snapshot.",
            )
        condition: dict[str, str] = {}
        if expected is not None:
            current, etag = self.read_pointer_and_etag()
            if current != expected:
                raise self._moved(expected, current, "published in between")
            condition = {"IfMatch": etag}
        fault_point("s3_pointer_put")
        if guard is not None:
            guard()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.layout.pointer_key(),
                                   Body=version_id.encode("ascii"), ContentType="text/plain", **condition)
        except ClientError as error:
            if _error_code(error) not in _PRECONDITION_CODES:
                raise
            # Either a writer landed between the check and the PUT, or our own PUT landed and its
            # answer was lost (a 5xx after the write), so the client's retry found a new ETag.
            current = self.read_pointer()
            if current != version_id:
                raise self._moved(expected, current, "wrote it between this run's check and its write") from None

    def _moved(self, expected: str | None, current: str, how: str) -> PointerChangedError:
        return PointerChangedError(
            f"{self.url(self.layout.pointer_key())} names {current}, not {expected} as when this run started: "
            f"another writer {how}.",
            "Nothing was swapped; rerun the migration from the new live version.",
        )

    # -- versions --------------------------------------------------------------------------------

    def version_exists(self, version_id: str) -> bool:
        """True only for a complete version, i.e. one whose manifest.json (uploaded last) exists."""
        return self._object_exists(self.layout.version_prefix(version_id) + MANIFEST_NAME)

    def version_in_use(self, version_id: str) -> bool:
        """Any object under the version's prefix: the `taken` test for new_version_id."""
        return self.prefix_in_use(self.layout.version_prefix(version_id))

    def list_versions(self) -> list[str]:
        """Version ids that have a prefix (complete or not), sorted; other sub-prefixes are ignored."""
        root = self.layout.versions_root()
        paginator = self.client.get_paginator("list_objects_v2")
        versions = set()
        pages = paginator.paginate(Bucket=self.bucket, Prefix=root, Delimiter="/",
                                   PaginationConfig={"PageSize": self.page_size})
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(root):].rstrip("/")
                try:
                    versions.add(validate_version_id(name))
                except InvalidVersionIdError:
                    continue
        return sorted(versions)

    def list_backups(self) -> dict[str, str]:
        """Finished backups (their manifest, copied last, exists) by prefix, each with the version id
        it holds; one listing of the backups root, anything not shaped like a backup ignored."""
        suffix = "/" + MANIFEST_NAME
        backups = {}
        for key in self.list_objects(self.layout.backups_root()):
            prefix = key.removesuffix(MANIFEST_NAME)
            parsed = self.layout.parse_backup_prefix(prefix) if key.endswith(suffix) else None
            if parsed:
                backups[prefix] = parsed[1]
        return dict(sorted(backups.items()))

    def read_manifest(self, prefix: str) -> dict | None:
        """The manifest stored at the top of `prefix`, or None (legacy snapshot or incomplete upload)."""
        if not prefix.endswith("/"):
            raise SnapshotError(f"Prefix {prefix!r} must end with '/'.", "Pass the snapshot prefix with its slash.")
        key = prefix + MANIFEST_NAME
        data = self._get_bytes(key)
        return None if data is None else parse_manifest(data, self.url(key))

    # -- transfers -------------------------------------------------------------------------------

    def download(self, version_id: str, destination: Path,
                 progress: Callable[[int], None] | None = None) -> dict | None:
        """Download every object of the version into `destination` and check it against its manifest.

        Returns the manifest (also written as destination/manifest.json), or None for a legacy
        snapshot without one. `destination` must be missing or empty; on a mismatch it is left as
        is for inspection and the error names every bad file. `progress` hears of the bytes
        transferred (from the transfer's threads).
        """
        return self.download_prefix(self.layout.version_prefix(version_id), version_id, destination, progress)

    def download_prefix(self, prefix: str, version_id: str, destination: Path,
                        progress: Callable[[int], None] | None = None) -> dict | None:
        """`download` from any prefix holding a copy of `version_id` (a backup): the same checks, and
        the integrity error carries the key of every bad object."""
        destination = Path(destination)
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
            raise SnapshotError(
                f"Download destination {destination} exists and is not an empty directory.",
                "Download into a fresh scratch directory so old files cannot mix with the snapshot.",
            )
        objects = self.list_objects(prefix)
        if not objects:
            raise VersionMissingError(f"No objects under {self.url(prefix)}.",
                                      "Check the version id with list_versions().")
        destination.mkdir(parents=True, exist_ok=True)
        jobs = []
        for key in objects:
            relative = key[len(prefix):]
            if not relative or relative.endswith("/"):
                continue
            target = destination / safe_relative_path(relative, self.url(key))
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((key, target))

        def fetch(job: tuple[str, Path]) -> None:
            self.client.download_file(self.bucket, job[0], str(job[1]), Callback=progress, Config=self.transfer)

        run_parallel(fetch, jobs, self.workers)  # several objects at once, each in parts
        manifest_path = destination / MANIFEST_NAME
        if not manifest_path.is_file():
            return None
        manifest = parse_manifest(manifest_path.read_bytes(), self.url(prefix + MANIFEST_NAME))
        if manifest["version_id"] != version_id:
            raise SnapshotIntegrityError(
                f"{self.url(prefix + MANIFEST_NAME)} belongs to version {manifest['version_id']}, not {version_id}.",
                "The prefix holds another version's manifest; restore the right one from a backup.",
                [f"manifest version_id {manifest['version_id']}"], [prefix + MANIFEST_NAME],
            )
        bad = file_problems(destination, manifest)
        if bad:
            raise SnapshotIntegrityError(
                f"Snapshot {self.url(prefix)} does not match its manifest: " + "; ".join(line for _, line in bad),
                "Do not use this snapshot; restore the named files from a backup or point to another version.",
                [line for _, line in bad], [prefix + name for name, _ in bad],
            )
        return manifest

    def upload(self, source: Path, version_id: str, extra_manifest: dict | None = None, *,
               previous: str | None = None) -> dict:
        """Upload a snapshot directory as a new version: files first, manifest.json last (`upload_changed`)."""
        return self.upload_changed(source, version_id, extra_manifest, previous=previous)[0]

    def upload_changed(self, source: Path, version_id: str, extra_manifest: dict | None = None, *,
                       previous: str | None = None) -> tuple[dict, TransferReport]:
        """Upload a snapshot directory as a new version, sending only what `previous` lacks.

        A file byte-identical to one of version `previous` (same size and sha256 in both
        manifests, and the object there has that size) is copied inside S3 instead of uploaded;
        everything else is uploaded, several objects at once. Then every object's size (the
        listing) and SHA-256 checksum (what S3 computed of the stored bytes) is compared with the
        new manifest, which is written last. Refuses a prefix that already holds any object, so a
        version is never written over. Returns the manifest and what moved how.
        """
        started = time.perf_counter()
        prefix = self.layout.version_prefix(version_id)
        if self.prefix_in_use(prefix):
            raise VersionExistsError(
                f"{self.url(prefix)} already holds objects; a version is never written over.",
                "Pick a new id with new_version_id(now, store.version_in_use).",
            )
        source = Path(source)
        manifest = build_manifest(source, version_id, extra_manifest)
        if not manifest["files"]:
            raise SnapshotError(f"{source} holds no files to upload.", "Pass the snapshot's database directory.")
        reusable = self._unchanged_in(previous, manifest) if previous else {}
        report = TransferReport(copied_from=self.url(self.layout.version_prefix(previous)) if reusable else None,
                                objects_at_once=self.workers)

        def place(relative: str) -> bool:
            key = prefix + relative
            if relative in reusable:
                self.client.copy({"Bucket": self.bucket, "Key": reusable[relative]}, self.bucket, key,
                                 ExtraArgs={"ChecksumAlgorithm": CHECKSUM}, Config=self.transfer)
                return True
            self.client.upload_file(str(source / relative), self.bucket, key,
                                    ExtraArgs={"ChecksumAlgorithm": CHECKSUM}, Config=self.transfer)
            return False

        def placed(count: int, relative: str, copied: bool) -> None:  # in this thread: no lock needed
            report.count(copied, manifest["files"][relative]["size"])
            fault_point("upload_object", count)

        run_parallel(place, list(manifest["files"]), self.workers, on_done=placed)
        self._verify_upload(source, prefix, manifest)
        self._put_manifest(prefix, manifest)
        report.seconds = round(time.perf_counter() - started, 3)
        return manifest, report

    def _unchanged_in(self, previous: str, manifest: dict) -> dict[str, str]:
        """New files (by relative path) with a byte-identical object in `previous`: that object's key.

        Trusts nothing it cannot check cheaply: the previous version's own manifest names the
        content, its listing must show the object with that size, and the copy is verified by the
        checksum S3 computes of it afterwards. A legacy version (no manifest) offers nothing."""
        old_prefix = self.layout.version_prefix(previous)
        old_manifest = self.read_manifest(old_prefix)
        if old_manifest is None:
            return {}
        listed = self.list_objects(old_prefix)
        by_content: dict[tuple[str, int], str] = {}
        for name, entry in old_manifest["files"].items():
            if listed.get(old_prefix + name) == entry["size"]:
                by_content.setdefault((entry["sha256"], entry["size"]), old_prefix + name)
        reusable = {}
        for name, entry in manifest["files"].items():
            same_path = old_manifest["files"].get(name)
            if same_path == entry and listed.get(old_prefix + name) == entry["size"]:
                reusable[name] = old_prefix + name
            elif (found := by_content.get((entry["sha256"], entry["size"]))) is not None:
                reusable[name] = found
        return reusable

    def _verify_upload(self, source: Path, prefix: str, manifest: dict) -> None:
        """Every object's size from the listing and its SHA-256 checksum (S3's own, of the stored
        bytes) against the manifest; an object without a checksum is read back and hashed."""
        stored = self._relative_files(prefix, self.list_objects(prefix))
        problems = [f"{name}: uploaded {stored.get(name)} bytes, expected {entry['size']}"
                    for name, entry in manifest["files"].items() if stored.get(name) != entry["size"]]
        if problems:
            raise SnapshotIntegrityError(
                f"Upload to {self.url(prefix)} is incomplete (no manifest written): " + "; ".join(problems),
                "The source changed during the upload; close every writer of it and upload under a new version id.",
                problems,
            )

        def checked(name: str) -> str | None:
            entry = manifest["files"][name]
            head = self.client.head_object(Bucket=self.bucket, Key=prefix + name, ChecksumMode="ENABLED")
            if head.get("ChecksumSHA256") is None:
                sha256, size = self._hash_object(prefix + name)
                good = (sha256, size) == (entry["sha256"], entry["size"])
            else:
                good = checksum_matches(head["ChecksumSHA256"],
                                        expected_checksum(source / name, entry["sha256"], entry["size"],
                                                          self.part_bytes))
            return None if good else f"{name}: S3 holds other bytes than sha256 {entry['sha256']}"

        problems = [line for line in run_parallel(checked, list(manifest["files"]), self.workers) if line]
        if problems:
            raise SnapshotIntegrityError(
                f"Upload to {self.url(prefix)} does not match its manifest (no manifest written): "
                + "; ".join(sorted(problems)),
                "The source changed during the upload or a copied object differs; upload under a new version id.",
                sorted(problems), [prefix + line.split(":", 1)[0] for line in sorted(problems)],
            )

    def _put_manifest(self, prefix: str, manifest: dict) -> None:
        """The manifest last, never over another writer's (`If-None-Match`); a lost answer to our own
        PUT is recognised by its bytes."""
        body = manifest_bytes(manifest)
        try:
            self.client.put_object(Bucket=self.bucket, Key=prefix + MANIFEST_NAME, Body=body,
                                   ContentType="application/json", IfNoneMatch="*")
        except ClientError as error:
            if _error_code(error) not in _PRECONDITION_CODES:
                raise
            if self._get_bytes(prefix + MANIFEST_NAME) == body:
                return  # our PUT landed and its answer was lost; the client's retry hit our own object
            raise VersionExistsError(
                f"Another writer completed {self.url(prefix)} while this upload ran.",
                "Two runs used the same version id; rerun to upload under a fresh id.",
            ) from None

    def copy_version(self, version_id: str, destination_prefix: str) -> dict:
        """Server-side copy of a version to `destination_prefix`, verified by hashing the copied bytes.

        Idempotent: objects already copied with the right size are kept, wrong ones are copied
        again, so a rerun after a partial copy converges. The manifest (the source's own, or one
        built from the source bytes for a legacy snapshot) is written last and returned.
        """
        source_prefix = self.layout.version_prefix(version_id)
        if not destination_prefix.endswith("/"):
            raise SnapshotError(f"Backup prefix {destination_prefix!r} must end with '/'.",
                                "Use layout.backup_prefix(run_key, version_id).")
        if destination_prefix.startswith(source_prefix) or source_prefix.startswith(destination_prefix):
            raise SnapshotError(f"Backup prefix {destination_prefix!r} overlaps the source {source_prefix!r}.",
                                "Copy to a separate prefix such as layout.backup_prefix(run_key, version_id).")
        files = self._relative_files(source_prefix, self.list_objects(source_prefix))
        if not files:
            raise VersionMissingError(f"No snapshot files under {self.url(source_prefix)}.",
                                      "Check the version id with list_versions().")
        source_manifest = self.read_manifest(source_prefix)
        if source_manifest is not None:
            self._check_listing(source_prefix, files, source_manifest)
        existing = self.list_objects(destination_prefix)
        wanted = {destination_prefix + name for name in files} | {destination_prefix + MANIFEST_NAME}
        strangers = sorted(set(existing) - wanted)
        if strangers:
            raise VersionExistsError(
                f"Backup prefix {self.url(destination_prefix)} holds objects that are not in {version_id}: "
                + ", ".join(strangers[:10]),
                "Someone else wrote there; choose another backup prefix or remove those objects.",
            )
        for count, (name, size) in enumerate(files.items(), start=1):
            if existing.get(destination_prefix + name) != size:
                self._copy(source_prefix + name, destination_prefix + name)
            fault_point("backup_copy", count)
        hashes = self._verify_copy(source_prefix, destination_prefix, files, source_manifest)
        if source_manifest is not None:
            self._copy(source_prefix + MANIFEST_NAME, destination_prefix + MANIFEST_NAME)
            return source_manifest
        manifest = {"format": 1, "version_id": version_id, "files": hashes,
                    "copied_from": self.url(source_prefix), "legacy_source": True}
        self.client.put_object(Bucket=self.bucket, Key=destination_prefix + MANIFEST_NAME,
                               Body=manifest_bytes(manifest), ContentType="application/json")
        return manifest

    def _check_listing(self, prefix: str, files: dict[str, int], manifest: dict) -> None:
        """Names and sizes of the source objects against its manifest, before anything is copied."""
        expected = manifest["files"]
        problems = [f"missing file {name}" for name in sorted(set(expected) - set(files))]
        problems += [f"extra file {name} (not in the manifest)" for name in sorted(set(files) - set(expected))]
        problems += [f"size mismatch {name}: manifest says {expected[name]['size']} bytes, found {files[name]}"
                     for name in sorted(set(files) & set(expected)) if files[name] != expected[name]["size"]]
        if problems:
            raise SnapshotIntegrityError(
                f"Source {self.url(prefix)} does not match its manifest: " + "; ".join(problems),
                "The live snapshot is damaged; do not migrate it. Restore it or point to another version.",
                problems,
            )

    def _copy(self, source_key: str, destination_key: str) -> None:
        """Managed server-side copy (multipart above the transfer threshold, so >5 GB objects work)."""
        self.client.copy({"Bucket": self.bucket, "Key": source_key}, self.bucket, destination_key)

    def _verify_copy(self, source_prefix: str, destination_prefix: str, files: dict[str, int],
                     source_manifest: dict | None) -> dict[str, dict[str, Any]]:
        """Re-read every copied object; a wrong one is copied once more before it counts as a problem."""
        hashes: dict[str, dict[str, Any]] = {}
        problems = []
        for name in files:
            if source_manifest is not None:
                want = (source_manifest["files"][name]["sha256"], source_manifest["files"][name]["size"])
            else:
                want = self._hash_object(source_prefix + name)
            got = self._hash_object(destination_prefix + name)
            if got != want:
                self._copy(source_prefix + name, destination_prefix + name)
                got = self._hash_object(destination_prefix + name)
            if got != want:
                problems.append(f"sha256 mismatch {name}: expected {want[0]} ({want[1]} bytes), "
                                f"copy has {got[0]} ({got[1]} bytes)")
            hashes[name] = {"sha256": got[0], "size": got[1]}
        if problems:
            raise SnapshotIntegrityError(
                f"Backup {self.url(destination_prefix)} of {self.url(source_prefix)} differs from the source "
                "manifest: " + "; ".join(problems),
                "The source bytes do not match their manifest (a damaged snapshot); do not migrate it.",
                problems,
            )
        return hashes
