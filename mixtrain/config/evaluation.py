"""The evaluation sections of a project: eval sets, the suites run, the release gate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from mixtrain.config.base import Strict
from mixtrain.config.errors import suggest
from mixtrain.config.plugins import check_import_path, entry_point_names

# What the project can name without a plugin: the tasks an eval set declares and the suites an evaluation runs.
BUILT_IN_TASKS = ("json_signature", "tool_calls", "code")
BUILT_IN_SUITES = ("structured", "tool_calls", "refusal", "sentinel", "calibration", "perplexity", "efficiency")
# Installed evaluation tasks: each entry point loads an EvalTask (eval_assets.engine.task_plugins) under its name,
# which eval sets give as their ``task`` and ``evaluation.suites`` lists like a built-in suite.
EVAL_TASKS_GROUP = "mixtrain.eval_tasks"
TASK_NAME = r"^[a-z][a-z0-9_]*$"


def _not_built_in(name: str) -> str:
    if name in BUILT_IN_TASKS or name in BUILT_IN_SUITES:
        raise ValueError(f"'{name}' is a built-in task or suite; give the plugin task another name")
    return name


class EvalSetSpec(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    type: Literal["humaneval", "jsonl"]
    path: str | None = Field(None, description="jsonl file for type=jsonl, relative to the project dir")
    task: str = Field(
        "code",
        pattern=TASK_NAME,
        description=f"one of {', '.join(BUILT_IN_TASKS)}, or a plugin task's name (evaluation.tasks or the "
        f"'{EVAL_TASKS_GROUP}' entry points): the project checks it is one",
    )
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
    candidate: str = Field(
        "sft_adapter",
        description="the model the gate checks against the live release (the base before the first release) and may "
        "promote",
    )
    slice_basis: Literal["point", "ci_low", "ci_high"] | None = Field(
        "ci_high",
        description="the primary metric's no-regression checked on every slice too ('*'), judged on: ci_high (a slice "
        "fails when the whole bootstrap interval of its change lies below -tolerance: a drop the data shows, not "
        "noise of a small slice), point (any drop fails), ci_low (fails unless the slice is shown not to drop); "
        "null: the overall check alone",
    )
    criteria: list[GateCriterion] = Field(
        default_factory=list, description="further criteria; the primary metric's no-regression is always checked"
    )
    max_truncated_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="eval_report's blocking check: the share of the candidate's and its comparison baseline's outputs "
        "cut off by the generation budget, per suite, may not exceed this (a cut-off answer scores 0, so a mostly "
        "truncated model makes 'no regression' meaningless)",
    )


class GenerationBudgetSpec(Strict):
    """How many new tokens a suite may generate, derived from its reference answers: a budget far above the
    longest answer wastes time on runaway models, one below it scores correct answers as cut off."""

    quantile: float = Field(1.0, gt=0, le=1, description="1.0: the longest reference answer; 0.95: its p95")
    margin: float = Field(1.5, ge=1, description="multiplier on that many reference tokens (formatting varies)")
    floor: int = Field(32, gt=0, description="never fewer new tokens than this")
    cap: int = Field(512, gt=0, description="never more new tokens than this")
    default: int = Field(96, gt=0, description="the budget of suites without reference answers (behaviour sets)")

    @model_validator(mode="after")
    def _ordered(self) -> GenerationBudgetSpec:
        if self.floor > self.cap:
            raise ValueError(f"generation_budget: floor {self.floor} is above cap {self.cap}")
        return self


class EvalSpec(Strict):
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="one fixed generation budget for every suite (overrides generation_budget); null: derived per "
        "suite from its reference answers",
    )
    generation_budget: GenerationBudgetSpec = Field(default_factory=GenerationBudgetSpec)
    batch_size: int = Field(8, gt=0)
    limit: int | None = Field(None, gt=0, description="evaluate at most N items per set (tests)")
    # tasks precedes suites so that the suites validator can see it
    tasks: dict[
        Annotated[str, Field(pattern=TASK_NAME), AfterValidator(_not_built_in)],
        Annotated[str, AfterValidator(check_import_path)],
    ] = Field(
        {},
        description="plugin evaluation tasks by name, as import paths 'package.module:name' of an EvalTask (instance, "
        "subclass or factory); a name here is a suite (listed in suites) and the task of the eval sets it scores",
    )
    suites: list[str] = Field(
        ["structured"],
        description="suites run on every candidate (structured = the json_signature holdouts, tool_calls = the "
        f"tool_calls holdouts), and plugin tasks (evaluation.tasks, or the '{EVAL_TASKS_GROUP}' entry points)",
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

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, v: list[str], info: ValidationInfo) -> list[str]:
        known = [*BUILT_IN_SUITES, *(info.data.get("tasks") or {})]
        if any(name not in known for name in v):  # entry points only when needed: reading them takes ~50 ms
            known += entry_point_names(EVAL_TASKS_GROUP)
        for name in v:
            if name not in known:
                raise ValueError(
                    f"unknown suite '{name}'{suggest(name, known)} (known: {', '.join(known)}; a plugin task is "
                    f"named in evaluation.tasks or installed as a '{EVAL_TASKS_GROUP}' entry point)"
                )
        return v
