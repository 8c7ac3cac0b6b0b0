"""The release gate: a blocking check on the candidate's comparison with the base, criteria from config."""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckResult, MetadataValue, asset_check

from eval_assets.engine.gate import evaluate_gate
from mixtrain.config.evaluation import ReleaseGateSpec
from mixtrain.markdown import markdown_table
from mixtrain.resources import ProjectResource


def gate_criteria(gate: ReleaseGateSpec) -> list[dict]:
    """The primary metric's no-regression criterion first, then the configured ones, each with its eval set."""
    primary = {
        "name": f"{gate.primary_metric} no regression",
        "metric": gate.primary_metric,
        "op": "no_regression",
        "tolerance": gate.tolerance,
        "eval_set": gate.eval_set,
    }
    rest = [{**c.model_dump(exclude_unset=True), "eval_set": c.eval_set or gate.eval_set} for c in gate.criteria]
    return [primary, *rest]


def gate_verdict(comparison: pa.Table, gate: ReleaseGateSpec) -> tuple[bool, list[dict]]:
    """Every criterion checked on the candidate's rows of its eval set; (passed, one row per check)."""
    mine = comparison.filter(pc.equal(comparison["candidate_model"], gate.candidate))
    checks: list[dict] = []
    for criterion in gate_criteria(gate):
        eval_set = criterion.pop("eval_set")
        rows = mine.filter(pc.equal(mine["eval_set"], eval_set))
        checks.extend({**c, "eval_set": eval_set} for c in evaluate_gate([criterion], rows).checks)
    return all(c["passed"] for c in checks), checks


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
    columns = ["name", "eval_set", "slice", "candidate", "baseline", "diff", "threshold", "passed", "message"]
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
            "criteria": MetadataValue.md(markdown_table(checks, columns)),
            "failing": len(failing),
        },
        description=None if passed else "; ".join(f"{c['name']}: {c['message']}" for c in failing),
    )
