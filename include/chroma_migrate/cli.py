"""`chroma-migrate`: inspect, probe, migrate and verify ChromaDB databases across versions.

Exit codes: 0 success, 1 verification found a difference (only that), 2 bad input or any
failure, an unexpected one included (exit_contract.py). Every command takes --json and then
prints exactly one JSON document on stdout, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chroma_migrate.batches import EXPORTERS
from chroma_migrate.errors import MigrationError
from chroma_migrate.exit_contract import run_command
from chroma_migrate.inspection import describe_database
from chroma_migrate.migrate import DEFAULT_BATCH_SIZE, MigrationRequest, migrate
from chroma_migrate.probe import probe
from chroma_migrate.reader_policy import parse_reader_args
from chroma_migrate.remote_source import RemoteSnapshot, is_s3_url, local_source, upload_result
from chroma_migrate.runtime_resolution import resolve_version
from chroma_migrate.runtimes import ensure_runtime, list_runtimes
from chroma_migrate.strategy import REQUESTABLE
from chroma_migrate.verification import report
from chroma_migrate.verification.behaviour import load_sample_queries
from chroma_migrate.verification.verify import READERS, VerifyRequest, verify_databases
from chroma_migrate.versions import latest_version, supported_version_names


def _collections(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


class _UsageError(Exception):
    """A command line argparse refuses: exit 2 as argparse does, but as one JSON document under --json."""

    def __init__(self, usage: str, message: str) -> None:
        super().__init__(message)
        self.usage, self.message = usage, message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(self.format_usage(), message)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    readers = argparse.ArgumentParser(add_help=False)
    readers.add_argument("--reader", action="append", default=[], metavar="NAME=VERSION",
                         help="a service that reads the result and the chromadb release it pins (repeatable): "
                              "its own chromadb smoke-reads a copy and the output says whether it can read it")
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--env", help="with --collection: the live snapshot of this environment of the "
                                      "configuration file (instead of PATH), downloaded and checked")
    remote.add_argument("--collection", help="the configured collection (snapshot) whose live pointer to follow")
    remote.add_argument("--config", type=Path, help="the configuration file (default: $CHROMA_MIGRATION_CONFIG, "
                                                    "else include/config/chroma_migration.yaml)")
    parser = _Parser(prog="chroma-migrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    source_help = "a database folder, or s3://BUCKET/.../VERSION_ID/ (downloaded once into the cache)"
    inspect = commands.add_parser("inspect", parents=[common, remote], help="describe a database without changing it")
    inspect.add_argument("path", nargs="?", help=source_help)

    probe_cmd = commands.add_parser("probe", parents=[common, readers, remote],
                                    help="which strategy a target version needs")
    probe_cmd.add_argument("path", nargs="?", help=source_help)
    probe_cmd.add_argument("--target", default=latest_version().version,
                           help="chromadb release to move to (any from 0.4.15 on)")
    probe_cmd.add_argument("--work-dir", type=Path, help="where the probe's copy goes (default: system temp)")

    work = argparse.ArgumentParser(add_help=False)
    work.add_argument("--collections", help="comma-separated collection names (default: all)")
    work.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per batch")
    work.add_argument("--workers", type=int, default=1, help="parallel export processes")
    work.add_argument("--sample-queries", type=Path, metavar="FILE",
                      help="JSON: per collection, your own queries to compare between the versions")

    migrate_cmd = commands.add_parser("migrate", parents=[common, work, readers, remote],
                                      help="write a verified copy in a version")
    migrate_cmd.add_argument("path", nargs="?", help=source_help)
    migrate_cmd.add_argument("out", type=Path)
    migrate_cmd.add_argument("--upload", action="store_true",
                             help="for an S3 source: upload the verified result as a new version prefix beside it "
                                  "(manifest last); no pointer moves, publishing stays with the DAG")
    migrate_cmd.add_argument("--target", default=latest_version().version,
                             help="chromadb release to write (any from 0.4.15 on; one without a runtime file is "
                                  "resolved on first use)")
    migrate_cmd.add_argument("--strategy", default="auto", choices=REQUESTABLE)
    migrate_cmd.add_argument("--export-with", default="native", choices=EXPORTERS,
                             help="rebuild export: the native reader in place (default) or the source's chromadb")

    verify_cmd = commands.add_parser("verify", parents=[common, work, remote], help="compare two databases")
    verify_cmd.add_argument("source", nargs="?", help=source_help + "; or --env/--collection")
    verify_cmd.add_argument("target", help=source_help)
    verify_cmd.add_argument("--source-version", help="read SOURCE with this version (default: its writer)")
    verify_cmd.add_argument("--target-version", help="read TARGET with this version (default: its writer)")
    verify_cmd.add_argument("--read-with", default="native", choices=READERS,
                            help="the native reader in place (default) or each side's chromadb on a copy")

    runtime = commands.add_parser("runtime", help="chromadb runtimes (one virtual environment per version)")
    runtime_commands = runtime.add_subparsers(dest="runtime_command", required=True)
    ensure = runtime_commands.add_parser("ensure", parents=[common], help="build runtimes once, cached")
    ensure.add_argument("versions", nargs="*", help=f"shipped: {', '.join(supported_version_names())}; any other "
                        "release from 0.4.15 on is pinned, built and measured on first use")
    ensure.add_argument("--all", action="store_true", help="every supported version")
    runtime_commands.add_parser("list", parents=[common], help="supported versions and what is built")

    fixture = commands.add_parser("fixture", help="write sample databases with a real chromadb version")
    fixture_commands = fixture.add_subparsers(dest="fixture_command", required=True)
    build = fixture_commands.add_parser("build", parents=[common], help="receipt-like words and lines")
    build.add_argument("path", type=Path)
    build.add_argument("--version", required=True, help="chromadb version that writes it")
    build.add_argument("--records", type=int, default=600)
    build.add_argument("--dim", type=int, default=16)
    build.add_argument("--no-1536", dest="big_dim", action="store_false", help="skip the 1536-dim collection")
    build.add_argument("--lists", action="store_true", help="list-valued metadata (chromadb 1.5+)")
    return parser


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress goes to stderr, and nowhere under --json (stdout holds one document)."""
    return (lambda message: print(message, file=sys.stderr)) if not args.json else (lambda _m: None)


def _run_migration(request: MigrationRequest, args: argparse.Namespace) -> dict[str, Any]:
    """On a terminal, a progress bar per phase on stderr; under --json or into a pipe, as before."""
    if args.json or not sys.stderr.isatty():
        return migrate(request, log=_log(args))
    from chroma_migrate.progress_bars import PhaseBars  # rich, only when there is a terminal to draw on

    with PhaseBars() as bars:
        return migrate(request, log=bars.log, display=bars)


def _source(args: argparse.Namespace, attribute: str = "path") -> tuple[Path, RemoteSnapshot | None]:
    """PATH, an s3:// version prefix, or --env/--collection's live snapshot, as a local folder
    (on a terminal, with a progress bar while it downloads)."""
    text = getattr(args, attribute)
    if args.json or not sys.stderr.isatty() or not (args.env or is_s3_url(text)):
        return local_source(text, env=args.env, collection=args.collection, config_path=args.config, log=_log(args))
    from chroma_migrate.progress_bars import PhaseBars  # rich, only when there is a terminal to draw on

    with PhaseBars() as bars:
        return local_source(text, env=args.env, collection=args.collection, config_path=args.config, log=bars.log,
                            display=bars)


def _with_origin(document: dict[str, Any], snapshot: RemoteSnapshot | None) -> dict[str, Any]:
    return {**document, "snapshot": snapshot.url} if snapshot else document


def _inspect(args) -> tuple[dict[str, Any], str, int]:
    path, snapshot = _source(args)
    info = _with_origin(describe_database(path).to_dict(), snapshot)
    return info, report.render_inspect(info), 0


def _probe(args) -> tuple[dict[str, Any], str, int]:
    readers = parse_reader_args(args.reader)
    path, snapshot = _source(args)
    result = _with_origin(probe(path, args.target, work_dir=args.work_dir, readers=readers).to_dict(), snapshot)
    return result, report.render_probe(result), 0


def _migrate(args) -> tuple[dict[str, Any], str, int]:
    if args.upload and not (args.env or is_s3_url(args.path)):
        raise MigrationError("--upload needs an S3 source (s3://... or --env/--collection).",
                             "Upload a local result with the DAG's publish step, or drop --upload.")
    readers, sample_queries = parse_reader_args(args.reader), load_sample_queries(args.sample_queries)
    path, snapshot = _source(args)
    request = MigrationRequest(path, args.out, args.target, args.strategy, _collections(args.collections),
                               args.batch_size, args.workers, args.export_with, readers,
                               sample_queries=sample_queries)
    result = _with_origin(_run_migration(request, args), snapshot)
    if args.upload and snapshot:
        result["uploaded"] = upload_result(Path(result["out"]), snapshot, {
            "chromadb_version": result["target_version"], "strategy": result["strategy"]})
    return result, report.render_migration(result), 0


def _verify(args) -> tuple[dict[str, Any], str, int]:
    """Native: both sides read in place (the target's recall queries run on a scratch copy).
    Runtime: both sides copied first, because chromadb writes to every database it opens."""
    if args.batch_size < 1 or args.workers < 1:
        raise MigrationError("--batch-size and --workers must be at least 1.", "Use positive numbers.")
    source_version = resolve_version(args.source_version, log=_log(args)).version if args.source_version else None
    target_version = resolve_version(args.target_version, log=_log(args)).version if args.target_version else None
    sample_queries = load_sample_queries(args.sample_queries)
    args.source, _snapshot = _source(args, "source")
    args.target, _snapshot = local_source(args.target, env=None, collection=None, log=_log(args))
    describe_database(args.source)
    describe_database(args.target)
    with tempfile.TemporaryDirectory(prefix="chroma-migrate-verify-copies-") as scratch:
        source, target = args.source, args.target
        if args.read_with == "runtime":
            source, target = Path(scratch) / "source", Path(scratch) / "target"
            shutil.copytree(args.source, source)
            shutil.copytree(args.target, target)
        result = verify_databases(VerifyRequest(
            source, target, source_version=source_version, target_version=target_version,
            collections=_collections(args.collections), batch_size=args.batch_size, workers=args.workers,
            work_dir=Path(scratch), reader=args.read_with, sample_queries=sample_queries))
    result.update(source=str(args.source), target=str(args.target))
    return result, report.render_verification(result), 0 if result["passed"] else 1


def _runtime(args) -> tuple[dict[str, Any], str, int]:
    if args.runtime_command == "list":
        rows = list_runtimes()
        text = "\n".join(f"chromadb {r['version']:<8} {'built' if r['built'] else 'not built':<10} {r['path']}"
                         for r in rows)
        return {"runtimes": rows}, text, 0
    versions = supported_version_names() if args.all else args.versions
    if not versions:
        raise MigrationError("runtime ensure needs a version.",
                             f"Name one of {', '.join(supported_version_names())}, or pass --all.")
    log = _log(args)
    built = [{"version": v, "python": str(ensure_runtime(resolve_version(v, log=log).version, log=log).python)}
             for v in versions]
    return {"runtimes": built}, "\n".join(f"chromadb {b['version']}: {b['python']}" for b in built), 0


def _fixture(args) -> tuple[dict[str, Any], str, int]:
    from chroma_migrate_testkit.fixtures import build_database, receipt_spec  # demo support, not the engine

    version = resolve_version(args.version, log=_log(args))
    if args.lists and not version.supports_list_metadata:
        raise MigrationError(f"chromadb {version.version} cannot store list metadata.", "Drop --lists or use 1.5+.")
    spec = receipt_spec(records=args.records, dim=args.dim, big_dim=1536 if args.big_dim else None,
                        with_lists=args.lists)
    result = build_database(args.path, version.version, spec)
    text = "\n".join(f"{name}: {count} records" for name, count in result["collections"].items())
    return {"path": str(args.path), "version": version.version, **result}, text, 0


HANDLERS: dict[str, Callable[[argparse.Namespace], tuple[dict[str, Any], str, int]]] = {
    "inspect": _inspect, "probe": _probe, "migrate": _migrate, "verify": _verify,
    "runtime": _runtime, "fixture": _fixture,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        return _usage_error(exc, "--json" in argv)
    as_json = getattr(args, "json", False)
    command = " ".join(c for c in (args.command, getattr(args, f"{args.command}_command", None)) if c)
    inputs = [getattr(args, name, None) for name in ("path", "source", "target")]
    document, text, code = run_command(command, inputs, lambda: HANDLERS[args.command](args),
                                       report.render_verification)
    if as_json:
        print(json.dumps(document, indent=2, default=str))
    else:
        print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _usage_error(exc: _UsageError, as_json: bool) -> int:
    fix = "Run chroma-migrate --help (or COMMAND --help) for the arguments it takes."
    if as_json:
        print(json.dumps({"error": exc.message, "fix": fix, "kind": "usage"}, indent=2))
    else:
        print(f"{exc.usage}chroma-migrate: error: {exc.message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
