"""Named fault-injection points, off unless CHROMA_MIGRATE_FAULT names one.

The fault tests set `CHROMA_MIGRATE_FAULT=point[:index][:action]` to make a step fail where
a crash, a stall or a lost race would hit it, and then check that the live state is intact
and that a rerun converges. Several specs may be given, separated by commas.

- `point` names a place in the code (`FAULT_POINTS` lists them); `index` (a batch number, an
  object count) narrows it, and a spec without one matches every index.
- `action` is `raise` (default: an InjectedFault, as a failing call would), `kill` (SIGKILL
  of the current process, as the OOM killer or a lost machine would) or `pause` (write
  `<spec>.reached` into $CHROMA_MIGRATE_FAULT_DIR and wait until the test creates
  `<spec>.resume`, so it can act, e.g. steal the lock, at exactly that moment).

When the variable is unset a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "CHROMA_MIGRATE_FAULT"
FAULT_DIR_ENV = "CHROMA_MIGRATE_FAULT_DIR"
ACTIONS = ("raise", "kill", "pause")
PAUSE_LIMIT_S = 600.0

FAULT_POINTS = {
    "backup_copy": "after `index` objects of the backup copy (server-side copies)",
    "export_batch": "when export batch `index` starts",
    "export_batch_written": "after export batch `index` wrote its files, before the ledger records it",
    "load_batch": "when load batch `index` starts",
    "rebuild_exported": "in `chroma-migrate migrate`, after the rebuild's export wrote its files, before the load",
    "transplant_written": "after the transplant wrote the new database, before the target version reads it back",
    "load_batch_written": "after load batch `index` wrote into the new database, before the ledger records it",
    "upload_object": "after `index` objects of the new snapshot were uploaded (its manifest not yet)",
    "s3_pointer_put": "after the S3 pointer was checked, right before the lock check and the conditional PUT",
    "between_pointers": "after the S3 pointer names the new version, before the EFS pointer switch",
}


class InjectedFault(RuntimeError):
    """Raised at a fault point named in $CHROMA_MIGRATE_FAULT."""


@dataclass(frozen=True)
class FaultSpec:
    text: str
    point: str
    index: str | None
    action: str

    def matches(self, point: str, index: int | str | None) -> bool:
        return self.point == point and (self.index is None or self.index == str(index))


def parse_faults(value: str) -> list[FaultSpec]:
    """The specs in a $CHROMA_MIGRATE_FAULT value; a typo fails loudly instead of never firing."""
    specs = []
    for text in filter(None, (part.strip() for part in value.split(","))):
        parts = text.split(":")
        action = parts.pop() if parts[-1] in ACTIONS else "raise"
        if len(parts) not in (1, 2) or parts[0] not in FAULT_POINTS or not all(parts):
            raise InjectedFault(f"{FAULT_ENV} entry {text!r} is not point[:index][:action]: points are "
                                f"{', '.join(FAULT_POINTS)}; actions are {', '.join(ACTIONS)}.")
        specs.append(FaultSpec(text, parts[0], parts[1] if len(parts) == 2 else None, action))
    return specs


def fault_point(point: str, index: int | str | None = None) -> None:
    """Act as the first spec in $CHROMA_MIGRATE_FAULT that names this point (and index) says."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    for spec in parse_faults(wanted):
        if spec.matches(point, index):
            _act(spec)
            return


def _act(spec: FaultSpec) -> None:
    if spec.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: the signal cannot be caught
    if spec.action == "pause":
        _pause(spec)
        return
    raise InjectedFault(f"fault injected at {spec.text} ({FAULT_ENV})")


def pause_files(spec_text: str, directory: Path) -> tuple[Path, Path]:
    """The `reached` file a paused point writes and the `resume` file it waits for."""
    safe = spec_text.replace(":", "-")
    return directory / f"{safe}.reached", directory / f"{safe}.resume"


def _pause(spec: FaultSpec) -> None:
    folder = os.environ.get(FAULT_DIR_ENV)
    if not folder:
        raise InjectedFault(f"{FAULT_ENV} asks to pause at {spec.text} but {FAULT_DIR_ENV} is not set.")
    reached, resume = pause_files(spec.text, Path(folder))
    reached.write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not resume.exists():
        if time.monotonic() > deadline:
            raise InjectedFault(f"paused at {spec.text} for {PAUSE_LIMIT_S:.0f} s and nobody created {resume}.")
        time.sleep(0.05)
