"""The CLI on real snapshots: s3:// prefixes and live pointers through a real moto server.

The engineer's workflow from a laptop: probe the live dev snapshot by `--env/--collection`
(the configuration file's bucket and key layout, the manifest checked), inspect a version
prefix, migrate one and upload the result as a new version. Nothing live moves, a damaged
object is refused by name, and a second look at the same version downloads nothing.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from rich import filesize

from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate_testkit.fixtures import receipt_spec
from chroma_migrate_testkit.standins import CREDENTIALS, REGION, seed_snapshot
from tests.conftest import CLI, REPO, database_copy
from tests.engine.terminal import run_on_terminal

pytestmark = pytest.mark.integration

SPEC = receipt_spec(records=200, big_dim=None)
SEED = "20260101_000000"
PREFIX = f"words/snapshot/timestamped/{SEED}/"


@pytest.fixture
def snapshots(moto_server, tmp_path):
    """A live `words` snapshot written by 1.0.20 in a bucket of its own, and a configuration naming it."""
    bucket = f"cli-{tmp_path.name.lower().replace('_', '-')[-40:].strip('-')}"
    layout = SnapshotLayout(bucket=bucket, collection="words", efs_root=tmp_path / "efs")
    seed_snapshot(moto_server.client("s3"), layout, database_copy("1.0.20", tmp_path, SPEC), SEED)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "defaults": {"aws_conn_id": "aws_default", "target_version": "1.5.9", "batch_size": 5000,
                     "lock_lease_minutes": 10, "lock_wait_minutes": 1},
        "collections": ["words"],
        "environments": {"dev": {"bucket": bucket, "efs_root": str(tmp_path / "efs"),
                                 "staging_root": str(tmp_path / "staging"), "lock_table": "locks",
                                 "ledger_table": "ledger", "require_approval": False, "schedule": None}}}))
    env = {**os.environ, **CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto_server.endpoint,
           "CHROMA_MIGRATE_CACHE": str(tmp_path / "cache"), "CHROMA_MIGRATION_CONFIG": str(config)}
    return S3SnapshotStore(moto_server.client("s3"), layout), env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, env=env)


def live_state(store: S3SnapshotStore) -> tuple[str, list[str]]:
    return store.read_pointer(), store.list_versions()


def test_probe_the_live_dev_snapshot_then_again_from_the_cache(snapshots):
    store, env = snapshots
    before = live_state(store)
    first = cli(env, "probe", "--env", "dev", "--collection", "words", "--target", "1.5.9")
    assert first.returncode == 0, first.stderr
    assert f"downloading {store.url(PREFIX)}" in first.stderr and "upgrade" in first.stdout
    second = cli(env, "probe", "--env", "dev", "--collection", "words", "--target", "1.5.9", "--json")
    assert second.returncode == 0, second.stderr
    document = json.loads(second.stdout)  # exactly one JSON document
    assert document["snapshot"] == store.url(PREFIX) and document["strategy"] == "upgrade"
    again = cli(env, "probe", "--env", "dev", "--collection", "words", "--target", "1.5.9")
    assert "using the cached copy" in again.stderr and "downloading" not in again.stderr
    assert live_state(store) == before


def test_inspect_a_prefix_and_migrate_it_with_upload_moves_no_pointer(snapshots, tmp_path):
    store, env = snapshots
    before = live_state(store)
    inspected = cli(env, "inspect", f"s3://{store.bucket}/{PREFIX}", "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["written_by"] == ["1.0.20"]
    migrated = cli(env, "migrate", f"s3://{store.bucket}/{PREFIX}", str(tmp_path / "out"), "--target", "1.5.9",
                   "--upload", "--json")
    assert migrated.returncode == 0, migrated.stderr
    result = json.loads(migrated.stdout)
    uploaded = result["uploaded"]
    assert uploaded.startswith(f"s3://{store.bucket}/words/snapshot/timestamped/") and uploaded.endswith("/")
    new_version = uploaded.rstrip("/").rsplit("/", 1)[1]
    assert store.read_pointer() == before[0] and store.list_versions() == sorted([*before[1], new_version])
    manifest = store.read_manifest(store.layout.version_prefix(new_version))
    assert manifest["migrated_from"] == SEED and manifest["chromadb_version"] == "1.5.9"
    check = cli(env, "inspect", uploaded, "--json")
    assert json.loads(check.stdout)["written_by"] == ["1.5.9"]


def test_a_damaged_object_is_refused_naming_the_key(snapshots, moto_server):
    store, env = snapshots
    key = PREFIX + "chroma.sqlite3"
    moto_server.client("s3").put_object(Bucket=store.bucket, Key=key, Body=b"not the uploaded bytes")
    result = cli(env, "inspect", f"s3://{store.bucket}/{PREFIX}", "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert store.url(PREFIX) in error and "chroma.sqlite3" in error
    assert store.read_pointer() == SEED


@pytest.mark.parametrize(("args", "named"), [
    (["inspect", "s3://bucket-only"], "is not a snapshot version prefix"),
    (["inspect", "s3://b/words/snapshot/timestamped/"], "does not end in a version id"),
    (["inspect", "--env", "dev"], "--env and --collection go together"),
    (["migrate", "./somewhere", "./out", "--upload"], "--upload needs an S3 source"),
])
def test_bad_sources_are_refused_before_any_download(snapshots, args, named):
    _store, env = snapshots
    result = cli(env, *args, "--json")
    assert result.returncode == 2 and named in json.loads(result.stdout)["error"]


def test_a_download_on_a_terminal_shows_its_bar(snapshots):
    store, env = snapshots
    shown, _piped, code = run_on_terminal(["inspect", f"s3://{store.bucket}/{PREFIX}"], stdout_to_terminal=True,
                                          env=env)
    assert code == 0, shown
    total = sum(store.list_objects(PREFIX).values())
    assert f"{filesize.decimal(total)}/{filesize.decimal(total)}" in shown  # the download bar, full
    assert "written by chromadb 1.0.20" in shown
