"""The data side's ``mixtrain`` subcommands: ``mixture diff`` and ``review sample|apply``.

Registered through the ``mixtrain.commands`` entry point group (pyproject.toml), so the core CLI lists them
without importing the data package.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from mixtrain.project import ProjectError


def _manifest(project, ref: str | None) -> dict:
    from upath import UPath

    from mixtrain.provenance import manifest_history_path, mixture_manifest
    from mixtrain.storage import read_json

    if ref is None:
        current = mixture_manifest(project.storage_root)
        if current is None:
            raise ProjectError("no mixture_manifest yet: run `mixtrain run` first")
        return current
    if ref.endswith(".json") and Path(ref).is_file():
        return read_json(UPath(ref))
    path = manifest_history_path(project.storage_root, ref)
    if not path.exists():
        raise ProjectError(f"no mixture manifest '{ref}' in {path.parent} (give a manifest id or a .json path)")
    return read_json(path)


def cmd_mixture_diff(args: argparse.Namespace) -> int:
    from mixassets.engine.mixture_diff import diff_manifests, render_diff_markdown
    from mixtrain.project import load_project

    project = load_project(args.project)
    new = _manifest(project, args.b)
    old_ref = args.a or new.get("previous_manifest_id")
    if old_ref is None:
        raise ProjectError("the current mixture has no previous manifest: give two manifest ids or paths")
    old = _manifest(project, old_ref)
    print(render_diff_markdown(diff_manifests(old, new)))
    return 0


def cmd_review_sample(args: argparse.Namespace) -> int:
    from mixassets.engine.review import sample_review_sheet, write_sheet_csv
    from mixtrain.config.errors import suggest
    from mixtrain.instance import activate
    from mixtrain.storage import asset_path
    from mixtrain.tables import MissingTableError, open_table

    project = activate(args.project)
    if args.source not in project.sources:
        hint = f"{suggest(args.source, project.sources)} (known: {project.source_ids()})"
        raise ProjectError(f"{project.root / 'sources'}: no source '{args.source}'{hint}")
    tables = {}
    for key in ("gated_documents", "quarantine", "decision_log"):
        path = asset_path(project.storage_root, key, args.source)
        try:
            tables[key] = open_table(path).read()
        except MissingTableError:
            print(f"mixtrain: {path} does not exist: run `mixtrain run` first", file=sys.stderr)
            return 1
    sheet = sample_review_sheet(
        tables["gated_documents"], tables["quarantine"], tables["decision_log"], n=args.n, seed=args.seed
    )
    out = args.out or f"review-{args.source}-seed{args.seed}.csv"
    write_sheet_csv(sheet, out)
    print(
        f"wrote {sheet.num_rows} rows to {out}: fill in verdict (accept|reject), reviewer and note, then "
        f"`mixtrain review apply {out}`"
    )
    return 0


def cmd_review_apply(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from upath import UPath

    from mixassets.engine.review import read_verdicts_csv
    from mixtrain.instance import activate
    from mixtrain.storage import write_atomic

    project = activate(args.project)
    overrides = read_verdicts_csv(args.sheet)
    unknown = sorted(set(overrides.column("source_id").to_pylist()) - set(project.sources))
    if unknown:
        print(f"mixtrain: {args.sheet}: column 'source_id': unknown sources {unknown}", file=sys.stderr)
        return 2
    for sid in sorted(set(overrides.column("source_id").to_pylist())):
        rows = overrides.filter(pc.equal(overrides["source_id"], sid)).select(
            ["doc_id", "source_id", "verdict", "reviewer", "note"]
        )
        dest = project.review_dir(sid) / Path(args.sheet).name
        buf = io.BytesIO()
        pacsv.write_csv(rows, buf)
        write_atomic(UPath(dest), buf.getvalue())
        print(f"{sid}: {rows.num_rows} verdicts recorded in {dest}")
    print("run `mixtrain run` to regate only the reviewed sources")
    return 0


def _reporting_sheet_errors(func: Any) -> Any:
    """A malformed review sheet is the user's input to fix: say what is wrong (file, row, column), exit 2."""

    def run(args: argparse.Namespace) -> int:
        # Imported here: the review engine loads every gating rule, which other commands do not need.
        from mixassets.engine.review import ReviewSheetError

        try:
            return func(args)
        except ReviewSheetError as e:
            print(f"mixtrain: {e}", file=sys.stderr)
            return 2

    return run


PROJECT_HELP = "pipeline project directory holding mixtrain.yaml (default: $MIXTRAIN_PROJECT, else .)"


def _command(group: Any, name: str, summary: str) -> argparse.ArgumentParser:
    p = group.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    p.add_argument("--project", metavar="DIR", help=PROJECT_HELP)
    # SUPPRESS: `mixtrain -v review ...` sets it before the subcommand, which must not reset it.
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show library warnings")
    return p


def register(sub: Any) -> None:
    """Add the data side's subcommands to the ``mixtrain`` parser's subparsers."""
    mixture = sub.add_parser(
        "mixture", help="mixture manifests: compare two mixtures", description="Mixture manifests."
    ).add_subparsers(dest="mixture_command", metavar="SUBCOMMAND", required=True)
    p = _command(mixture, "diff", "what changed between two mixtures (default: the previous and the current)")
    p.add_argument("a", nargs="?", help="old manifest id or .json path (default: the current one's predecessor)")
    p.add_argument("b", nargs="?", help="new manifest id or .json path (default: the current mixture_manifest)")
    p.set_defaults(func=cmd_mixture_diff)
    review = sub.add_parser(
        "review",
        help="human review of gating decisions: sample a sheet, apply verdicts",
        description="Human review of gating decisions.",
    ).add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)
    p = _command(review, "sample", "write a reproducible review sheet (CSV) for one source")
    p.add_argument("--source", required=True, metavar="SOURCE_ID", help="the source whose decisions to review")
    p.add_argument("--n", type=int, default=50, help="rows on the sheet, half accepted and half held (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same sheet")
    p.add_argument("--out", metavar="CSV", help="CSV path (default: review-<source>-seed<seed>.csv)")
    p.set_defaults(func=_reporting_sheet_errors(cmd_review_sample))
    p = _command(review, "apply", "record a filled review sheet's verdicts as overrides")
    p.add_argument("sheet", metavar="CSV", help="the filled sheet: verdict (accept|reject), reviewer and note per row")
    p.set_defaults(func=_reporting_sheet_errors(cmd_review_apply))
