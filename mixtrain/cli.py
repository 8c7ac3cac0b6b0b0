"""The ``mixtrain`` command line: parsing, help, warnings and error reporting.

What each core subcommand does lives in :mod:`mixtrain.commands`; domain packages add their own subcommands
through the ``mixtrain.commands`` entry point group, so the core never imports them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable
from typing import Any

from mixtrain import commands
from mixtrain.interrupts import EXIT_INTERRUPTED, can_run_in_own_group, run_in_own_group
from mixtrain.project import PROJECT_ENV, ProjectError, ProjectNotFoundError
from mixtrain.warnings_policy import library_warnings

# Plain text: argparse prints the description as written (RawDescriptionHelpFormatter), so no reST markup.
DESCRIPTION = """\
Turn raw text sources into a gated, deduplicated, decontaminated training mixture, train and distil models on
it, evaluate them and gate their release - all as Dagster assets of one pipeline project (a directory with
mixtrain.yaml and sources/*.yaml)."""

EPILOG = f"""\
The project is the directory given with --project, else ${PROJECT_ENV}, else the current directory.

examples:
  mixtrain init myproj                          write a starter project to start from
  mixtrain run --project examples/demo          build what is missing or stale
  mixtrain status --project examples/demo       what a run would rebuild, and why (changes nothing)
  mixtrain trace 3f2a9c0d1e4b5a6c7d8e --project examples/demo
  mixtrain ui --project examples/demo           the Dagster UI on http://127.0.0.1:3000

run 'mixtrain COMMAND --help' for a command's options; -v shows library warnings (hidden by default)."""

PROJECT_HELP = f"pipeline project directory holding mixtrain.yaml (default: ${PROJECT_ENV}, else .)"
JSON_HELP = "print the answer as JSON instead of indented text"
NO_PROJECT_HINT = f"run from a project directory, or name one with --project DIR (or ${PROJECT_ENV}=DIR)"


def _version() -> str:
    """``mixtrain <version>`` plus the Dagster and Python it runs on: what a bug report needs."""
    try:
        mine = importlib.metadata.version("mixtrain")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
        mine = "unknown (not installed)"
    try:
        dagster = importlib.metadata.version("dagster")
    except importlib.metadata.PackageNotFoundError:
        dagster = "not installed"
    py = ".".join(map(str, sys.version_info[:3]))
    return f"mixtrain {mine} (dagster {dagster}, python {py})"


def _add_common(p: argparse.ArgumentParser, *, project: bool = True) -> None:
    if project:
        p.add_argument("--project", metavar="DIR", help=PROJECT_HELP)
    # SUPPRESS: given before the command (mixtrain -v run), the subcommand must not reset it to False.
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show library warnings")


def _sub(sub: Any, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + (f".\n\n{details}" if details else "."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    return p


def _core_commands(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented starter project (one source, one eval set, a mixture, a training recipe)",
        description="Write a commented starter project into DIRECTORY: mixtrain.yaml, sources/examples.yaml, its\n"
        "data and an eval set. It runs offline as written (`mixtrain run --project DIRECTORY`); the comments say\n"
        "what each field does and which values it takes. Distillation is left off (commented how to turn it on).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p, project=False)
    p.add_argument(
        "directory",
        nargs="?",
        default=".",
        metavar="DIRECTORY",
        help="where to write it (default: .); created if missing",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a directory that is not empty: the starter's files replace those of the same name, other "
        "files are kept",
    )
    p.set_defaults(func=commands.cmd_init)

    p = _sub(
        sub,
        "run",
        "materialize what is missing, stale (changed code, config or inputs) or inconsistent, nothing else",
        "Observes the project's specs, then evaluates the automation conditions the Dagster daemon would and runs\n"
        "what they request, in this process, until nothing more is requested. One run per project at a time.\n"
        "Ctrl-C stops cleanly after marking the current run canceled (exit status 130); a second Ctrl-C kills.",
    )
    p.add_argument("--select", metavar="SEL", help="limit to a Dagster asset selection, e.g. 'key:raw_documents+'")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another mixtrain run holds the project, wait up to this long for it (default: refuse at once)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between training progress lines (default: $MIXTRAIN_PROGRESS_EVERY_S, else 20; 0: every step)",
    )
    p.set_defaults(func=commands.cmd_run)

    p = _sub(
        sub,
        "status",
        "list missing, stale and inconsistent assets and why; read-only",
        "The specs are fingerprinted in this process and compared with what the last run recorded: no run is\n"
        "launched and nothing is written. Also lists revoked sources and models trained on them.",
    )
    p.add_argument("--all", action="store_true", help="also list the fresh assets")
    p.set_defaults(func=commands.cmd_status)

    p = _sub(sub, "ui", "start the Dagster UI (dagster dev) for the project on 127.0.0.1")
    p.add_argument("--port", type=int, default=3000, help="port to serve on (default: 3000)")
    p.add_argument(
        "--no-automation",
        action="store_true",
        help="start the sensors and the nightly schedule stopped (default: running, so the daemon observes edited "
        "specs and materializes what they make stale); sets $MIXTRAIN_AUTOMATION=off",
    )
    p.set_defaults(func=commands.cmd_ui)

    p = _sub(
        sub,
        "trace",
        "where a document came from and what every stage decided about it",
        "Read from stored assets: capture, gating, dedupe, the contamination screen, the mixture and the models\n"
        "trained on it. An unknown id exits with status 1 and lists close matches.",
    )
    p.add_argument("doc_id", metavar="DOC_ID", help="the document id (20 hex digits, as in any stored table)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=commands.cmd_trace)

    p = _sub(sub, "impact", "every partition, corpus table, mixture and model a source reached, with counts")
    p.add_argument("source_id", metavar="SOURCE_ID", help="a source id (the id field of a sources/*.yaml)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=commands.cmd_impact)

    p = _sub(
        sub,
        "revoke",
        "record a source's revocation; the next run rebuilds only what used it",
        "Writes revocations/<source>.yaml and labels the stored models trained on the source.",
    )
    p.add_argument("source_id", metavar="SOURCE_ID", help="the source to revoke")
    p.add_argument("--reason", required=True, help="why (recorded, and shown by status and in the UI)")
    p.add_argument("--by", metavar="NAME", help="who revokes (default: the current user)")
    p.set_defaults(func=commands.cmd_revoke)

    p = _sub(sub, "rollback", "make the previous released model live again")
    p.add_argument("--reason", required=True, help="why (recorded in the release history and the UI)")
    p.set_defaults(func=commands.cmd_rollback)


COMMANDS_GROUP = "mixtrain.commands"


def _domain_commands() -> list[Callable[[Any], None]]:
    """Subcommands a domain package adds (``mixtrain mixture``, ``mixtrain review``), found through the
    ``mixtrain.commands`` entry point group, so the core never imports a domain package."""
    return [ep.load() for ep in sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixtrain",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    _core_commands(sub)
    for register in _domain_commands():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # not `required=True`, whose message would also answer a bare --version
        parser.error("a command is required (run 'mixtrain --help' for the list)")
    if args.func is commands.cmd_run and can_run_in_own_group():
        return run_in_own_group(list(sys.argv[1:] if argv is None else argv))
    with library_warnings(getattr(args, "verbose", False)):
        try:
            return args.func(args)
        except ProjectNotFoundError as e:
            print(f"mixtrain: {e}\n  {NO_PROJECT_HINT}", file=sys.stderr)
            return 2
        except ProjectError as e:
            print(f"mixtrain: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # Ctrl-C outside a run (loading, summarising): nothing half-done to report
            print("\nmixtrain: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
