"""One fuzz case: copy a seed, damage it, read it in a forked child under memory and time bounds, judge it.

The child runs what the CLI runs on a source: `inspect --json` through `cli.main` (stdout and
stderr captured at the file-descriptor level), then the native reads `verify` makes (the
integrity check, every record in batches, the index health check, a walk of the hnsw graph
for nearest neighbours) under the CLI's own exit-code contract (`exit_contract.run_command`).
The parent judges: exit 0 with the right records, or exit 2 with a kind naming a file; anything
else (another code, a traceback, a kill by the memory or time bound, a changed input byte)
is a finding.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Imported here, in the parent, so that each forked case starts warm (the CLI's imports take a second).
from chroma_migrate.cli import main as cli_main
from chroma_migrate.exit_contract import run_command
from chroma_migrate.native import check_integrity, open_database
from chroma_migrate.native.hnsw_health import check_index_health
from chroma_migrate.native.nearest import nearest_ids
from chroma_migrate_testkit.fuzz.mutations import Mutation, apply_mutation

MEMORY_BOUND = 2 << 30  # bytes of address space a case may add to the harness's own
TIME_BOUND = 30.0  # seconds a case may take
BATCH = 97  # records per batch read, as the reader's own tests use
QUERIES = 3  # nearest-neighbour queries per collection


@dataclass
class CaseResult:
    version: str
    target: str
    mutation: Mutation
    outcome: str  # "ok_same", "ok_changed", "refused:<kind>", "index_health", or a finding's name
    finding: str | None = None  # why this case breaks the contract; None when it keeps it
    steps: dict[str, Any] = field(default_factory=dict)
    step_outcomes: dict[str, str] = field(default_factory=dict)  # "inspect" and "read": "ok" or "refused:<kind>"
    seconds: float = 0.0
    peak_rss_mib: float = 0.0  # the child's peak above its size at the fork (its own use)
    digest: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(path).rglob("*")) if p.is_file()}


def records_digest(ids: list[str], embeddings: np.ndarray, documents: list, uris: list, metadatas: list) -> str:
    """Order-independent digest of one collection's records (id, embedding bytes, document, uri, metadata)."""
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable") if ids else []
    h = hashlib.sha256()
    for i in order:
        h.update(json.dumps([ids[i], documents[i], uris[i], metadatas[i]], ensure_ascii=False).encode())
        h.update(np.ascontiguousarray(embeddings[i], dtype="<f4").tobytes())
    return h.hexdigest()[:32]


def native_read(db: Path) -> tuple[dict[str, Any], str, int]:
    """What verify reads of a source, natively: integrity, all records, index health, a graph walk."""
    counts = check_integrity(db)
    digests, health, nearest = {}, {}, {}
    with open_database(db) as native:
        for collection in native.collections():
            ids, vectors, documents, uris, metadatas = [], [], [], [], []
            for batch in collection.iter_batches(BATCH):
                if not batch.ids:
                    continue
                ids += batch.ids
                vectors.append(np.asarray(batch.embeddings, dtype=np.float32).reshape(len(batch.ids), -1))
                documents += batch.documents
                uris += batch.uris
                metadatas += batch.metadatas
            embeddings = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
            digests[collection.name] = records_digest(ids, embeddings, documents, uris, metadatas)
            found = check_index_health(collection, collection.name)
            health[collection.name] = found.problems
            if len(embeddings):
                queries = embeddings[np.linspace(0, len(embeddings) - 1, QUERIES).astype(int)]
                nearest[collection.name] = nearest_ids(collection, queries, 5)
    return {"counts": counts, "digests": digests, "health": health, "nearest": nearest}, "", 0


def _child(db: Path, out: Path, memory_bound: int) -> None:
    """In the forked child: bound memory, run both steps, write what happened; never returns."""
    code = 70
    try:
        _start_file(out).write_text(str(_resident_bytes()))  # what the fork mapped, before the case's own work
        soft = _address_space() + memory_bound
        resource.setrlimit(resource.RLIMIT_AS, (soft, soft))

        stdout, stderr = out.with_suffix(".stdout"), out.with_suffix(".stderr")
        with open(stdout, "w") as o, open(stderr, "w") as e:
            saved = os.dup(1), os.dup(2), sys.stdout, sys.stderr
            os.dup2(o.fileno(), 1)  # what C code writes, too
            os.dup2(e.fileno(), 2)
            sys.stdout, sys.stderr = o, e  # under pytest, sys.stdout is its capture, not fd 1
            try:
                inspect_code = cli_main(["inspect", "--json", str(db)])
            finally:
                o.flush()
                e.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                sys.stdout, sys.stderr = saved[2], saved[3]
        document, _text, read_code = run_command("read", [db], lambda: native_read(db), lambda report: "")
        out.write_text(json.dumps({"inspect": {"code": inspect_code, "stdout": stdout.read_text(errors="replace"),
                                               "stderr": stderr.read_text(errors="replace")[-4000:]},
                                   "read": {"code": read_code, "document": document}}, default=str))
        code = 0
    except BaseException as exc:  # the harness itself failed: the parent reports it as a finding
        try:
            out.write_text(json.dumps({"harness_error": f"{type(exc).__name__}: {exc}"}))
        finally:
            code = 71
    os._exit(code)


def _status_bytes(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _address_space() -> int:
    return _status_bytes("VmSize")


def _resident_bytes() -> int:
    return _status_bytes("VmRSS")


def _start_file(out: Path) -> Path:
    return out.with_suffix(".start-rss")


def _own_peak_mib(usage: Any, start_file: Path) -> float:
    """The child's peak above its size at the start: a forked child begins with the harness's pages
    mapped, and a pytest worker grows with the tests it ran before."""
    if usage is None:
        return 0.0
    start = int(start_file.read_text() or 0) if start_file.is_file() else 0
    return round(max(0, usage.ru_maxrss * 1024 - start) / 2**20, 1)


Oracle = Callable[[Path, str], "dict[str, str] | str | None"]  # None: not checked (its budget is spent)


def run_case(seed: Path, version: str, mutation: Mutation, work: Path, baseline: dict[str, str] | None,
             *, memory_bound: int = MEMORY_BOUND, time_bound: float = TIME_BOUND,
             oracle: Oracle | None = None) -> CaseResult:
    """Copy the seed into `work`, damage it, read it in a child, and judge the result (the copy is removed).

    With `oracle` (oracle.writer_digests), a case whose records differ from the seed's is checked
    against what the writing version itself returns for the damaged copy."""
    db = Path(work) / "db"
    shutil.rmtree(db, ignore_errors=True)
    shutil.copytree(seed, db, ignore=shutil.ignore_patterns(".complete"))
    result = CaseResult(version, mutation["target"], mutation, "ok_same")
    try:
        apply_mutation(db, mutation)
    except (KeyError, ValueError, IndexError, sqlite3.Error) as exc:
        result.outcome = "not_applicable"
        result.steps = {"why": f"{type(exc).__name__}: {exc}"}
        return result
    before = tree_digest(db)
    out = Path(work) / "result.json"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    _start_file(out).unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:
        _child(db, out, memory_bound)
    status, usage = _wait(pid, time_bound)
    result.seconds = round(time.monotonic() - started, 3)
    result.peak_rss_mib = _own_peak_mib(usage, _start_file(out))
    _judge(result, status, out, before, db, baseline)
    if result.outcome == "ok_changed" and oracle is not None:
        _ask_writer(result, oracle(db, version))
    shutil.rmtree(db, ignore_errors=True)
    return result


def _wait(pid: int, time_bound: float) -> tuple[int | str, Any]:
    deadline = time.monotonic() + time_bound
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _done, _status, usage = os.wait4(pid, 0)
            return "timeout", usage
        time.sleep(0.01)


def _judge(result: CaseResult, status: int | str, out: Path, before: dict[str, str], db: Path,
           baseline: dict[str, str] | None) -> None:
    def finding(name: str, why: str) -> None:
        result.outcome, result.finding = name, why

    if status == "timeout":
        return finding("hang", f"the case ran past its {TIME_BOUND:.0f} s bound and was killed")
    if os.WIFSIGNALED(status):
        return finding("crash", f"the reader died by signal {signal.Signals(os.WTERMSIG(status)).name}")
    if not out.is_file():
        return finding("crash", f"the child exited {os.WEXITSTATUS(status)} without a result")
    steps = json.loads(out.read_text())
    result.steps = steps
    if "harness_error" in steps:
        return finding("harness_error", steps["harness_error"])
    if tree_digest(db) != before:
        return finding("modified_input", "a byte of the input changed while it was read")
    inspect, read = steps["inspect"], steps["read"]
    problem = _contract_problem("inspect", inspect["code"], inspect["stdout"], inspect["stderr"])
    if problem:
        return finding(*problem)
    document = read["document"]
    problem = _contract_problem("read", read["code"], json.dumps(document), "")
    if problem:
        return finding(*problem)
    for name, step in (("inspect", inspect), ("read", read)):
        parsed = json.loads(step["stdout"]) if "stdout" in step else step["document"]
        result.step_outcomes[name] = f"refused:{parsed['kind']}" if step["code"] == 2 else "ok"
    refusals = [o for o in result.step_outcomes.values() if o != "ok"]
    if refusals:
        result.outcome = refusals[0]
        return None
    if any(document["health"].values()):
        result.outcome = "index_health"
        return None
    result.digest = document["digests"]
    if baseline is not None and document["digests"] != baseline:
        result.outcome = "ok_changed"
    return None


def _ask_writer(result: CaseResult, answer: dict[str, str] | str | None) -> None:
    if answer is None:
        return
    if isinstance(answer, str):
        result.outcome = "ok_writer_refuses"
        result.steps["oracle"] = answer
    elif answer == result.digest:
        result.outcome = "ok_writer_agrees"
    else:
        mine = result.digest or {}
        differ = sorted(n for n in set(answer) | set(mine) if answer.get(n) != mine.get(n))
        result.outcome, result.finding = "wrong_answer", f"the writing version's get() differs in {differ}"


def _contract_problem(step: str, code: int, stdout: str, stderr: str) -> tuple[str, str] | None:
    """The CLI's contract for one step: exit 0 or 2, one JSON document, no traceback, a kind naming a file."""
    if "Traceback (most recent call last)" in stderr:
        return "traceback", f"{step}: a traceback on stderr: {stderr[-600:]}"
    try:
        document = json.loads(stdout)
    except ValueError:
        return "not_one_json_document", f"{step}: stdout is not one JSON document: {stdout[:300]!r}"
    if code not in (0, 2):
        return f"exit_{code}", f"{step}: exit code {code}: {str(document)[:400]}"
    if code == 2:
        if document.get("kind") == "unexpected_error":
            return f"unexpected:{document.get('exception')}", f"{step}: {document.get('error')}"
        if not document.get("kind") or not document.get("file"):
            return "refused_without_kind", f"{step}: exit 2 without a kind naming the file: {document}"
    return None
