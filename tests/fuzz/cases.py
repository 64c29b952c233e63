"""The committed regression cases: each a JSON file naming a source version, a mutation and the outcome due."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASES = Path(__file__).resolve().parent / "cases"


def load_cases() -> list[dict[str, Any]]:
    return [{"name": path.stem, **json.loads(path.read_text())} for path in sorted(CASES.glob("*.json"))]
