"""Declared readers: which of them can open a migrated snapshot, and what publishing may break.

The gate itself (reader_gate.py) smoke-reads a database with each reader's own chromadb; this
module is the rule around it that the CLI and the DAG share: reader versions are resolved
(any release from 0.4.15 on) before any work, the verdicts travel in the verification report,
and a snapshot some declared reader cannot read is published only when the operator named
that reader as allowed to break.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError
from chroma_migrate.reader_gate import ReaderGateReport, ReaderRow, check_readers, validate_readers
from chroma_migrate.runtime_resolution import check_release, resolve_version


class ReadersWouldBreakError(MigrationError):
    """Publishing would hand a snapshot to a declared reader that cannot read it."""


def parse_reader_args(values: Sequence[str]) -> dict[str, str]:
    """`NAME=VERSION` options (the CLI's repeatable --reader) as a readers mapping."""
    readers: dict[str, str] = {}
    for value in values:
        name, sep, version = value.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise MigrationError(f"--reader {value!r} is not NAME=VERSION.",
                                 "Name the service and the chromadb release it pins, e.g. --reader search=1.3.2.")
        if name.strip() in readers:
            raise MigrationError(f"--reader names {name.strip()!r} twice.", "Give each reader once.")
        readers[name.strip()] = version.strip()
    return readers


def prepare_readers(readers: Mapping[str, str], log: Callable[[str], None]) -> dict[str, str]:
    """Refuse a malformed mapping, then resolve every reader's release: all before any work."""
    validate_readers(readers)
    for name, version in readers.items():
        try:
            check_release(version)
        except MigrationError as exc:
            raise MigrationError(f"Reader {name!r}: {exc.problem}", exc.fix) from exc
    return {name: resolve_version(version, log=log).version for name, version in readers.items()}


def gate_readers(db: Path, readers: Mapping[str, str], work_dir: Path) -> dict[str, Any] | None:
    """Every declared reader's verdict on `db` as report JSON (None when none is declared)."""
    if not readers:
        return None
    return check_readers(db, readers, work_dir).to_dict()


def breaking_readers(readers_report: Mapping[str, Any] | None) -> list[str]:
    return list((readers_report or {}).get("breaking") or [])


def allowed_breakage(readers_report: Mapping[str, Any] | None, allowed: Sequence[str]) -> list[str]:
    """The readers a publish breaks, once each is allowed by name; otherwise refuse, naming them."""
    breaking = breaking_readers(readers_report)
    refused = [name for name in breaking if name not in allowed]
    if refused:
        rows = {row["reader"]: row for row in readers_report["readers"]}
        why = "; ".join(f"{name} (chromadb {rows[name]['version']}): {rows[name]['reason']}" for name in refused)
        raise ReadersWouldBreakError(
            f"Publishing refused: {len(refused)} declared reader(s) cannot read the migrated snapshot: {why}.",
            f"Upgrade {', '.join(refused)} to a chromadb release that reads it first, then publish; or trigger "
            f"again with Param allow_breaking_readers = {sorted(set(breaking))} to publish anyway.")
    return breaking


def render_readers_text(readers_report: Mapping[str, Any] | None) -> str:
    if not readers_report:
        return ""
    report = _report_from_dict(readers_report)
    lines = ["readers (each declared reader's own chromadb opens a copy of the migrated database):",
             *(f"  {line}" for line in report.render_text().splitlines())]
    if report.breaking():
        lines.append(f"  upgrade first: {', '.join(report.breaking())}")
    return "\n".join(lines)


def render_readers_markdown(readers_report: Mapping[str, Any] | None) -> list[str]:
    """The approval body's section: the table, and who must be upgraded before the swap."""
    if not readers_report:
        return []
    report = _report_from_dict(readers_report)
    lines = ["", "## Readers", "Each declared reader's chromadb opened a copy of the migrated snapshot "
             "and read counts, records by id and its own vectors back:", "", report.render_markdown()]
    if report.breaking():
        lines += ["", f"**Must be upgraded before the swap:** {', '.join(report.breaking())}. Publishing "
                  "refuses unless the run's Param allow_breaking_readers names them."]
    return lines


def _report_from_dict(readers_report: Mapping[str, Any]) -> ReaderGateReport:
    rows = [ReaderRow(r["reader"], r["version"], r["can_read"], r["reason"]) for r in readers_report["readers"]]
    return ReaderGateReport(str(readers_report.get("db", "")), rows)
