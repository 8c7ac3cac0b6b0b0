"""The evaluation sections of a project: eval sets, the suites run, the release gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mixtrain.config.base import Strict


class EvalSetSpec(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    type: Literal["humaneval", "jsonl"]
    path: str | None = Field(None, description="jsonl file for type=jsonl, relative to the project dir")
    task: Literal["json_signature", "tool_calls", "code"] = "code"
    version: str = "1"
    limit: int | None = Field(None, gt=0, description="take only the first N items (tests)")


class GateCriterion(Strict):
    """One release criterion, checked against the candidate-vs-baseline comparison of eval_report."""

    name: str | None = None
    metric: str
    eval_set: str | None = Field(None, description="default: the gate's eval_set")
    slice: str = Field("all", description="'all', a 'column=value' slice, or '*' for every slice")
    op: Literal[">=", "<=", "no_regression"]
    value: float | None = Field(None, description="threshold of >= / <=")
    tolerance: float = Field(0.0, ge=0, description="no_regression: allowed drop")
    higher_is_better: bool = True
    basis: Literal["point", "ci_low", "ci_high"] = "point"


class ReleaseGateSpec(Strict):
    eval_set: str
    primary_metric: str = "field_accuracy"
    tolerance: float = Field(0.0, ge=0, description="allowed drop of the candidate below the base")
    candidate: str = Field("sft_adapter", description="the model eval_report compares with the base and may promote")
    criteria: list[GateCriterion] = Field(
        default_factory=list, description="further criteria; the primary metric's no-regression is always checked"
    )


class EvalSpec(Strict):
    max_new_tokens: int = Field(96, gt=0)
    batch_size: int = Field(8, gt=0)
    limit: int | None = Field(None, gt=0, description="evaluate at most N items per set (tests)")
    suites: list[
        Literal["structured", "tool_calls", "refusal", "sentinel", "calibration", "perplexity", "efficiency"]
    ] = Field(
        ["structured"],
        description="suites run on every candidate (structured = the json_signature holdouts, tool_calls = the "
        "tool_calls holdouts)",
    )
    perplexity_max_tokens: int | None = Field(
        None, ge=2, description="perplexity scores each held-out document's first N tokens (null: all of it)"
    )
    n_resamples: int = Field(1000, gt=0, description="bootstrap resamples of each candidate-vs-baseline interval")
    seed: int = 0
    generation_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="wall-clock limit on one candidate's evaluation (generation and likelihood scoring, checked "
        "between batches and inside each generate call); a candidate past it is recorded as timed out, its results "
        "are dropped and the release gate refuses it",
    )
