"""Issue 15's first two findings through the real `chroma-migrate verify --json`, as a user ran it.

Before: a 9-byte pickle took the process to 2.1 GB before it failed; a label of -1 gave exit 1
(the "difference found" code) with a traceback and nothing on stdout. Now both exit 2 at once
with one JSON document naming the pickle, in a process of ordinary size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chroma_migrate_testkit.fuzz.mutations import apply_mutation
from tests.conftest import CLI, REPO, database_copy, tree_digest
from tests.fuzz.cases import load_cases

pytestmark = pytest.mark.integration

CASES = {c["name"]: c for c in load_cases()}
PEAK_MIB = 400


# A process exec'd from this one reports this one's resident size as its own peak (Linux keeps the
# larger high-water mark across exec), and a pytest worker grows with the tests it ran before. So a
# small launcher forks the CLI and writes the CLI's own peak (KiB) to the pipe it is given.
LAUNCHER = """
import os, sys
report, command = int(sys.argv[1]), sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(command[0], command)
_pid, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(*args: str) -> tuple[int, str, str, float]:
    """Exit code, stdout, stderr and the CLI process's own peak RSS in MiB."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(write_end), *CLI, *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                   pass_fds=(write_end,))
        os.close(write_end)
        stdout, stderr = process.communicate()
        peak_kib = int(os.read(read_end, 64) or 0)
    finally:
        os.close(read_end)
    return process.returncode, stdout, stderr, peak_kib / 1024


@pytest.mark.parametrize("name", ["issue15-pickle-long-binput-memo", "issue15-pickle-label-minus-one"])
def test_verify_json_exits_2_with_one_document_naming_the_pickle(name, tmp_path):
    case = CASES[name]
    db = database_copy(case["version"], tmp_path)
    apply_mutation(db, case["mutation"])
    before = tree_digest(db)
    code, stdout, stderr, peak = run_measured("verify", "--json", str(db), str(db))
    assert code == 2, (stdout, stderr)
    document = json.loads(stdout)  # exactly one JSON document
    assert document["file"].endswith("index_metadata.pickle") and document["kind"] == case["expect"].split(":")[1]
    assert document["fix"]
    assert "Traceback" not in stderr
    assert peak < PEAK_MIB, f"peak {peak:.0f} MiB"
    assert tree_digest(db) == before
