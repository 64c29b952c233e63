"""Read docker-compose.yaml the way `docker compose` does, without a Docker engine.

YAML anchors and merge keys (`<<: *airflow-common`) are resolved by the YAML loader; then every
string value is interpolated from a `.env`-style mapping, following the Compose specification's
rules: `$$` is a literal `$`; `${VAR}` and `$VAR`; `${VAR:-default}` / `${VAR-default}`;
`${VAR:?error}` / `${VAR?error}` refuse to start; `${VAR:+other}` / `${VAR+other}`.
The colon forms treat an empty value like an unset one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset (or empty): compose refuses to start with message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def referenced_variables(text: str) -> set[str]:
    """Every variable name a compose file refers to (escaped `$$` excluded)."""
    return {m["braced"] or m["named"] for m in _REFERENCE.finditer(text) if not m["escaped"]}


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        present = name in variables and (variables[name] != "" or not operator.startswith(":"))
        if operator.endswith("-"):
            return variables[name] if present else interpolate(argument, variables)
        if operator.endswith("?"):
            if not present:
                raise MissingVariable(name, argument or "required variable is missing")
            return variables[name]
        if operator.endswith("+"):
            return interpolate(argument, variables) if present else ""
        return variables.get(name, "")

    return _REFERENCE.sub(substitute, value)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=value` lines; `#` comments; single quotes literal, double quotes unquoted; unquoted values
    end before ` #`."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        if not separator or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise ValueError(f"{path}:{number}: not a KEY=value line: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name.strip()] = value
    return values


def load_compose(path: Path, variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as a dict; interpolated with `variables` when given (else left as written)."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path} does not hold a mapping")
    return document if variables is None else _interpolate_tree(document, variables)
