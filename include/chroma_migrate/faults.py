"""Named fault-injection points, off unless CHROMA_MIGRATE_FAULT names one.

The fault tests set `CHROMA_MIGRATE_FAULT=load_batch:2` (a point and a batch index) to make
that step fail once it is reached, the way a crash there would, and then check that a
rerun converges. Nothing happens when the variable is unset.
"""

from __future__ import annotations

import os

FAULT_ENV = "CHROMA_MIGRATE_FAULT"


class InjectedFault(RuntimeError):
    """Raised at a fault point named in $CHROMA_MIGRATE_FAULT."""


def fault_point(point: str, index: int | None = None) -> None:
    wanted = os.environ.get(FAULT_ENV, "")
    if wanted and wanted == (point if index is None else f"{point}:{index}"):
        raise InjectedFault(f"fault injected at {wanted} ({FAULT_ENV})")
