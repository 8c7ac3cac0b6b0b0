"""The ``mixtrain`` command: run, status and ui over a pipeline project, lineage questions, revocation and
rollback; domain packages add their own subcommands through an entry point group."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixtrain.project import ProjectError


def cmd_run(args: argparse.Namespace) -> int:
    from dagster import AssetSelection

    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.runner import run_project
    from mixtrain.summary import render_summary

    project = activate(args.project)
    defs = load_definitions(project)
    select = None
    if args.select:
        wanted = AssetSelection.from_string(args.select).resolve(defs.resolve_asset_graph())
        select = wanted.__contains__
    with open_instance(project) as instance:
        report = run_project(project, defs, instance, select=select, wait_s=args.wait)
        if not report.materialized and report.ok:
            print("nothing to do: every asset is up to date with its code and inputs")
        else:
            print(f"materialized {len(report.materialized)} asset partitions in {len(report.run_ids)} runs")
        print(render_summary(instance))
    print(f"\nInspect lineage in the UI: mixtrain ui --project {project.root}")
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from mixtrain.consistency import inconsistencies
    from mixtrain.dagster_internals import stale_statuses
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.partitions import partition_keys
    from mixtrain.runner import observe_specs, sync_partitions

    project = activate(args.project)
    defs = load_definitions(project)
    with open_instance(project) as instance:
        # Observing records the current fingerprints (no materialization), so edits since the last run count.
        sync_partitions(project, instance)
        observe_specs(defs, instance)
        statuses = stale_statuses(defs, instance, partition_keys(project))
        broken = inconsistencies(defs, instance, project.storage_root, partition_keys(project))
    for found in broken:  # stored content is not what Dagster recorded: `run` rebuilds these first
        print(f"INCONSISTENT {found.describe()}")
    not_fresh = [s for s in statuses if s.status != "FRESH"]
    for s in statuses if args.all else not_fresh:
        name = s.key + (f"[{s.partition}]" if s.partition else "")
        print(f"{s.status:<8} {name}" + (f"  <- {'; '.join(s.causes)}" if s.causes else ""))
    if not not_fresh and not broken:
        print(f"all {len(statuses)} asset partitions are fresh")
    _print_revocations(project)
    return 0


def _print_revocations(project) -> None:
    from mixtrain.provenance import model_manifests
    from mixtrain.revocations import load_revocations

    for sid, rev in sorted(load_revocations(project).items()):
        print(f"REVOKED  source {sid} by {rev.revoked_by} at {rev.revoked_at:%Y-%m-%d %H:%M}Z: {rev.reason}")
    for model in model_manifests(project.storage_root):
        if model["trained_on_revoked"]:
            names = ", ".join(m["source_id"] for m in model["trained_on_revoked"])
            live = "live" if model["current"] else "superseded"
            print(f"TAINTED  model {model['asset']} ({live}, {model['path']}) was trained on revoked data: {names}")


def cmd_trace(args: argparse.Namespace) -> int:
    import json

    from mixtrain.project import load_project
    from mixtrain.provenance import render, trace

    project = load_project(args.project)
    answer = trace(project.storage_root, args.doc_id)
    print(json.dumps(answer, indent=1, default=str) if args.json else render(answer))
    return 0 if answer["found"] else 1


def cmd_impact(args: argparse.Namespace) -> int:
    import json

    from mixtrain.project import load_project
    from mixtrain.provenance import impact, render

    project = load_project(args.project)
    if args.source_id not in project.sources:
        raise ProjectError(f"unknown source '{args.source_id}' (sources: {', '.join(project.source_ids())})")
    answer = impact(project.storage_root, args.source_id)
    print(json.dumps(answer, indent=1, default=str) if args.json else render(answer))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from mixtrain.project import load_project
    from mixtrain.revocations import record_revocation

    project = load_project(args.project)
    rev, reached = record_revocation(project, args.source_id, args.reason, args.by)
    print(f"revoked {rev.source_id} ({rev.reason}) by {rev.revoked_by} at {rev.revoked_at:%Y-%m-%d %H:%M}Z")
    for model in reached["models"]:
        print(f"  labelled model {model['asset']}: trained on mixture {model['data_manifest_id']}, which used it")
    for key, n in reached["corpus"].items():
        print(f"  {key}: {n} documents from {rev.source_id} (stale now)")
    print("run `mixtrain run` to rebuild only what used the source")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from dagster import AssetMaterialization

    from mixtrain.instance import activate, open_instance
    from mixtrain.release import RELEASE_KEY, ReleaseError, rollback

    project = activate(args.project)
    try:
        rolled = rollback(project.storage_root, args.reason)
    except ReleaseError as e:  # the pinned adapter or base is gone or changed: the release stays as it was
        print(f"mixtrain rollback: refused, the release stays as it was: {e}", file=sys.stderr)
        return 1
    now, was = rolled["current"], rolled["previous"]
    base = now.get("base") or {}
    # Recorded in the event log too, so the UI's history of released_model shows the rollback beside promotions.
    open_instance(project).report_runless_asset_event(
        AssetMaterialization(
            RELEASE_KEY,
            description=f"rollback: {args.reason}",
            metadata={
                "model": now["model"],
                "version": str(now["version"]),
                "rolled_back": str(was["version"]),
                "base_version": str(base.get("version")),
            },
        )
    )
    on_base = f" on base {base['version']}" if base else ""
    print(f"released_model is {now['model']}@{now['version']}{on_base} again (was {was['model']}@{was['version']})")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from mixtrain.instance import activate, workspace_file

    project = activate(args.project)
    ws = workspace_file()
    target = ["-w", str(ws)] if ws else ["-f", str(Path(__file__).resolve().parents[1] / "definitions.py")]
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster) if dagster.exists() else "dagster", "dev", *target, "-h", "127.0.0.1", "-p", str(args.port)]
    print(f"project {project.root}; DAGSTER_HOME {project.dagster_home}\n$ {' '.join(cmd)}")
    return subprocess.call(cmd, cwd=ws.parent if ws else None)


COMMANDS_GROUP = "mixtrain.commands"


def _domain_commands() -> list[Callable[[Any], None]]:
    """Subcommands a domain package adds (``mixtrain mixture``, ``mixtrain review``), found through the
    ``mixtrain.commands`` entry point group, so the core never imports a domain package."""
    return [ep.load() for ep in sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixtrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="materialize what is missing or stale (changed code or inputs), nothing else")
    p.add_argument("--project", help="pipeline project directory (default: $MIXTRAIN_PROJECT or .)")
    p.add_argument("--select", help="Dagster asset selection string, e.g. 'key:raw_documents+'")
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="if another mixtrain run holds the project, wait up to this long for it (default: refuse at once)",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="list missing or stale assets and why")
    p.add_argument("--project")
    p.add_argument("--all", action="store_true", help="also list fresh assets")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev -w workspace.yaml) on 127.0.0.1")
    p.add_argument("--project")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("trace", help="where a document came from and where it went (from stored assets)")
    p.add_argument("doc_id")
    p.add_argument("--project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_trace)
    p = sub.add_parser("impact", help="every partition, mixture and model a source reached, with counts")
    p.add_argument("source_id")
    p.add_argument("--project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_impact)
    p = sub.add_parser("revoke", help="record a source's revocation; the next run rebuilds only what used it")
    p.add_argument("source_id")
    p.add_argument("--reason", required=True)
    p.add_argument("--by", help="who revokes (default: the current user)")
    p.add_argument("--project")
    p.set_defaults(func=cmd_revoke)
    p = sub.add_parser("rollback", help="make the previous released model live again")
    p.add_argument("--reason", required=True)
    p.add_argument("--project")
    p.set_defaults(func=cmd_rollback)
    for register in _domain_commands():
        register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProjectError as e:
        print(f"mixtrain: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
