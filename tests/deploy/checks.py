"""What the deployment files must say for the DAGs to work, as lists of problems (empty: fine).

Each check names the service, key or line at fault, so a failing test reads like a review comment.
They take parsed, interpolated data, so the tests can also feed them broken variants.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

AIRFLOW_ROLES = {"api-server": "api-server", "scheduler": "scheduler", "dag-processor": "dag-processor",
                 "triggerer": "triggerer", "worker": "celery worker"}
PROJECT_MOUNTS = {"dags": "/opt/airflow/dags", "plugins": "/opt/airflow/plugins", "include": "/opt/airflow/include"}
AWS_STAND_IN_IMAGES = ("motoserver/moto", "localstack/localstack")
SHARED_SETTINGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__FERNET_KEY",
                   "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                   "AIRFLOW_CONN_AWS_DEFAULT", "CHROMA_MIGRATION_CONFIG")


# --------------------------------------------------------------------------------------------------------------
# Reading services
# --------------------------------------------------------------------------------------------------------------


def command_of(service: Mapping[str, Any]) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def mounts_of(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            result.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return result


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def find_roles(services: Mapping[str, Any]) -> dict[str, str]:
    """role -> service name, for every role the DAGs need that the file has."""
    roles: dict[str, str] = {}
    for name, service in services.items():
        image, command = str(service.get("image", "")), command_of(service)
        for role, airflow_command in AIRFLOW_ROLES.items():
            if command == airflow_command:
                roles[role] = name
        if image.startswith("postgres:"):
            roles["postgres"] = name
        if image.startswith("redis:"):
            roles["redis"] = name
        if image.startswith(AWS_STAND_IN_IMAGES):
            roles["aws stand-in"] = name
        if environment_of(service).get("_AIRFLOW_DB_MIGRATE", "").lower() == "true":
            roles["init"] = name
    return roles


def _listening_port(service: Mapping[str, Any]) -> int | None:
    command = command_of(service).split()
    if "-p" in command:
        return int(command[command.index("-p") + 1])
    exposed = service.get("expose") or []
    return int(str(exposed[0]).split("/")[0]) if exposed else None


def _within(path: str, folder: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(folder) or PurePosixPath(folder) in PurePosixPath(path).parents


# --------------------------------------------------------------------------------------------------------------
# docker-compose.yaml
# --------------------------------------------------------------------------------------------------------------


def compose_problems(compose: Mapping[str, Any], repo: Path, efs_paths: Iterable[str]) -> list[str]:
    """Everything wrong with an interpolated compose file for running the DAGs (see the module docstring)."""
    services: dict[str, Any] = compose.get("services") or {}
    roles = find_roles(services)
    problems = [f"no {role} service" for role in (*AIRFLOW_ROLES, "postgres", "redis", "aws stand-in", "init")
                if role not in roles]
    airflow = {roles[role] for role in AIRFLOW_ROLES if role in roles}
    problems += _image_problems(services, airflow | ({roles["init"]} if "init" in roles else set()), repo)
    problems += _mount_problems(compose, services, airflow, repo, list(efs_paths))
    problems += _wiring_problems(services, roles, airflow)
    problems += _dependency_problems(services, roles, airflow)
    return problems


def _image_problems(services: Mapping[str, Any], airflow: set[str], repo: Path) -> list[str]:
    problems, images = [], set()
    for name in sorted(airflow):
        build = services[name].get("build")
        context = build.get("context", ".") if isinstance(build, dict) else build
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        if context is None or (repo / context).resolve() != repo.resolve() or not (repo / dockerfile).is_file():
            problems.append(f"{name} is not built from the repository's Dockerfile (build: {build!r})")
        images.add(services[name].get("image"))
    if len(images) > 1:
        problems.append(f"the Airflow services run different images: {sorted(map(str, images))}")
    return problems


def _mount_problems(compose: Mapping[str, Any], services: Mapping[str, Any], airflow: set[str], repo: Path,
                    efs_paths: list[str]) -> list[str]:
    problems = []
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, target in mounts_of(service):
            if is_bind(source) and not (repo / source).exists():
                problems.append(f"{name} mounts {source} (to {target}), which does not exist in the repository")
            if source and not is_bind(source) and source not in declared:
                problems.append(f"{name} mounts volume {source!r}, which is not declared under volumes:")
    for name in sorted(airflow):
        mounts = mounts_of(services[name])
        for folder, target in PROJECT_MOUNTS.items():
            if not any(is_bind(s) and (repo / s).resolve() == (repo / folder).resolve() and t == target
                       for s, t in mounts):
                problems.append(f"{name} does not mount ./{folder} at {target}")
        named = [(s, t) for s, t in mounts if s and not is_bind(s)]
        for path in efs_paths:
            if not any(_within(path, target) for _, target in named):
                problems.append(f"{name}: {path} (efs_root/staging_root of the configuration) is on no shared volume")
    return problems


def _host_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _wiring_problems(services: Mapping[str, Any], roles: Mapping[str, str], airflow: set[str]) -> list[str]:
    problems = []
    for name in sorted(airflow):
        env = environment_of(services[name])
        if env.get("AIRFLOW__CORE__EXECUTOR") != "CeleryExecutor":
            problems.append(f"{name}: AIRFLOW__CORE__EXECUTOR is {env.get('AIRFLOW__CORE__EXECUTOR')!r}, "
                            "not CeleryExecutor")
        checks = [("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgres", None),
                  ("AIRFLOW__CELERY__BROKER_URL", "redis", None),
                  ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "api-server", 8080)]
        for key, role, port in checks:
            host, actual_port = _host_port(env.get(key, ""))
            if role in roles and (host != roles[role] or (port and actual_port != port)):
                problems.append(f"{name}: {key} ({env.get(key)!r}) does not point at the {role} service")
        problems += _aws_connection_problems(name, env, services, roles)
    for key in SHARED_SETTINGS:
        values = {environment_of(services[name]).get(key) for name in airflow}
        if len(values) > 1:
            problems.append(f"{key} differs between the Airflow services")
    return problems


def _aws_connection_problems(name: str, env: Mapping[str, str], services: Mapping[str, Any],
                             roles: Mapping[str, str]) -> list[str]:
    try:
        connection = json.loads(env.get("AIRFLOW_CONN_AWS_DEFAULT", ""))
    except ValueError:
        return [f"{name}: AIRFLOW_CONN_AWS_DEFAULT is not a JSON connection: {env.get('AIRFLOW_CONN_AWS_DEFAULT')!r}"]
    if connection.get("conn_type") != "aws":
        return [f"{name}: AIRFLOW_CONN_AWS_DEFAULT has conn_type {connection.get('conn_type')!r}, not 'aws'"]
    endpoint = (connection.get("extra") or {}).get("endpoint_url", "")
    stand_in = roles.get("aws stand-in")
    if stand_in and _host_port(endpoint) != (stand_in, _listening_port(services[stand_in])):
        return [f"{name}: the aws_default connection's endpoint_url {endpoint!r} is not the {stand_in} service"]
    return []


def _dependency_problems(services: Mapping[str, Any], roles: Mapping[str, str], airflow: set[str]) -> list[str]:
    problems = []
    graph = {name: dict(service.get("depends_on") or {}) for name, service in services.items()}
    for name, needs in graph.items():
        problems += [f"{name} depends on {other}, which is not a service" for other in needs if other not in services]
    problems += [f"dependency cycle through {name}" for name in graph if _reaches(graph, name, name)]
    for name in sorted(airflow):
        needs = graph[name]
        for role, condition in (("postgres", "service_healthy"), ("redis", "service_healthy"),
                                ("init", "service_completed_successfully")):
            if role in roles and (needs.get(roles[role]) or {}).get("condition") != condition:
                problems.append(f"{name} does not wait for {roles[role]} ({condition})")
        if "healthcheck" not in services[name]:
            problems.append(f"{name} has no healthcheck")
    return problems


def _reaches(graph: Mapping[str, Mapping[str, Any]], start: str, goal: str) -> bool:
    seen, stack = set(), list(graph.get(start, {}))
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, {}))
    return False


# --------------------------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(arguments.split())))
    return result


def _env_pairs(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments) if "=" in part)


def dockerfile_problems(text: str, runtime_versions: list[str], airflow_version: str, python_version: str,
                        mount_targets: Iterable[str]) -> list[str]:
    """The image must be the official Airflow image of our version, install requirements.txt, and build
    exactly the repository's runtimes with `chroma-migrate runtime ensure` where no mount hides them."""
    steps = dockerfile_instructions(text)
    problems = []
    bases = [arguments for keyword, arguments in steps if keyword == "FROM"]
    wanted = f"apache/airflow:{airflow_version}-python{python_version}"
    if bases != [wanted]:
        problems.append(f"FROM is {bases}, expected [{wanted!r}] (Airflow {airflow_version}, the runtimes' Python)")
    args = {}
    for keyword, arguments in steps:
        if keyword == "ARG" and "=" in arguments:
            args.update(_env_pairs(arguments))
    listed = args.get("CHROMA_RUNTIMES", "").split()
    if listed != runtime_versions:
        problems.append(f"ARG CHROMA_RUNTIMES lists {listed}, the repository's runtime files are {runtime_versions}")
    position = {"env": None, "requirements": None, "ensure": None}
    root = None
    for index, (keyword, arguments) in enumerate(steps):
        if keyword == "ENV" and "CHROMA_MIGRATE_RUNTIMES" in _env_pairs(arguments):
            position["env"], root = index, _env_pairs(arguments)["CHROMA_MIGRATE_RUNTIMES"]
        if keyword == "RUN" and re.search(r"pip install .*-r \S*requirements\.txt", arguments):
            position["requirements"] = index
        if keyword == "RUN" and re.search(r"chroma-migrate runtime ensure \$\{?CHROMA_RUNTIMES\}?", arguments):
            position["ensure"] = index
    for what, index in position.items():
        if index is None:
            problems.append({"env": "no ENV CHROMA_MIGRATE_RUNTIMES=...",
                             "requirements": "no RUN pip install -r .../requirements.txt",
                             "ensure": "no RUN chroma-migrate runtime ensure ${CHROMA_RUNTIMES}"}[what])
    env, requirements, ensure = position["env"], position["requirements"], position["ensure"]
    if None not in (env, requirements, ensure) and not (env < ensure and requirements < ensure):
        problems.append("the runtimes are built before CHROMA_MIGRATE_RUNTIMES is set or requirements.txt installed")
    if root and any(_within(root, target) for target in mount_targets):
        problems.append(f"CHROMA_MIGRATE_RUNTIMES={root} is under a mounted folder, which would hide the runtimes")
    return problems
