"""The released model: the candidate the release gate let through, with why, and the one before it for rollback.

It depends on ``eval_comparison``, whose ``release_gate`` check is blocking: a regressed candidate stops the run
before this asset, so the live release stays what it was. ``mixtrain rollback`` moves it back to the previous one.
"""

import datetime as dt

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue

from eval_assets.assets.wiring import candidate_ins, evaluation_asset
from eval_assets.engine.release import next_release, promotion_checks, release_name, release_reason
from mixtrain.markdown import markdown_table
from mixtrain.release import check_release, current_release, release_entry
from mixtrain.resources import ProjectResource
from mixtrain.versioning import json_output


@evaluation_asset(
    ins={"eval_comparison": AssetIn(), **candidate_ins()},
    io_manager_key="json_io_manager",
    code_version="release-1",
    description="The model promoted by the release gate, why, and the previous release (mixtrain rollback).",
)
def released_model(context: AssetExecutionContext, project: ProjectResource, eval_comparison: pa.Table, **trained):
    proj = project.load()
    gate = proj.spec.release_gate
    checks = promotion_checks(gate, eval_comparison, trained)
    previous = current_release(proj.storage_root)
    at = dt.datetime.now(dt.timezone.utc)
    entry = release_entry(gate.candidate, trained[gate.candidate], reason=release_reason(checks), at=at)
    check_release(proj.storage_root, entry)  # what it pins is published as pinned, so a rollback can restore it
    metadata = {
        "model": gate.candidate,
        "version": str(entry["version"]),
        "base_version": str((entry["base"] or {}).get("version")),
        "previous": release_name(previous),
        "why": MetadataValue.md(markdown_table(checks, ["name", "eval_set", "candidate", "baseline", "diff"])),
    }
    return json_output(next_release(previous, entry), entry["weights_sha256"], metadata)
