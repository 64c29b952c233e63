"""The snapshot systems' configuration: collections and environments, validated on load.

The DAGs are built from it, and the CLI reads it to find a live snapshot (`--env ENV
--collection NAME`); nothing in the migration itself does: the engine's steps take paths,
versions and store objects. No Airflow import, so the CLI runs where Airflow is not installed.

An invalid file fails the DAG import with a message that names the key and the fix,
so a typo shows up as an import error in the Airflow UI, not as a failed run at night.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chroma_migrate.errors import MigrationError, UnsupportedVersionError
from chroma_migrate.runtime_resolution import check_release
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.verification.behaviour import validate_sample_queries
from chroma_migrate.versions import supported_version_names

# include/chroma_migrate/configuration.py -> include/config/, in the repository and in the image alike.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "chroma_migration.yaml"
CONFIG_ENV = "CHROMA_MIGRATION_CONFIG"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class ConfigError(MigrationError):
    """The configuration file is wrong; the message names the key."""


@dataclass(frozen=True)
class KeyLayout:
    version_prefix: str = "{collection}/snapshot/timestamped/{version_id}/"
    pointer: str = "{collection}/snapshot/latest-pointer.txt"
    backup_prefix: str = "{collection}/snapshot/backups/{run_key}/{version_id}/"


@dataclass(frozen=True)
class Environment:
    name: str
    bucket: str
    efs_root: Path
    staging_root: Path
    lock_table: str
    ledger_table: str
    require_approval: bool
    schedule: str | None
    aws_conn_id: str
    target_version: str
    batch_size: int
    lock_lease_minutes: float
    lock_wait_minutes: float
    key_layout: KeyLayout
    # The services that read this environment's snapshots and the chromadb release each pins:
    # each must be able to read a migrated snapshot before it is published (reader_gate.py).
    readers: dict[str, str] = field(default_factory=dict)
    # Per configured snapshot, per chromadb collection in it: the operator's own queries, asked of
    # the source and of the target; every answer that changes is listed for the approver.
    sample_queries: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    def layout(self, collection: str) -> SnapshotLayout:
        """One collection's keys and EFS paths in this environment (the DAG's hook and the CLI alike)."""
        keys = self.key_layout
        return SnapshotLayout(bucket=self.bucket, collection=collection, efs_root=self.efs_root,
                              prefix_template=keys.version_prefix, pointer_template=keys.pointer,
                              backup_template=keys.backup_prefix)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (paths as strings): how a run carries its resolved environment in XCom."""
        values = asdict(self)
        return values | {"efs_root": str(self.efs_root), "staging_root": str(self.staging_root)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Environment:
        return cls(**{**values, "efs_root": Path(values["efs_root"]), "staging_root": Path(values["staging_root"]),
                      "key_layout": KeyLayout(**values["key_layout"])})


@dataclass(frozen=True)
class MigrationConfig:
    path: Path
    collections: tuple[str, ...]
    environments: dict[str, Environment] = field(default_factory=dict)

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            raise ConfigError(f"Unknown environment {name!r}.",
                              f"Use one of {', '.join(self.environments)} (from {self.path}).")
        return self.environments[name]

    @property
    def scheduled_environment(self) -> Environment | None:
        return next((env for env in self.environments.values() if env.schedule), None)


def _expand(value: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"{key}: environment variable {name} is not set.",
                              f"Set {name} or give a default as ${{{name}:-value}}.")
        return default

    return _VARIABLE.sub(substitute, value)


def _require(mapping: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}.{key} is missing.", f"Add `{key}:` under `{where}`.")
    value = _expand(mapping[key], f"{where}.{key}")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key} must be a {names}, got {value!r}.", f"Fix `{key}` under `{where}`.")
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{where}.{key} is empty.", f"Give `{key}` under `{where}` a value.")
    return value


def _layout(raw: Any, where: str) -> KeyLayout:
    if raw is None:
        return KeyLayout()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping.", "See include/config/chroma_migration.yaml.")
    unknown = set(raw) - {"version_prefix", "pointer", "backup_prefix"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}.", "Use version_prefix, pointer, backup_prefix.")
    layout = KeyLayout(**{k: _expand(v, f"{where}.{k}") for k, v in raw.items()})
    for name, needed in (("version_prefix", ("{collection}", "{version_id}")), ("pointer", ("{collection}",)),
                         ("backup_prefix", ("{collection}", "{run_key}", "{version_id}"))):
        template = getattr(layout, name)
        missing = [p for p in needed if p not in template]
        if missing:
            raise ConfigError(f"{where}.{name} ({template!r}) lacks {', '.join(missing)}.",
                              "Keep those placeholders so every collection and version gets its own key.")
    return layout


ENV_KEYS = {"bucket", "efs_root", "staging_root", "lock_table", "ledger_table", "require_approval", "schedule",
            "aws_conn_id", "target_version", "batch_size", "lock_lease_minutes", "lock_wait_minutes", "key_layout",
            "readers", "sample_queries"}


def _numbers(merged: dict[str, Any], where: str) -> dict[str, Any]:
    """batch_size and the lock's minutes, each positive."""
    numbers = {"batch_size": _require(merged, "batch_size", where, int)}
    numbers |= {key: float(_require(merged, key, where, (int, float))) for key in ("lock_lease_minutes",
                                                                                   "lock_wait_minutes")}
    for key, value in numbers.items():
        if value <= 0 or (key == "batch_size" and value < 1):
            raise ConfigError(f"{where}.{key} must be positive, got {value}.", f"Fix `{key}`.")
    return numbers


def _release(version: str, where: str) -> None:
    """A well-formed release from 0.4.15 on; one without a runtime file is resolved when a run
    first needs it (never while the DAG file is parsed)."""
    try:
        check_release(version)
    except UnsupportedVersionError as exc:
        raise ConfigError(f"{where}: {exc.problem}", f"{exc.fix} Shipped: {', '.join(supported_version_names())}."
                          ) from exc


def _environment(name: str, raw: Any, defaults: dict[str, Any]) -> Environment:
    where = f"environments.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping.", "See include/config/chroma_migration.yaml.")
    unknown = set(raw) - ENV_KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}.", f"Known keys: {', '.join(sorted(ENV_KEYS))}.")
    merged = {**defaults, **raw}
    target = str(_require(merged, "target_version", where, (str, int, float)))
    _release(target, f"{where}.target_version")
    numbers = _numbers(merged, where)
    schedule = _expand(merged.get("schedule"), f"{where}.schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ConfigError(f"{where}.schedule must be a cron string, a preset like @daily, or null.", "Fix it.")
    return Environment(
        name=name, bucket=_require(merged, "bucket", where, str),
        efs_root=Path(_require(merged, "efs_root", where, str)),
        staging_root=Path(_require(merged, "staging_root", where, str)),
        lock_table=_require(merged, "lock_table", where, str),
        ledger_table=_require(merged, "ledger_table", where, str),
        require_approval=_require(merged, "require_approval", where, bool), schedule=schedule,
        aws_conn_id=_require(merged, "aws_conn_id", where, str), target_version=target, **numbers,
        key_layout=_layout(merged.get("key_layout"), f"{where}.key_layout"),
        readers=_readers(merged.get("readers"), f"{where}.readers"),
        sample_queries=_sample_queries(merged.get("sample_queries"), f"{where}.sample_queries"),
    )


def _readers(raw: Any, where: str) -> dict[str, str]:
    """`{service: "X.Y.Z"}`; versions are checked for form here and resolved when a run needs them."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must map each reading service to the chromadb release it pins.",
                          'For example readers: {receipt_label: "1.3.2", merchant_validation: "0.4.22"}.')
    readers = {}
    for name, version in raw.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where} has an empty reader name.", "Name each service that reads the snapshot.")
        if not isinstance(version, str):
            raise ConfigError(f"{where}.{name} must be a quoted release string, got {version!r}.",
                              f'Write it in quotes, e.g. {name}: "1.3.2" (YAML reads 1.10 as a number).')
        _release(version, f"{where}.{name}")
        readers[name] = version
    return readers


def _sample_queries(raw: Any, where: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per snapshot, per chromadb collection in it, a list of queries (the engine checks each one)."""
    if raw is None:
        return {}
    example = "For example sample_queries: {words: {words: [{name: merchants, where: {kind: merchant}}]}}."
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{where} must map each snapshot to its collections' lists of queries.", example)
    for snapshot, queries in raw.items():
        try:
            validate_sample_queries(queries)
        except MigrationError as exc:
            raise ConfigError(f"{where}.{snapshot}: {exc.problem}", exc.fix) from exc
    return raw


def load_config(path: Path | None = None) -> MigrationConfig:
    """Read and validate the file (default: $CHROMA_MIGRATION_CONFIG, else include/config/...)."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    raw = _read_mapping(path)
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - ENV_KEYS:
        raise ConfigError(f"defaults has unknown keys {sorted(set(defaults) - ENV_KEYS)}.",
                          f"Known keys: {', '.join(sorted(ENV_KEYS))}.")
    collections = _collections(raw.get("collections"))
    environments_raw = raw.get("environments")
    if not isinstance(environments_raw, dict) or not environments_raw:
        raise ConfigError("environments must map names (dev, prod, ...) to settings.", "Add environments:.")
    environments = {name: _environment(name, value, defaults) for name, value in environments_raw.items()}
    scheduled = [env.name for env in environments.values() if env.schedule]
    if len(scheduled) > 1:
        raise ConfigError(f"Only one environment can be scheduled (one DAG per collection), found {scheduled}.",
                          "Set schedule: null on all but one (dev revalidates; prod is triggered).")
    return MigrationConfig(path, tuple(collections), environments)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"The configuration file {path} does not exist.", f"Create it or set {CONFIG_ENV}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}.", "Fix the syntax at the position shown.") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with collections and environments.", "See the shipped file.")
    raw = _joined_surrogates(raw)
    unknown = set(raw) - {"defaults", "collections", "environments"}
    if unknown:
        raise ConfigError(f"{path} has unknown top-level keys {sorted(unknown)}.",
                          "Use defaults, collections, environments.")
    return raw


def _joined_surrogates(value: Any) -> Any:
    """JSON escapes an emoji as a surrogate pair ("\\ud83d\\ude00"), which YAML reads as two lone
    surrogates; join them back, so a JSON file (JSON is YAML) means what it says."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16") if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_joined_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_joined_surrogates(k): _joined_surrogates(v) for k, v in value.items()}
    return value


def _collections(collections: Any) -> list[str]:
    if not isinstance(collections, list) or not collections:
        raise ConfigError("collections must be a non-empty list of collection names.", "List them under collections:.")
    for position, name in enumerate(collections):
        if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
            raise ConfigError(f"collections[{position}] ({name!r}) is not a valid ChromaDB collection name.",
                              "Use 3-512 characters from letters, digits, '.', '_' and '-'.")
    if len(set(collections)) != len(collections):
        raise ConfigError("collections lists a name twice.", "Remove the duplicate.")
    return collections
