"""Progress on long work: the workers' progress file, the CLI's bars on a terminal (and only there),
the DAG tasks' steady progress lines."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from chroma_migrate.inspection import describe_database
from chroma_migrate.phases import PhaseLog
from chroma_migrate.pipeline import export_size
from chroma_migrate.progress import ProgressFileReader, report_progress, steady_log, watched_progress_file
from chroma_migrate.progress_bars import PhaseBars
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import run_cli
from tests.engine.terminal import run_on_terminal

SPEC = receipt_spec(records=200, big_dim=None)
SOURCE_VERSION = "1.0.20"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PHASES = ("rebuild: export", "rebuild: load", "verify")


def _migrate_args(source: Path, out: Path, *extra: str) -> list[str]:
    return ["migrate", str(source), str(out), "--target", "1.5.9", "--strategy", "rebuild", "--batch-size", "50",
            *extra]


@pytest.mark.integration
def test_terminal_shows_a_bar_per_phase_and_then_the_result(copy_of, tmp_path):
    source = copy_of(SOURCE_VERSION, SPEC)
    total = sum(c.records for c in describe_database(source).collections)
    shown, _, code = run_on_terminal(_migrate_args(source, tmp_path / "out"), stdout_to_terminal=True)
    assert code == 0, shown
    assert "\x1b[" in shown  # drawn, not printed
    text = ANSI.sub("", shown).replace("\r", "\n")
    for phase in PHASES:
        assert re.search(rf"{re.escape(phase)}\s+\S*━.*{total:,}/{total:,} records", text), (phase, text[-3000:])
    assert re.search(rf"rebuild: load\s+\S*━.*\b0/{total:,} records", text)  # it started at nothing
    last_bar = text.rindex("━")
    assert text.index("verification PASSED", last_bar) > text.index("migrated ", last_bar) > last_bar


@pytest.mark.integration
def test_json_on_a_terminal_is_one_document_and_no_bars(copy_of, tmp_path):
    source = copy_of(SOURCE_VERSION, SPEC)
    shown, piped, code = run_on_terminal(_migrate_args(source, tmp_path / "out", "--json"),
                                          stdout_to_terminal=False)
    assert code == 0, shown + piped
    document = json.loads(piped)  # exactly one document: json.loads refuses anything after it
    assert document["strategy"] == "rebuild" and document["verification"]["passed"]
    assert "\x1b" not in piped and "━" not in piped
    assert "━" not in shown and "\x1b[" not in shown  # nothing drawn on the terminal either


@pytest.mark.integration
def test_a_pipe_gets_the_plain_phase_lines(copy_of, tmp_path):
    source = copy_of(SOURCE_VERSION, SPEC)
    result = run_cli(*_migrate_args(source, tmp_path / "out"), check=True)
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    assert "━" not in result.stderr
    for phase in PHASES:
        assert f"[{phase}] started" in result.stderr
    assert "verification PASSED" in result.stdout


def test_progress_file_sums_what_every_process_appended(tmp_path):
    """Several processes append to one file; the reader gets each complete line once, never a partial one."""
    path = tmp_path / "progress.txt"
    writer = ("import sys\nfrom chroma_migrate.progress import report_progress\n"
              "for _ in range(200):\n    report_progress(sys.argv[1], 7)\n")
    reader = ProgressFileReader(path)
    assert reader.read_new() == 0  # not written yet
    children = [subprocess.Popen([sys.executable, "-c", writer, str(path)]) for _ in range(3)]
    seen = 0
    while any(child.poll() is None for child in children):
        seen += reader.read_new()
    seen += reader.read_new()
    assert seen == 3 * 200 * 7
    with open(path, "a") as handle:
        handle.write("5")  # a line still being written
    assert reader.read_new() == 0
    with open(path, "a") as handle:
        handle.write("0\n")
    assert reader.read_new() == 50
    report_progress(None, 10)  # no file asked for: nothing to do
    report_progress(str(path), 0)
    assert reader.read_new() == 0


def test_watched_file_is_polled_while_the_work_runs_and_read_once_more_at_the_end(tmp_path):
    heard: list[int] = []
    with watched_progress_file(heard.append, tmp_path, interval_s=0.05) as name:
        report_progress(name, 3)
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        assert heard == [3]  # heard while the block still runs
        report_progress(name, 4)
    assert sum(heard) == 7  # the last report is not lost
    assert not Path(name).exists()
    with watched_progress_file(None) as nothing:
        assert nothing is None  # nobody listens: workers are given no file


def test_steady_log_reports_done_of_total_and_rate_at_each_interval():
    lines: list[str] = []
    with steady_log(lines.append, "Loading words #0", 5000, interval_s=0.05) as done:
        done.add(1200)
        time.sleep(0.3)
        done.add(800)
        time.sleep(0.2)
    assert len(lines) >= 4
    assert re.fullmatch(r"Loading words #0: 1,200 of 5,000 records in \d+s \([\d,]+ records/s\)", lines[0])
    assert lines[-1].startswith("Loading words #0: 2,000 of 5,000 records")
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count  # stopped with the block


def test_export_size_is_the_batch_share_of_its_collection(tmp_path):
    plan = {"batch_size": 50}
    batch = {"kind": "rebuild", "records": 120, "batch": {"index": 0, "low": None, "high": "x"}}
    assert export_size(tmp_path, plan, batch) == (50, "records")
    assert export_size(tmp_path, plan, {**batch, "batch": {"index": 2, "low": "y", "high": None}}) == (20, "records")
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "chroma.sqlite3").write_bytes(b"x" * 1000)
    paths = type("Paths", (), {"source": tmp_path / "source"})()
    assert export_size(paths, plan, {"kind": "upgrade"}) == (1000, "bytes")


def test_bars_draw_each_phase_with_its_counts():
    screen = io.StringIO()
    with PhaseBars(Console(file=screen, force_terminal=True, width=120)) as bars:
        phases = PhaseLog(bars.log, display=bars)
        with phases.phase("upgrade: copy", total=2_000_000, unit="bytes"):
            phases.progress(2_000_000)
        with phases.phase("upgrade: open with target"):
            pass
        with phases.phase("rebuild: load", total=300):
            for _ in range(3):
                phases.progress(100)
    text = ANSI.sub("", screen.getvalue())
    assert "[rebuild: load] started" in text
    assert re.search(r"upgrade: copy\s+━+\s+2\.0 MB/2\.0 MB", text)
    assert re.search(r"rebuild: load\s+━+\s+300/300 records", text)
    assert re.search(r"upgrade: open with target\s+━+\s+took", text)
    assert phases.to_list()[2]["detail"] == {}  # the bar's total is not part of the report
