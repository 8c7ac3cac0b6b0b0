"""The release gate: a blocking check that a candidate does not regress below its baseline."""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckResult, asset_check

from mixassets.resources import ProjectResource


def gate_verdict(report: pa.Table, eval_set: str, metric: str, tolerance: float) -> tuple[bool, dict[str, float]]:
    """Mean of ``metric`` per model on ``eval_set``; the candidate passes if it is within tolerance of base."""
    rows = report.filter(pc.equal(report["eval_set"], eval_set))
    means = {}
    for label in ("base", "sft_adapter"):
        sel = rows.filter(pc.equal(rows["model"], label))
        if sel.num_rows == 0:
            raise ValueError(f"release gate: no '{label}' rows for eval set '{eval_set}' in eval_report")
        means[label] = float(pc.mean(pc.cast(sel[metric], pa.float64())).as_py())
    return means["sft_adapter"] >= means["base"] - tolerance, means


@asset_check(asset="eval_report", blocking=True, description="The adapter must not regress below the base model.")
def release_gate(project: ProjectResource, eval_report: pa.Table) -> AssetCheckResult:
    gate = project.load().spec.release_gate
    passed, means = gate_verdict(eval_report, gate.eval_set, gate.primary_metric, gate.tolerance)
    return AssetCheckResult(
        passed=passed,
        metadata={
            "eval_set": gate.eval_set,
            "metric": gate.primary_metric,
            "tolerance": gate.tolerance,
            "base": means["base"],
            "candidate": means["sft_adapter"],
            "delta": means["sft_adapter"] - means["base"],
        },
        description=None if passed else f"{gate.primary_metric} regressed beyond tolerance {gate.tolerance}",
    )
