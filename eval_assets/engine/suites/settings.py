"""The settings of an evaluation run: everything that decides a number in the report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides a number in the report; recorded with every run."""

    max_new_tokens: int = 96  # every suite's budget; with derive_budget, only that of suites without references
    # derive_budget: a suite with reference answers gets ceil(quantile of their tokens x margin), in [floor, cap]
    derive_budget: bool = False
    budget_quantile: float = 1.0
    budget_margin: float = 1.5
    budget_floor: int = 32
    budget_cap: int = 512
    batch_size: int = 8
    dtype: str = "bf16"
    limit: int | None = None  # first N items of each eval set (tests, smoke runs)
    length_buckets: tuple[int, ...] = (128, 256, 512, 1024)  # inclusive upper bounds of prompt-token buckets
    calibration_bins: int = 10
    ppl_window: int = 512  # tokens of context per perplexity window (longer texts are scored window by window)
    ppl_max_tokens: int | None = None  # score only each text's first N tokens (a whole stdlib module is 10k+)
    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    generation_timeout_s: float | None = None  # wall-clock limit per candidate (deadline.time_limit); None: none
    # plugin tasks the config names (evaluation.tasks), as (name, import path); installed ones are found by entry point
    tasks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0 or self.batch_size <= 0 or self.ppl_window < 2 or self.calibration_bins < 1:
            raise ValueError(f"settings out of range: {self}")
        if list(self.length_buckets) != sorted(set(self.length_buckets)) or any(b <= 0 for b in self.length_buckets):
            raise ValueError(f"length_buckets must be increasing positive bounds, got {self.length_buckets}")
        if self.ppl_max_tokens is not None and self.ppl_max_tokens < 2:
            raise ValueError(f"ppl_max_tokens must be >= 2 or None, got {self.ppl_max_tokens}")
        if self.generation_timeout_s is not None and not self.generation_timeout_s > 0:
            raise ValueError(f"generation_timeout_s must be > 0 or None, got {self.generation_timeout_s}")
        if not 0 < self.budget_quantile <= 1 or self.budget_margin < 1 or not 0 < self.budget_floor <= self.budget_cap:
            raise ValueError(
                f"budget rule out of range (0 < quantile <= 1, margin >= 1, 0 < floor <= cap): quantile "
                f"{self.budget_quantile}, margin {self.budget_margin}, floor {self.budget_floor}, cap {self.budget_cap}"
            )
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0 or None, got {self.limit}")
