"""Snapshot manifests: the sha256 and size of every file, so any copy can prove it is complete.

Shape: `{"format": 1, "version_id": ..., "files": {relative_posix_path: {"sha256": hex, "size": int}},
...extra}`, stored as `manifest.json` at the top of the snapshot and never listing itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from chroma_migrate.snapshots.errors import ManifestError, SnapshotError
from chroma_migrate.snapshots.layout import validate_version_id

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 1024 * 1024
HASH_THREADS = max(2, min(4, os.cpu_count() or 1))
_RESERVED = ("format", "version_id", "files")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """sha256 and byte count of a stream, read 1 MiB at a time (snapshots hold multi-GB index files)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def hash_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return hash_stream(handle)


def safe_relative_path(name: str, where: str) -> PurePosixPath:
    """A relative path from a manifest or an object key, refused if it could leave its directory."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or str(path) != name:
        raise ManifestError(
            f"{where}: file name {name!r} is not a plain relative path inside the snapshot.",
            "Snapshot files must be relative POSIX paths without '..', leading '/' or backslashes; "
            "remove or rename that entry.",
        )
    return path


def snapshot_files(directory: Path) -> dict[str, Path]:
    """Every regular file below `directory` by relative POSIX path, except the top-level manifest."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SnapshotError(f"{directory} is not a directory.", "Pass the snapshot's directory.")
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(root) / name
            if path.is_symlink():
                raise SnapshotError(
                    f"{path} is a symbolic link; a snapshot must hold its own bytes.",
                    "Replace the link with a copy of the file, or remove it.",
                )
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if relative != MANIFEST_NAME:
                found[relative] = path
    return dict(sorted(found.items()))


def build_manifest(directory: Path, version_id: str, extra: dict | None = None) -> dict:
    """Hash every file of `directory` (streamed) into a manifest for `version_id`."""
    validate_version_id(version_id)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ManifestError(
            f"Extra manifest fields {clash} would overwrite the manifest's own fields.",
            f"Rename those fields; {list(_RESERVED)} are reserved.",
        )
    files = {}
    for relative, path in snapshot_files(directory).items():
        sha256, size = hash_file(path)
        files[relative] = {"sha256": sha256, "size": size}
    return {"format": MANIFEST_FORMAT, "version_id": version_id, "files": files, **extra}


def validate_manifest(manifest: Any, where: str) -> dict:
    """Refuse a manifest that does not have the documented shape (it may come from anywhere)."""
    def bad(problem: str) -> ManifestError:
        return ManifestError(f"{where}: {problem}", "Rebuild the manifest with build_manifest, or restore it.")

    if not isinstance(manifest, dict):
        raise bad("the manifest is not a JSON object.")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise bad(f"unsupported manifest format {manifest.get('format')!r} (this code reads {MANIFEST_FORMAT}).")
    try:
        validate_version_id(manifest.get("version_id"))
    except SnapshotError as error:
        raise bad(f"bad version_id: {error.problem}") from None
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise bad("'files' is missing or not an object.")
    for name, entry in files.items():
        safe_relative_path(name, where)
        if name == MANIFEST_NAME:
            raise bad("the manifest lists itself.")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX64.fullmatch(entry["sha256"]) or type(entry.get("size")) is not int
                or entry["size"] < 0):
            raise bad(f"entry for {name!r} must be {{'sha256': 64 lowercase hex, 'size': int >= 0}}.")
    return manifest


def manifest_bytes(manifest: dict) -> bytes:
    """Stable JSON (sorted keys) so the same manifest is always the same object."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes, where: str) -> dict:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{where}: manifest is not valid UTF-8 JSON ({error}).",
                            "Restore manifest.json from a backup or rebuild it.") from None
    return validate_manifest(manifest, where)


def read_manifest_file(directory: Path) -> dict | None:
    """The manifest stored at the top of `directory`, or None for a legacy snapshot without one."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    return parse_manifest(path.read_bytes(), str(path))


def write_manifest_file(directory: Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST_NAME
    path.write_bytes(manifest_bytes(manifest))
    return path


def check_directory(directory: Path, manifest: dict) -> list[str]:
    """Every difference between `directory` and `manifest`, one line per file (empty when they match)."""
    return [line for _, line in file_problems(directory, manifest)]


def file_problems(directory: Path, manifest: dict) -> list[tuple[str, str]]:
    """(relative name, problem line) of every file that differs from `manifest`, so a caller can
    name the object key of each one.

    Sizes are compared first so a truncated file is reported without hashing it.
    """
    validate_manifest(manifest, f"manifest for {directory}")
    expected = manifest["files"]
    present = snapshot_files(directory)
    problems = [(name, f"missing file {name}") for name in sorted(set(expected) - set(present))]
    problems += [(name, f"extra file {name} (not in the manifest)") for name in sorted(set(present) - set(expected))]
    common = sorted(set(expected) & set(present))
    sizes = {name: present[name].stat().st_size for name in common}
    to_hash = [name for name in common if sizes[name] == expected[name]["size"]]
    # hashlib releases the GIL on large updates: a few threads hash a snapshot's big files side by side.
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        hashes = dict(zip(to_hash, pool.map(lambda name: hash_file(present[name])[0], to_hash), strict=True))
    for name in common:
        want = expected[name]
        if sizes[name] != want["size"]:
            problems.append((name, f"size mismatch {name}: manifest says {want['size']} bytes, found {sizes[name]}"))
        elif hashes[name] != want["sha256"]:
            problems.append((name, f"sha256 mismatch {name}: manifest says {want['sha256']}, found {hashes[name]}"))
    return problems
