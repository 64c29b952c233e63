"""The CLI's exit-code contract for failures nobody anticipated (no chromadb needed).

0 done, 1 only for a verified difference, 2 for everything else: an exception from a bug
still ends with exit 2, names the command and the file being read, asks for a bug report
with that file, prints no traceback, and under --json prints exactly one JSON document.
"""

from __future__ import annotations

import json

import pytest

from chroma_migrate import cli
from chroma_migrate.errors import MigrationError, VerificationFailedError
from chroma_migrate.exit_contract import BUG_FIX
from chroma_migrate.native.reading import note_reading


def _boom(file: str, exc: BaseException):
    def handler(_args):
        note_reading(file)
        raise exc
    return handler


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), OverflowError("out of bounds for uint64"),
                                 MemoryError(), RecursionError("maximum recursion depth exceeded"),
                                 KeyError("id_to_label")])
def test_an_unexpected_exception_exits_2_with_one_json_document(monkeypatch, capsys, tmp_path, exc):
    damaged = tmp_path / "db" / "seg" / "index_metadata.pickle"
    monkeypatch.setitem(cli.HANDLERS, "inspect", _boom(str(damaged), exc))
    assert cli.main(["inspect", "--json", str(tmp_path / "db")]) == 2
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["kind"] == "unexpected_error" and document["file"] == str(damaged)
    assert document["command"] == "inspect" and document["exception"] == type(exc).__name__
    assert document["error"].startswith(f"chroma-migrate inspect failed unexpectedly while reading {damaged}")
    assert document["fix"].startswith(BUG_FIX)
    assert "Traceback" not in out + err


def test_without_json_the_message_and_fix_go_to_stderr(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(cli.HANDLERS, "verify", _boom(str(tmp_path / "a" / "link_lists.bin"), ValueError("buffer")))
    assert cli.main(["verify", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "chroma-migrate verify failed unexpectedly while reading" in err and "link_lists.bin" in err
    assert f"fix: {BUG_FIX}" in err and "Traceback" not in err


def test_with_no_file_noted_the_message_names_the_command_inputs(monkeypatch, capsys, tmp_path):
    def handler(_args):
        raise TypeError("unhashable type")
    monkeypatch.setitem(cli.HANDLERS, "inspect", handler)
    assert cli.main(["inspect", "--json", str(tmp_path)]) == 2
    assert json.loads(capsys.readouterr().out)["file"] == str(tmp_path)


def test_exit_1_belongs_to_a_verified_difference_only(monkeypatch, capsys, tmp_path):
    class NotAVerification(MigrationError):
        exit_code = 1  # a subclass that forgot the contract still exits 2

    monkeypatch.setitem(cli.HANDLERS, "inspect", _boom("x", NotAVerification("odd", "fix it")))
    assert cli.main(["inspect", "--json", str(tmp_path)]) == 2
    capsys.readouterr()
    failed = VerificationFailedError("1 collection differs", {"passed": False, "collections": [], "problems": [],
                                                             "source_version": "0.6.3", "target_version": "1.5.9"})
    monkeypatch.setitem(cli.HANDLERS, "inspect", _boom("x", failed))
    assert cli.main(["inspect", "--json", str(tmp_path)]) == 1
    assert json.loads(capsys.readouterr().out)["verification"]["passed"] is False


def test_a_bad_command_line_under_json_is_one_json_document(capsys):
    assert cli.main(["verify", "--json", "--batch-size", "many", "a", "b"]) == 2
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["kind"] == "usage" and "--batch-size" in document["error"] and err == ""
    assert cli.main(["verify", "--batch-size", "many", "a", "b"]) == 2
    assert "usage:" in capsys.readouterr().err
