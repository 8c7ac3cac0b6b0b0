"""Blocking checks before a release: the report is complete and measured within budget, and the release gate's
candidate does not regress from the live release (from the base before the first release)."""

import pyarrow as pa
from dagster import AssetCheckResult, MetadataValue, asset_check

from eval_assets.engine.candidates import BASELINE, project_candidates
from eval_assets.engine.gate import gate_verdict
from eval_assets.engine.live import LIVE, gate_baseline
from eval_assets.engine.report_checks import missing_results, nan_scores, over_threshold, truncation_shares
from mixtrain.markdown import markdown_table
from mixtrain.release import current_release
from mixtrain.resources import ProjectResource

CHECK_COLUMNS = [
    "name",
    "eval_set",
    "slice",
    "baseline_model",
    "candidate",
    "baseline",
    "diff",
    "threshold",
    "passed",
    "message",
]


@asset_check(
    asset="eval_comparison",
    blocking=True,
    description="The candidate may be released only if every release criterion holds against the live release "
    "(the base before the first release); primary: no regression.",
)
def release_gate(project: ProjectResource, eval_comparison: pa.Table) -> AssetCheckResult:
    proj = project.load()
    gate = proj.spec.release_gate
    baseline = gate_baseline(current_release(proj.storage_root))
    passed, checks = gate_verdict(eval_comparison, gate, baseline.label, baseline.model)
    failing = [c for c in checks if not c["passed"]]
    primary = checks[0]
    verdict = "passed" if passed else f"failed {len(failing)} of {len(checks)} criteria"
    return AssetCheckResult(
        passed=passed,
        metadata={
            "candidate_model": gate.candidate,
            "compared_with": baseline.model,
            "why_this_baseline": baseline.why,
            "eval_set": gate.eval_set,
            "metric": gate.primary_metric,
            "tolerance": gate.tolerance,
            "base": primary["baseline"],  # the baseline's value (the live model's once one is released)
            "candidate": primary["candidate"],
            "delta": primary["diff"],
            "criteria": MetadataValue.md(markdown_table(checks, CHECK_COLUMNS)),
            "failing": len(failing),
        },
        description=f"{gate.candidate} vs {baseline.model}: {verdict}"
        + ("" if passed else ": " + "; ".join(f"{c['name']}: {c['message']}" for c in failing)),
    )


@asset_check(
    asset="eval_report",
    blocking=True,
    description="Every model (base, candidates, the live release) has results on every configured suite and eval "
    "set, no score is NaN, and the release gate's baseline is present.",
)
def eval_report_complete(project: ProjectResource, eval_report: pa.Table) -> AssetCheckResult:
    proj = project.load()
    baseline = gate_baseline(current_release(proj.storage_root))
    candidates = project_candidates(proj.spec.student_models())
    models = list(dict.fromkeys([BASELINE, *(c.name for c in candidates), baseline.label]))
    missing = missing_results(eval_report, models, proj.spec.evaluation.suites)
    nans = nan_scores(eval_report)
    baseline_present = baseline.label in set(eval_report["model"].to_pylist())
    problems = [f"missing: {m}" for m in missing] + [f"NaN: {n}" for n in nans]
    if not baseline_present:
        problems.insert(0, f"the gate's baseline {baseline.model} ('{baseline.label}') has no rows")
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "models": ", ".join(models),
            "gate_baseline": baseline.model,
            "baseline_present": baseline_present,
            "missing": len(missing),
            "nan_scores": len(nans),
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none"),
        },
        description=None if not problems else "; ".join(problems[:5]),
    )


@asset_check(
    asset="eval_report",
    blocking=True,
    description="The share of outputs cut off by the generation budget, per model and suite; the release "
    "candidate's and the live model's may not exceed release_gate.max_truncated_share (a cut-off answer scores 0). "
    "The base's share is reported, not enforced: before the first release it is all there is to compare with.",
)
def eval_report_truncation(project: ProjectResource, eval_report: pa.Table) -> AssetCheckResult:
    proj = project.load()
    gate = proj.spec.release_gate
    baseline = gate_baseline(current_release(proj.storage_root))
    shares = truncation_shares(eval_report)
    enforced = [gate.candidate] + ([baseline.label] if baseline.label == LIVE else [])
    bad = over_threshold(shares, enforced, gate.max_truncated_share)
    noted = over_threshold(shares, [BASELINE], gate.max_truncated_share) if baseline.label == BASELINE else []
    worst: dict[str, float] = {}
    for r in shares:
        worst[r["model"]] = max(worst.get(r["model"], 0.0), r["share"])

    def listed(rows: list[dict]) -> str:
        return "; ".join(f"{r['model']}/{r['suite']}: {r['share']:.0%} truncated" for r in rows)

    parts = []
    if bad:
        parts.append(
            f"{listed(bad)} (more than {gate.max_truncated_share:.0%}): raise the generation budget or fix the "
            "model's turn ending"
        )
    if noted:
        parts.append(f"note, the gate's baseline {listed(noted)}: 'no regression' from it says little")
    return AssetCheckResult(
        passed=not bad,
        metadata={
            "threshold": gate.max_truncated_share,
            "enforced_on": ", ".join(enforced),
            **{f"truncated_share/{m}": v for m, v in worst.items()},
            "by_model_and_suite": MetadataValue.md(
                markdown_table(shares, ["model", "suite", "generated", "truncated", "share"]) if shares else "none"
            ),
        },
        description="; ".join(parts) or None,
    )
