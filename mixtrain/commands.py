"""What each core ``mixtrain`` subcommand does; :mod:`mixtrain.cli` parses the command line and dispatches here.

Imports are local to each command: ``mixtrain --help`` or ``trace`` should not pay for loading Dagster and the
code location.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mixtrain.project import ProjectError


def cmd_init(args: argparse.Namespace) -> int:
    import shlex

    from mixtrain.starter import write_starter

    project, written = write_starter(args.directory, force=args.force)
    print(f"wrote a starter project to {project.root}:")
    for rel in written:
        print(f"  {rel}")
    where = shlex.quote(args.directory)  # as typed (relative stays relative), ready to paste
    print(
        "\nIt loads and validates. Next:\n"
        f"  mixtrain run --project {where}      gate and mix the data, train, evaluate, release (minutes on a CPU)\n"
        f"  mixtrain status --project {where}   what a run would build\n"
        "Edit sources/examples.yaml and the eval set to bring your own data; the comments say what each field does."
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dagster import AssetSelection

    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.interrupts import EXIT_INTERRUPTED, stop_on_interrupt
    from mixtrain.progress import RunProgress
    from mixtrain.runner import run_project
    from mixtrain.summary import render_summary

    project = activate(args.project)
    defs = load_definitions(project)
    select = None
    if args.select:
        wanted = AssetSelection.from_string(args.select).resolve(defs.resolve_asset_graph())
        select = wanted.__contains__
    progress = RunProgress(every_s=args.progress_every, verbose=getattr(args, "verbose", False))

    def first_press() -> None:
        progress.line("stopping: no further asset starts (Ctrl-C again to kill at once)", style="yellow")

    with open_instance(project) as instance, stop_on_interrupt(first_press) as stop:
        report = run_project(
            project, defs, instance, select=select, wait_s=args.wait, log=progress.line, progress=progress, stop=stop
        )
        if report.interrupted:
            print(_interrupted_summary(report), file=sys.stderr)
            return EXIT_INTERRUPTED
        if not report.materialized and report.ok:
            print("nothing to do: every asset is up to date with its code and inputs")
        else:
            print(f"materialized {len(report.materialized)} asset partitions in {len(report.run_ids)} runs")
        print(render_summary(instance))
    print(f"\nInspect lineage in the UI: mixtrain ui --project {project.root}")
    return 0 if report.ok else 1


def _names(pairs: list[tuple[str, str | None]]) -> str:
    """Asset names in order, a partitioned one once with its partition (or how many): the summary stays one line."""
    partitions: dict[str, list[str]] = {}
    for name, pk in pairs:
        partitions.setdefault(name, []).extend([pk] if pk else [])
    return ", ".join(
        f"{name} ({len(pks)} partitions)" if len(pks) > 1 else name + "".join(f"[{pk}]" for pk in pks)
        for name, pks in partitions.items()
    )


def _interrupted_summary(report) -> str:
    """The one line a stopped run ends with: what it materialized and what it did not."""
    done = f"materialized {len(report.materialized)} asset partition(s)"
    if report.materialized:
        done += f" ({_names(report.materialized)})"
    if report.not_materialized:
        left = f"not materialized: {_names(report.not_materialized)} and whatever depends on them"
    else:  # stopped between runs, before the next ones were planned
        left = "`mixtrain status` lists what is still missing or stale"
    return f"mixtrain run: interrupted; {done}; {left}. Run `mixtrain run` again to continue."


def cmd_status(args: argparse.Namespace) -> int:
    """Read-only: the specs are observed in this process and compared, never recorded, so asking creates no
    run, writes no event and adds no partition (a source added since the last run shows as MISSING)."""
    from mixtrain.consistency import inconsistencies
    from mixtrain.dagster_internals import stale_statuses
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.observe import observe_in_process
    from mixtrain.partitions import partition_keys

    project = activate(args.project)
    defs = load_definitions(project)
    keys = partition_keys(project)
    with open_instance(project) as instance:
        statuses = stale_statuses(defs, instance, keys, observed=observe_in_process(defs, instance))
        broken = inconsistencies(defs, instance, project.storage_root, keys)
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
    from mixtrain.trace_stages import similar_doc_ids

    project = load_project(args.project)
    answer = trace(project.storage_root, args.doc_id)
    if not answer["found"]:
        stored, close = similar_doc_ids(project.storage_root, args.doc_id)
        if args.json:
            print(json.dumps({"doc_id": args.doc_id, "found": False, "close_matches": close}, indent=1))
        where = f"the {stored} documents stored under {project.storage_root}"
        message = f"mixtrain trace: no document '{args.doc_id}' among {where}"
        if not stored:
            message = f"mixtrain trace: no documents stored under {project.storage_root} yet: run `mixtrain run` first"
        elif close:
            message += "\n  close matches: " + ", ".join(close)
        print(message, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=1, default=str))
        return 0
    width = max(len(s["stage"]) for s in answer["stages"])
    print(f"document {answer['doc_id']}")
    for s in answer["stages"]:
        print(f"  {s['stage']:<{width}}  {s['decision']:<12} {s['detail']}")
    print("\ndetails:")
    details = {k: v for k, v in answer.items() if k not in ("doc_id", "found", "stages")}
    print("\n".join("  " + line for line in render(details).splitlines()))
    return 0


def cmd_impact(args: argparse.Namespace) -> int:
    import json

    from mixtrain.config.errors import suggest
    from mixtrain.project import load_project
    from mixtrain.provenance import impact, render

    project = load_project(args.project)
    if args.source_id not in project.sources:
        raise ProjectError(
            f"unknown source '{args.source_id}'{suggest(args.source_id, project.sources)} "
            f"(sources: {', '.join(project.source_ids())})"
        )
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
    from mixtrain.automation import AUTOMATION_ENV
    from mixtrain.instance import activate, workspace_file

    project = activate(args.project)
    if args.no_automation:  # read by the code location when it loads: sensors and schedules start stopped
        os.environ[AUTOMATION_ENV] = "off"
    ws = workspace_file()
    target = ["-w", str(ws)] if ws else ["-f", str(Path(__file__).resolve().parents[1] / "definitions.py")]
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster) if dagster.exists() else "dagster", "dev", *target, "-h", "127.0.0.1", "-p", str(args.port)]
    print(f"project {project.root}; DAGSTER_HOME {project.dagster_home}\n$ {' '.join(cmd)}")
    return subprocess.call(cmd, cwd=ws.parent if ws else None)
