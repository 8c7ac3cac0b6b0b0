"""The released model: the candidate the release gate let through, with why, and the one before it for rollback.

It depends on ``eval_comparison``, whose ``release_gate`` check is blocking, and on ``eval_report``, whose
``eval_report_complete`` and ``eval_report_truncation`` checks are blocking: a regressed candidate, or a report
that cannot support the comparison, stops the run before this asset, so the live release stays what it was.
The gate compares with the live release (the base before the first release, ``engine.live.gate_baseline``).
The released model's item rows are stored with its release, so the next evaluation reuses them instead of
evaluating it again (``assets.live``). ``mixtrain rollback`` moves the release back to the previous one.
"""

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, MetadataValue

from eval_assets.assets.live import store_snapshot
from eval_assets.assets.wiring import candidate_ins, evaluation_asset
from eval_assets.engine.candidates import Candidate
from eval_assets.engine.live import GateBaseline, gate_baseline
from eval_assets.engine.release import next_release, promotion_checks, release_name, release_reason
from mixtrain.markdown import markdown_table
from mixtrain.release import check_release, current_release, release_entry
from mixtrain.resources import ProjectResource
from mixtrain.summary import latest_metadata
from mixtrain.versioning import json_output


def released_model_asset(candidates: Sequence[Candidate]) -> AssetsDefinition:
    """``released_model`` reading ``candidates`` (the gate's candidate is one of them): built per project, like
    ``eval_report``."""

    @evaluation_asset(
        ins={"eval_comparison": AssetIn(), "eval_report": AssetIn(), **candidate_ins(candidates)},
        io_manager_key="json_io_manager",
        code_version="release-2",
        description="The model promoted by the release gate, why, and the previous release (mixtrain rollback).",
    )
    def released_model(
        context: AssetExecutionContext,
        project: ProjectResource,
        eval_comparison: pa.Table,
        eval_report: pa.Table,
        **trained,
    ):
        proj = project.load()
        gate = proj.spec.release_gate
        previous = current_release(proj.storage_root)
        record = latest_metadata(context.instance, "eval_report").get("record") or {}
        # The baseline the evaluation compared with (what was live then): a rerun after a crash that had already
        # written this release must not look for a comparison with the candidate itself.
        recorded = record.get("gate_baseline")
        baseline = (
            GateBaseline(recorded["label"], recorded["model"], recorded["why"]) if recorded else gate_baseline(previous)
        )
        checks = promotion_checks(gate, eval_comparison, trained, baseline)
        at = dt.datetime.now(dt.timezone.utc)
        entry = release_entry(gate.candidate, trained[gate.candidate], reason=release_reason(checks), at=at)
        check_release(proj.storage_root, entry)  # what it pins is published as pinned, so a rollback can restore it
        if record.get("fingerprint"):  # the report this run read; without one, the next evaluation runs the model again
            entry["eval"] = store_snapshot(proj, entry, eval_report, record)
        metadata = {
            "model": gate.candidate,
            "version": str(entry["version"]),
            "base_version": str((entry["base"] or {}).get("version")),
            "previous": release_name(previous),
            "compared_with": baseline.model,
            "why": MetadataValue.md(
                markdown_table(checks, ["name", "eval_set", "baseline_model", "candidate", "baseline", "diff"])
            ),
        }
        return json_output(next_release(previous, entry), entry["weights_sha256"], metadata)

    return released_model
