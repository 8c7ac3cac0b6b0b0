"""The released model: the candidate the release gate let through, with why, and the one before it for rollback.

It depends on ``eval_comparison``, whose ``release_gate`` check is blocking: a regressed candidate stops the run
before this asset, so the live release stays what it was. ``mixtrain rollback`` moves it back to the previous one.
"""

import datetime as dt

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from eval_assets.checks import gate_verdict
from mixtrain.automation import rerun_when_changed
from mixtrain.markdown import markdown_table
from mixtrain.release import current_release, release_entry
from mixtrain.resources import ProjectResource
from mixtrain.versioning import json_output


@asset(
    ins={
        "eval_comparison": AssetIn(),
        "sft_adapter": AssetIn(input_manager_key="json_io_manager"),
        "distilled_student": AssetIn(input_manager_key="json_io_manager"),
        "student_sft_baseline": AssetIn(input_manager_key="json_io_manager"),
    },
    io_manager_key="json_io_manager",
    code_version="release-1",
    automation_condition=rerun_when_changed(),
    group_name="evaluation",
    description="The model promoted by the release gate, why, and the previous release (mixtrain rollback).",
)
def released_model(
    context: AssetExecutionContext,
    project: ProjectResource,
    eval_comparison: pa.Table,
    sft_adapter: dict,
    distilled_student: dict,
    student_sft_baseline: dict,
):
    proj = project.load()
    gate = proj.spec.release_gate
    models = {"sft_adapter": sft_adapter, "distilled_student": distilled_student}
    models["student_sft_baseline"] = student_sft_baseline
    if gate.candidate not in models:
        raise ValueError(f"mixtrain.yaml: field 'release_gate.candidate': '{gate.candidate}' is not a trained model")
    passed, checks = gate_verdict(eval_comparison, gate)
    if not passed:  # the blocking check stops the run first; this guards a hand-picked materialization
        raise RuntimeError(f"release gate failed for {gate.candidate}: the release stays as it was")
    previous = current_release(proj.storage_root)
    entry = release_entry(
        gate.candidate,
        models[gate.candidate],
        reason=[{k: c[k] for k in ("name", "eval_set", "candidate", "baseline", "diff", "message")} for c in checks],
        at=dt.datetime.now(dt.timezone.utc),
    )
    history = [*previous.get("history", []), previous["current"]] if previous else []
    release = {"current": entry, "previous": previous["current"] if previous else None, "history": history}
    return json_output(
        release,
        entry["weights_sha256"],
        {
            "model": gate.candidate,
            "version": str(entry["version"]),
            "previous": str(previous["current"]["model"] + "@" + str(previous["current"]["version"]))
            if previous
            else "none",
            "why": MetadataValue.md(markdown_table(checks, ["name", "eval_set", "candidate", "baseline", "diff"])),
        },
    )
