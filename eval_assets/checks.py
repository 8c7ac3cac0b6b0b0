"""The release gate: a blocking check on the candidate's comparison with the base, criteria from config."""

import pyarrow as pa
from dagster import AssetCheckResult, MetadataValue, asset_check

from eval_assets.engine.gate import gate_verdict
from mixtrain.markdown import markdown_table
from mixtrain.resources import ProjectResource

CHECK_COLUMNS = ["name", "eval_set", "slice", "candidate", "baseline", "diff", "threshold", "passed", "message"]


@asset_check(
    asset="eval_comparison",
    blocking=True,
    description="The candidate may be released only if every release criterion holds (primary: no regression).",
)
def release_gate(project: ProjectResource, eval_comparison: pa.Table) -> AssetCheckResult:
    gate = project.load().spec.release_gate
    passed, checks = gate_verdict(eval_comparison, gate)
    failing = [c for c in checks if not c["passed"]]
    primary = checks[0]
    return AssetCheckResult(
        passed=passed,
        metadata={
            "candidate_model": gate.candidate,
            "eval_set": gate.eval_set,
            "metric": gate.primary_metric,
            "tolerance": gate.tolerance,
            "base": primary["baseline"],
            "candidate": primary["candidate"],
            "delta": primary["diff"],
            "criteria": MetadataValue.md(markdown_table(checks, CHECK_COLUMNS)),
            "failing": len(failing),
        },
        description=None if passed else "; ".join(f"{c['name']}: {c['message']}" for c in failing),
    )
