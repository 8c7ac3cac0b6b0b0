"""The evaluation suites: one function per suite that runs a model on an items table and scores every item.

Each suite comes in two halves so the scoring can be tested (and re-run) on outputs without a model:
``run_<suite>(model, tokenizer, items, settings, *, model_label)`` renders, generates or scores likelihoods and
then calls ``score_<suite>(items, <model outputs>, ...)``, which returns one RUN_ITEM_SCHEMA row per item. All
suites share that schema, so the rows of every model and suite form one long table; a column a suite does not
use is null. ``summarise_<suite>(table)`` turns rows (all, or one slice) into a flat ``{metric: value}`` dict.

Robustness rules, the same in every suite:

- A model's bad answer is a bad score, never an exception: garbage, an empty reply or a reply cut off at
  ``max_new_tokens`` (``truncated``) scores 0 and ``reason`` says why.
- An item the suite cannot process (a prompt that does not render, a generation or scoring step that raises)
  keeps its row: ``error`` holds the exception, its scores are 0 (rates) or null (likelihoods, refusals, where a
  0 would be credit or blame the model did not earn), and the other items are unaffected.

Slice columns (strings; null where a suite does not slice by them), decided from the items' metadata:

- ``source_module`` (structured): ``metadata.module``, the stdlib module a json_signature function comes from.
- ``length_bucket`` (structured, tool_calls, efficiency): token count of the rendered prompt, bucketed by
  ``EvalSettings.length_buckets`` upper bounds, e.g. ``<=256``, ``257-512``, ``>1024``.
- ``call_kind`` (tool_calls): ``irrelevance`` (no call expected), ``single`` or ``parallel``.
- ``category`` (refusal): ``metadata.category``; ``expected_behaviour`` (refusal): the reference, refuse/comply.
- ``variant`` (sentinel): ``v<k>``, the phrasing; ``group`` (sentinel) is the task, the unit of stability.
- ``topic`` (calibration): ``metadata.topic``; ``domain`` (perplexity): the text's domain.

Missing metadata gives the slice value ``unknown`` rather than dropping the item from its slices.

The package holds one module per suite, the row layout and helpers they share (``rows``), the run settings
(``settings``), the suite table (``registry.SUITES``) and registry validation (``validation``); the names other
modules use are re-exported here.
"""

from eval_assets.engine.suites.calibration import run_calibration, score_calibration, summarise_calibration
from eval_assets.engine.suites.efficiency import run_efficiency, score_efficiency, summarise_efficiency
from eval_assets.engine.suites.perplexity import (
    PERPLEXITY_TEXT_SET,
    run_perplexity,
    score_perplexity,
    summarise_perplexity,
    text_windows,
)
from eval_assets.engine.suites.refusal import run_refusal, score_refusal, summarise_refusal
from eval_assets.engine.suites.registry import SUITES, ItemMetric, Suite
from eval_assets.engine.suites.rows import RUN_ITEM_SCHEMA, UNKNOWN, conversation, length_bucket
from eval_assets.engine.suites.sentinel import (
    run_sentinel,
    score_sentinel,
    sentinel_match,
    stability_groups,
    summarise_sentinel,
)
from eval_assets.engine.suites.settings import EvalSettings
from eval_assets.engine.suites.structured import (
    reference_answer,
    run_structured,
    score_structured,
    summarise_structured,
)
from eval_assets.engine.suites.tool_calls import run_tool_calls, score_tool_suite, summarise_tool_suite
from eval_assets.engine.suites.validation import checked_registry, validate_item, validate_items

__all__ = [
    "PERPLEXITY_TEXT_SET",
    "RUN_ITEM_SCHEMA",
    "SUITES",
    "UNKNOWN",
    "EvalSettings",
    "ItemMetric",
    "Suite",
    "checked_registry",
    "conversation",
    "length_bucket",
    "reference_answer",
    "run_calibration",
    "run_efficiency",
    "run_perplexity",
    "run_refusal",
    "run_sentinel",
    "run_structured",
    "run_tool_calls",
    "score_calibration",
    "score_efficiency",
    "score_perplexity",
    "score_refusal",
    "score_sentinel",
    "score_structured",
    "score_tool_suite",
    "sentinel_match",
    "stability_groups",
    "summarise_calibration",
    "summarise_efficiency",
    "summarise_perplexity",
    "summarise_refusal",
    "summarise_sentinel",
    "summarise_structured",
    "summarise_tool_suite",
    "text_windows",
    "validate_item",
    "validate_items",
]
