"""docker-compose.yaml, .env.example and the Dockerfile, checked without a Docker engine.

The compose file is read as `docker compose` reads it (anchors, merge keys, interpolation from
.env.example) and validated against the Compose Specification's JSON schema; then the checks of
tests/deploy/checks.py say whether it runs the DAGs: every service present and wired, the project
and the EFS volume mounted where the configuration expects them, the Dockerfile building exactly
the repository's chromadb runtimes. Each check is also shown to catch a broken variant.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import jsonschema
import pytest

from chroma_migrate.configuration import load_config
from tests.conftest import REPO
from tests.deploy.checks import PROJECT_MOUNTS, compose_problems, dockerfile_problems, environment_of, find_roles
from tests.deploy.compose_file import MissingVariable, load_compose, read_dotenv, referenced_variables
from tests.deploy.compose_schema import compose_schema

COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|ACCESS_KEY")


def example_variables() -> dict[str, str]:
    """.env.example with every value a user must fill in filled with a placeholder, as a user's .env would be."""
    return {name: value or f"placeholder-{name.lower()}" for name, value in read_dotenv(ENV_EXAMPLE).items()}


def runtime_versions() -> list[str]:
    files = (REPO / "include" / "chroma_migrate" / "runtimes").glob("chromadb-*.txt")
    versions = [path.name.removeprefix("chromadb-").removesuffix(".txt") for path in files]
    return sorted(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def runtimes_python() -> str:
    """The Python version every runtime file was compiled for (`uv pip compile --python-version X.Y`)."""
    found = {m for path in (REPO / "include" / "chroma_migrate" / "runtimes").glob("chromadb-*.txt")
             for m in re.findall(r"--python-version (\d+\.\d+)", path.read_text())}
    assert len(found) == 1, f"runtime files disagree on the Python version: {found}"
    return found.pop()


def pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert match, f"requirements.txt does not pin {package}"
    return match[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE, example_variables())


@pytest.fixture(scope="module")
def efs_paths(compose) -> list[str]:
    """efs_root and staging_root of every environment, as the shipped configuration resolves them in the worker."""
    worker = compose["services"][find_roles(compose["services"])["worker"]]
    env = environment_of(worker)
    config_file = env["CHROMA_MIGRATION_CONFIG"].replace(PROJECT_MOUNTS["include"], str(REPO / "include"), 1)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        config = load_config(REPO / config_file)
    return [str(path) for e in config.environments.values() for path in (e.efs_root, e.staging_root)]


def test_the_compose_file_is_valid_under_the_compose_specification(compose):
    validator = jsonschema.Draft201909Validator(compose_schema())  # the draft its $schema names
    for document in (load_compose(COMPOSE), compose):  # as written, and as compose sees it after interpolation
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")
    assert any("healthchek" in e.message for e in validator.iter_errors(broken))


def test_the_compose_file_runs_the_dags(compose, efs_paths):
    assert set(find_roles(compose["services"])) >= {"api-server", "scheduler", "dag-processor", "triggerer",
                                                    "worker", "postgres", "redis", "aws stand-in", "init"}
    assert efs_paths and all(path.startswith("/mnt/efs/") for path in efs_paths), efs_paths
    assert compose_problems(compose, REPO, efs_paths) == []


@pytest.mark.parametrize(("breakage", "expected"), [
    (lambda c: c["services"].pop("airflow-triggerer"), "no triggerer service"),
    (lambda c: c["services"]["airflow-worker"]["volumes"].remove("./include:/opt/airflow/include"),
     "airflow-worker does not mount ./include at /opt/airflow/include"),
    (lambda c: c["services"]["airflow-worker"]["volumes"].append("./no-such-folder:/x"),
     "airflow-worker mounts ./no-such-folder (to /x), which does not exist in the repository"),
    (lambda c: c["services"]["airflow-scheduler"]["volumes"].remove("efs:/mnt/efs"),
     "airflow-scheduler: /mnt/efs/chroma-dev (efs_root/staging_root of the configuration) is on no shared volume"),
    (lambda c: c["services"]["airflow-worker"]["environment"].update(
        AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"endpoint_url": "http://localhost:5000"}}'),
     "airflow-worker: the aws_default connection's endpoint_url 'http://localhost:5000' is not the aws-local service"),
    (lambda c: c["services"]["airflow-worker"]["environment"].update(AIRFLOW__CORE__EXECUTOR="LocalExecutor"),
     "airflow-worker: AIRFLOW__CORE__EXECUTOR is 'LocalExecutor', not CeleryExecutor"),
    (lambda c: c["services"]["airflow-worker"]["depends_on"].pop("airflow-init"),
     "airflow-worker does not wait for airflow-init (service_completed_successfully)"),
    (lambda c: c["services"]["airflow-init"].update(depends_on={"airflow-worker": {"condition": "service_started"}}),
     "dependency cycle through airflow-init"),
])
def test_each_compose_check_catches_its_breakage(compose, efs_paths, breakage, expected):
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert expected in compose_problems(broken, REPO, efs_paths)


def test_no_secret_is_committed_and_compose_refuses_to_start_without_them():
    written = read_dotenv(ENV_EXAMPLE)
    secrets = sorted(name for name in written if SECRET_NAME.search(name))
    assert secrets and all(written[name] == "" for name in secrets), {name: written[name] for name in secrets}
    assert referenced_variables(COMPOSE.read_text()) <= set(written), "every variable compose reads is documented"
    with pytest.raises(MissingVariable) as missing:
        load_compose(COMPOSE, written)
    assert missing.value.name in secrets and ".env" in str(missing.value)
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env must be git-ignored"


def test_the_dockerfile_builds_every_runtime_of_the_repository(compose):
    versions = runtime_versions()
    assert versions[0] == "0.4.24" and "1.5.9" in versions
    mount_targets = {target for service in compose["services"].values()
                     for target in (m.split(":")[1] for m in service.get("volumes") or [] if ":" in m)}
    text = (REPO / "Dockerfile").read_text()
    arguments = (versions, pinned("apache-airflow"), runtimes_python(), mount_targets)
    assert dockerfile_problems(text, *arguments) == []
    fewer = dockerfile_problems(text.replace(" 1.3.7", ""), *arguments)
    assert any(p.startswith("ARG CHROMA_RUNTIMES lists") and "'1.3.7'" in p for p in fewer), fewer
    hidden = dockerfile_problems(text.replace("=/opt/chroma-runtimes", "=/opt/airflow/dags/runtimes"), *arguments)
    assert any("would hide the runtimes" in p for p in hidden), hidden
    unordered = dockerfile_problems(text.replace("ENV CHROMA_MIGRATE_RUNTIMES", "ENV OTHER"), *arguments)
    assert "no ENV CHROMA_MIGRATE_RUNTIMES=..." in unordered
    for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, re.MULTILINE):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"


@pytest.mark.integration
def test_the_local_aws_setup_creates_every_bucket_and_table(moto_server, tmp_path):
    """docker/local_aws_setup.py (the aws-local-init service) through the aws_default connection."""
    config = tmp_path / "config.yaml"
    environments = {name: {"bucket": f"deploy-{name}", "efs_root": str(tmp_path / "efs" / name),
                           "staging_root": str(tmp_path / "efs" / name / "migrations"),
                           "lock_table": f"deploy-locks-{name}", "ledger_table": f"deploy-ledger-{name}",
                           "require_approval": name == "prod", "schedule": None} for name in ("dev", "prod")}
    config.write_text(json.dumps({"defaults": {"aws_conn_id": "aws_default", "target_version": "1.5.9",
                                               "batch_size": 100, "lock_lease_minutes": 10,
                                               "lock_wait_minutes": 1},
                                  "collections": ["words"], "environments": environments}))
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"), "CHROMA_MIGRATION_CONFIG": str(config),
           **moto_server.airflow_env()}
    result = subprocess.run([sys.executable, str(REPO / "docker" / "local_aws_setup.py")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    buckets = {b["Name"] for b in moto_server.client("s3").list_buckets()["Buckets"]}
    tables = set(moto_server.client("dynamodb").list_tables()["TableNames"])
    for name, environment in environments.items():
        assert environment["bucket"] in buckets
        assert {environment["lock_table"], environment["ledger_table"]} <= tables
        assert (tmp_path / "efs" / name / "migrations").is_dir()
    assert "dev: bucket deploy-dev" in result.stdout
