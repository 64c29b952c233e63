"""Where a collection's snapshots live in S3 and on EFS, and what a version id looks like.

The key layout is the one the existing compactor writes, so both systems see the same
versions and the same pointer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chroma_migrate.snapshots.errors import InvalidVersionIdError, SnapshotError

VERSION_FORMAT = "%Y%m%d_%H%M%S"
_VERSION_RE = re.compile(r"\d{8}_\d{6}")
MAX_VERSION_ATTEMPTS = 3600


def validate_version_id(text: str) -> str:
    """Return `text` if it is a UTC `%Y%m%d_%H%M%S` id, else raise.

    Pointer bodies are user data: a stray path, an empty body or `../x` must never become a
    key or a directory name. No suffix is accepted; ids are exactly 15 characters.
    """
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise InvalidVersionIdError(
            f"{text!r} is not a snapshot version id (expected UTC {VERSION_FORMAT}, e.g. 20240131_235959).",
            "Check the pointer body or the version argument; ids are 8 digits, '_', 6 digits, nothing else.",
        )
    try:
        datetime.strptime(text, VERSION_FORMAT)
    except ValueError:
        raise InvalidVersionIdError(
            f"{text!r} has the version id shape but is not a real date and time.",
            "Use a real UTC timestamp in the form YYYYMMDD_HHMMSS.",
        ) from None
    return text


def new_version_id(now: datetime, taken: Callable[[str], bool]) -> str:
    """A fresh id at `now` (UTC), moved forward a second at a time while `taken(id)` is true.

    A migration must never write over an existing prefix, even when two runs share a second.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise SnapshotError(
            f"new_version_id got a naive datetime {now.isoformat()}; its time zone is ambiguous.",
            "Pass an aware datetime, e.g. datetime.now(timezone.utc).",
        )
    moment = now.astimezone(UTC).replace(microsecond=0)
    for _ in range(MAX_VERSION_ATTEMPTS):
        candidate = moment.strftime(VERSION_FORMAT)
        if not taken(candidate):
            return candidate
        moment += timedelta(seconds=1)
    raise SnapshotError(
        f"Every version id from {now.astimezone(UTC).strftime(VERSION_FORMAT)} on for "
        f"{MAX_VERSION_ATTEMPTS} seconds is taken.",
        "Something is creating versions in a loop; inspect the timestamped prefixes before retrying.",
    )


def _check_name(kind: str, value: str) -> None:
    """Collection and bucket names become key and path segments: refuse anything that could escape them."""
    if not value or "/" in value or "\\" in value or value in {".", ".."} or value != value.strip():
        raise SnapshotError(
            f"{kind} name {value!r} cannot be used as a key or path segment.",
            f"Pass the plain {kind} name, without slashes or surrounding spaces.",
        )


@dataclass(frozen=True)
class SnapshotLayout:
    """Key templates and EFS paths of one collection; pure string/path arithmetic, no I/O."""

    bucket: str
    collection: str
    efs_root: Path
    prefix_template: str = "{collection}/snapshot/timestamped/{version_id}/"
    pointer_template: str = "{collection}/snapshot/latest-pointer.txt"
    backup_template: str = "{collection}/snapshot/backups/{run_key}/{version_id}/"

    def __post_init__(self) -> None:
        _check_name("bucket", self.bucket)
        _check_name("collection", self.collection)
        object.__setattr__(self, "efs_root", Path(self.efs_root))
        if not self.prefix_template.endswith("{version_id}/"):
            raise SnapshotError(
                f"prefix_template {self.prefix_template!r} must end with '{{version_id}}/'.",
                "Versions are listed as the sub-prefixes of one parent prefix; keep the version id last.",
            )
        if not self.backup_template.endswith("/"):
            raise SnapshotError(
                f"backup_template {self.backup_template!r} must end with '/'.",
                "A backup is a prefix; end the template with a slash.",
            )

    def version_prefix(self, version_id: str) -> str:
        return self.prefix_template.format(collection=self.collection, version_id=validate_version_id(version_id))

    def versions_root(self) -> str:
        """The parent prefix whose sub-prefixes are the versions (for listing)."""
        return self.prefix_template.removesuffix("{version_id}/").format(collection=self.collection)

    def pointer_key(self) -> str:
        return self.pointer_template.format(collection=self.collection)

    def backup_prefix(self, run_key: str, version_id: str) -> str:
        _check_name("run key", run_key)
        return self.backup_template.format(
            collection=self.collection, run_key=run_key, version_id=validate_version_id(version_id)
        )

    def backups_root(self) -> str:
        """The fixed part of the backup template before its first run-dependent field (for listing)."""
        head = re.split(r"\{run_key\}|\{version_id\}", self.backup_template, maxsplit=1)[0]
        return head.format(collection=self.collection)

    def parse_backup_prefix(self, prefix: str) -> tuple[str, str] | None:
        """(run_key, version_id) of a prefix the backup template produces, else None: listings under
        the backups root may hold anything, and only a well-formed backup may be restored."""
        pattern = re.escape(self.backup_template).replace(re.escape("{collection}"), re.escape(self.collection))
        for field_name in ("run_key", "version_id"):
            pattern = pattern.replace(re.escape("{" + field_name + "}"), f"(?P<{field_name}>[^/]+)", 1)
        found = re.fullmatch(pattern, prefix)
        if not found or not _VERSION_RE.fullmatch(found["version_id"]):
            return None
        run_key, version_id = found["run_key"], found["version_id"]
        try:
            return (run_key, version_id) if self.backup_prefix(run_key, version_id) == prefix else None
        except SnapshotError:
            return None

    def efs_collection_dir(self) -> Path:
        return self.efs_root / "snapshots" / self.collection

    def efs_version_dir(self, version_id: str) -> Path:
        return self.efs_collection_dir() / validate_version_id(version_id)

    def efs_pointer_path(self) -> Path:
        return self.efs_collection_dir() / "latest-pointer.txt"
