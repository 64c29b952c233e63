"""The target version itself reads back what the native writer wrote, and keeps writing to it.

On a copy (every open by chromadb writes to the file, and the probe's writes must not reach
the result), one process of the target's runtime counts, reads every record through its own
paged get() into the fingerprint the writer took from the source, queries each sampled record,
and makes one add, one upsert and one delete; a second process reopens the copy and must see
those writes. It runs beside verification (`migrate._transplant`), and is independent of the
native reader verification uses: chromadb's own code reads the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from chroma_migrate.errors import TransplantFailedError
from chroma_migrate.transplant.database_writer import WrittenCollection
from chroma_migrate.transplant.probe_record import PROBE_DOCUMENT
from chroma_migrate.worker_client import run_worker


def _readable_problems(written: WrittenCollection, answer: dict[str, Any], dimension: int | None) -> list[str]:
    where = f"collection {written.name!r}"
    problems = []
    if answer["count"] != written.records:
        problems.append(f"{where}: the target's count() is {answer['count']}, the writer wrote {written.records}")
    if answer["fingerprint"] != written.fingerprint:
        problems.append(f"{where}: the target's get() returns {answer['fingerprint']['records']} records whose ids, "
                        f"documents and metadata differ from the source's {written.records}")
    if answer["with_embedding"] != written.records or (written.records and answer["dimension"] != dimension):
        problems.append(f"{where}: the target's get() returns {answer['with_embedding']} embeddings of dimension "
                        f"{answer['dimension']} for {written.records} records of dimension {dimension}")
    if written.sample and answer.get("count_after_writes") != written.records:
        problems.append(f"{where}: after one add and one delete the count is {answer.get('count_after_writes')}, "
                        f"not {written.records}")
    return problems


def _reopened_problems(name: str, expected_count: int, answer: dict[str, Any]) -> list[str]:
    where = f"collection {name!r} reopened"
    problems = []
    if answer["count"] != expected_count:
        problems.append(f"{where}: count() is {answer['count']}, {expected_count} after the probe's writes")
    if answer["probe_document"] != PROBE_DOCUMENT:
        problems.append(f"{where}: the upserted probe reads back as {answer['probe_document']!r}")
    if answer["deleted_still_there"]:
        problems.append(f"{where}: the record deleted by the probe is still returned")
    if not answer["probe_found_by_query"]:
        problems.append(f"{where}: a query by the probe's own vector does not return it")
    return problems


def prove_transplant(target_version: str, target_db: Path, written: list[WrittenCollection],
                     dimensions: dict[str, int | None], scratch: Path, page: int) -> dict[str, Any]:
    """Raise TransplantFailedError naming every problem; return what the target saw."""
    copy = scratch / "transplant-proof"
    shutil.rmtree(copy, ignore_errors=True)
    try:
        shutil.copytree(target_db, copy)
        expected = {item.name: {"sample": item.sample} for item in written}
        readable = run_worker(target_version, "prove_readable", {"path": str(copy), "expected": expected,
                                                                 "page": page}).data
        problems = [p for item in written for p in _readable_problems(item, readable[item.name], dimensions[item.name])]
        probes = {name: answer["probe"] for name, answer in readable.items() if answer.get("probe")}
        reopened = run_worker(target_version, "prove_reopened", {"path": str(copy), "probes": probes}).data \
            if probes else {}
        records = {item.name: item.records for item in written}
        problems += [p for name, answer in reopened.items() for p in _reopened_problems(name, records[name], answer)]
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    if problems:
        raise TransplantFailedError("The target version refused the transplanted database: " + "; ".join(problems[:6]),
                                    "Nothing was published; the migration falls back to a rebuild through chromadb.")
    return {"collections": {name: {"count": answer["count"], "own_hits": sum(answer["own_hits"].values()),
                                   "queried": len(answer["own_hits"])} for name, answer in readable.items()},
            "reopened": sorted(reopened)}
