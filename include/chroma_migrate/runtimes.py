"""Build and find one virtual environment per chromadb version (a "runtime").

Two chromadb versions cannot share an interpreter, so each version the engine must read
or write gets its own environment, built once from its pinned file and cached. Building
is guarded by a file lock and finished by a rename, so concurrent `ensure` calls (several
Airflow tasks on one machine) build it once and never see a half-built environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from chroma_migrate.errors import MigrationError
from chroma_migrate.file_lock import file_lock
from chroma_migrate.versions import ChromaVersion, forget_runtime_files, get_version, supported_versions

RUNTIMES_ENV = "CHROMA_MIGRATE_RUNTIMES"
REPO_ROOT = Path(__file__).resolve().parents[2]
COMPLETE_MARKER = ".chroma-migrate-complete"


def runtimes_root() -> Path:
    """`$CHROMA_MIGRATE_RUNTIMES`, else `.runtimes/` at the repository root."""
    return Path(os.environ.get(RUNTIMES_ENV) or REPO_ROOT / ".runtimes")


@dataclass(frozen=True)
class Runtime:
    version: ChromaVersion
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def is_built(self) -> bool:
        marker = self.path / COMPLETE_MARKER
        return marker.is_file() and marker.read_text().strip() == requirements_digest(self.version)


def requirements_digest(version: ChromaVersion) -> str:
    return hashlib.sha256(version.requirements.read_bytes()).hexdigest()


def runtime_for(version: str) -> Runtime:
    chroma_version = get_version(version)
    return Runtime(chroma_version, runtimes_root() / f"chromadb-{chroma_version.version}")


def build_lock(root: Path, version: str) -> AbstractContextManager[None]:
    return file_lock(root / f".chromadb-{version}.lock")


def uv_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "uv"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("uv")


def install_commands(staging: Path, requirements: Path) -> list[list[str]]:
    uv = uv_executable()
    python = staging / "bin" / "python"
    if uv:
        return [
            [uv, "venv", "--quiet", "--python", sys.executable, str(staging)],
            [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
        ]
    return [
        [sys.executable, "-m", "venv", str(staging)],
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
    ]


def ensure_runtime(version: str, *, log=print) -> Runtime:
    """Return a built runtime for `version`, building it first if needed (idempotent)."""
    runtime = runtime_for(version)
    if runtime.is_built():
        return runtime
    root = runtimes_root()
    with build_lock(root, runtime.version.version):
        if runtime.is_built():
            return runtime
        staging = root / f".building-chromadb-{runtime.version.version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        log(f"building runtime chromadb {runtime.version.version} in {runtime.path}")
        for command in install_commands(staging, runtime.version.requirements):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise MigrationError(
                    f"Building the chromadb {runtime.version.version} runtime failed "
                    f"({' '.join(command[:3])}...): {result.stderr.strip()[-1500:]}",
                    "Check that the package registry is reachable and the pinned file installs on "
                    "Python 3.11, then run `chroma-migrate runtime ensure` again.",
                )
        (staging / COMPLETE_MARKER).write_text(requirements_digest(runtime.version) + "\n")
        shutil.rmtree(runtime.path, ignore_errors=True)
        staging.rename(runtime.path)
    return runtime


def list_runtimes() -> list[dict[str, object]]:
    """Every version with a runtime file, read afresh (another process may have resolved one)."""
    forget_runtime_files()
    rows = []
    for version in supported_versions():
        runtime = runtime_for(version.version)
        rows.append({"version": version.version, "built": runtime.is_built(), "path": str(runtime.path)})
    return rows
