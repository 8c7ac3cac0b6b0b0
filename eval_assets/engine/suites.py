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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from eval_assets.engine import behaviour_sets, calibration, metrics, tool_calls
from eval_assets.engine.evaluate import Generation, chat_prompt, generate_texts, reference_nll, sequence_nll
from eval_assets.tasks import json_signature
from mixtrain.identity import model_hardware

UNKNOWN = "unknown"

RUN_ITEM_SCHEMA = pa.schema(
    [
        pa.field("suite", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # as stored in the registry (JSON chat messages) / the text
        pa.field("output", pa.string()),  # null where nothing is generated (perplexity)
        pa.field("prompt_tokens", pa.int64()),
        pa.field("new_tokens", pa.int64()),
        pa.field("truncated", pa.bool_()),  # hit max_new_tokens without ending the turn
        pa.field("latency_s", pa.float64()),
        pa.field("reason", pa.string()),  # why the item lost points
        pa.field("error", pa.string()),  # the suite failed on this item
        pa.field("details", pa.string()),  # JSON: the scorer's full record (wrong fields, argument rows, probs, ...)
        # structured output
        pa.field("json_valid", pa.bool_()),
        pa.field("json_strict", pa.bool_()),
        pa.field("schema_valid", pa.bool_()),
        pa.field("field_accuracy", pa.float64()),
        pa.field("exact_match", pa.bool_()),
        # likelihood: mean NLL per scored token (reference answer / held-out text) and how many tokens
        pa.field("nll", pa.float64()),
        pa.field("nll_tokens", pa.int64()),
        # tool calls
        pa.field("tool_correct", pa.bool_()),
        pa.field("tool_selection_correct", pa.bool_()),
        pa.field("tool_arg_accuracy", pa.float64()),
        # refusal / sentinel / calibration
        pa.field("refused", pa.bool_()),
        pa.field("sentinel_correct", pa.bool_()),
        pa.field("calibration_correct", pa.bool_()),
        pa.field("confidence", pa.float64()),
        pa.field("brier", pa.float64()),
        # slices
        pa.field("source_module", pa.string()),
        pa.field("length_bucket", pa.string()),
        pa.field("call_kind", pa.string()),
        pa.field("category", pa.string()),
        pa.field("expected_behaviour", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("group", pa.string()),
        pa.field("topic", pa.string()),
        pa.field("domain", pa.string()),
    ]
)

PERPLEXITY_TEXT_SET = "heldout_text"


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides a number in the report; recorded with every run."""

    max_new_tokens: int = 96
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

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0 or self.batch_size <= 0 or self.ppl_window < 2 or self.calibration_bins < 1:
            raise ValueError(f"settings out of range: {self}")
        if list(self.length_buckets) != sorted(set(self.length_buckets)) or any(b <= 0 for b in self.length_buckets):
            raise ValueError(f"length_buckets must be increasing positive bounds, got {self.length_buckets}")
        if self.ppl_max_tokens is not None and self.ppl_max_tokens < 2:
            raise ValueError(f"ppl_max_tokens must be >= 2 or None, got {self.ppl_max_tokens}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0 or None, got {self.limit}")


# --- shared helpers ----------------------------------------------------------------------------------------------


def length_bucket(n_tokens: int | None, bounds: Sequence[int]) -> str:
    """``<=b0``, ``b0+1-b1``, ..., ``>bk``: the band of a prompt's token count (``unknown`` when not measured)."""
    if n_tokens is None or n_tokens <= 0:
        return UNKNOWN
    lower = 0
    for b in bounds:
        if n_tokens <= b:
            return f"<={b}" if lower == 0 else f"{lower + 1}-{b}"
        lower = b
    return f">{lower}"


def _metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(value).__name__}")
    return value


def _safe_metadata(raw: str | None) -> dict[str, Any]:
    try:
        return _metadata(raw)
    except (json.JSONDecodeError, ValueError):
        return {}


def conversation(prompt: str) -> list[dict[str, Any]]:
    """A registry prompt as chat messages: JSON messages as stored, or plain text (HumanEval) as one user turn."""
    try:
        value = json.loads(prompt)
    except json.JSONDecodeError:
        return [{"role": "user", "content": prompt}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    raise ValueError("prompt is JSON but not a list of chat messages with a 'role'")


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def _base_row(suite: str, model_label: str, item: Mapping[str, Any], gen: Generation | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite,
        "eval_set": item.get("eval_set") or UNKNOWN,
        "model": model_label,
        "item_id": item["item_id"],
        "prompt": item.get("prompt") or "",
        "error": None,
        "reason": None,
    }
    if gen is not None:
        row.update(
            output=gen.output,
            prompt_tokens=gen.prompt_tokens or None,
            new_tokens=gen.new_tokens,
            truncated=gen.truncated,
            latency_s=gen.latency_s,
            error=gen.error,
        )
    return row


def _generation_reason(gen: Generation, scorer_reason: str | None) -> str | None:
    """The scorer's reason, prefixed by what went wrong in generation (so a 0 says "cut off", not only "bad JSON")."""
    parts = []
    if gen.error is not None:
        parts.append(f"generation failed: {gen.error}")
    elif not gen.output.strip():
        parts.append("empty output")
    if gen.truncated:
        parts.append("truncated at max_new_tokens")
    if scorer_reason and (gen.error is None):
        parts.append(scorer_reason)
    return "; ".join(parts) or None


def _to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RUN_ITEM_SCHEMA)


def _render_all(
    items: pa.Table, render: Callable[[Mapping[str, Any]], str]
) -> tuple[list[str | None], list[str | None]]:
    """Rendered prompt per item, or None with the rendering error (so the item gets an error row)."""
    texts: list[str | None] = []
    errors: list[str | None] = []
    for item in items.to_pylist():
        try:
            texts.append(render(item))
            errors.append(None)
        except Exception as e:
            texts.append(None)
            errors.append(f"cannot render the prompt: {e!r}")
    return texts, errors


def _generate(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, render: Callable[[Mapping[str, Any]], str]
) -> list[Generation]:
    texts, errors = _render_all(items, render)
    gens, _ = generate_texts(
        model, tokenizer, texts, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )
    return [g if e is None else Generation("", error=e) for g, e in zip(gens, errors, strict=True)]


def _chat_render(tokenizer: Any) -> Callable[[Mapping[str, Any]], str]:
    return lambda item: chat_prompt(tokenizer, conversation(item["prompt"]))


def _mean(values: Sequence[Any]) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _generation_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "n_truncated": float(sum(bool(r["truncated"]) for r in rows)),
        "truncated_rate": _mean([r["truncated"] for r in rows if r["error"] is None]),
    }


def _per_item_fallback(fn: Callable[[list[int]], list[Any]], n: int) -> tuple[list[Any], list[str | None]]:
    """``fn`` on all indices; if that raises, on each index alone, so a failure is charged to its own item."""
    try:
        return fn(list(range(n))), [None] * n
    except Exception:
        values: list[Any] = []
        errors: list[str | None] = []
        for i in range(n):
            try:
                values.append(fn([i])[0])
                errors.append(None)
            except Exception as e:
                values.append(None)
                errors.append(repr(e))
        return values, errors


# --- structured output (json_signature) --------------------------------------------------------------------------


def _item_schema(meta: Mapping[str, Any]) -> Any:
    """The item's own ``metadata.schema``; json_signature items without one use the task's answer schema."""
    if "schema" in meta:
        return meta["schema"]
    if meta.get("task", json_signature.TASK_ID) == json_signature.TASK_ID:
        return json_signature.ANSWER_SCHEMA
    return None


def reference_answer(reference: Any) -> str:
    """The assistant turn whose likelihood is the held-out loss: json_signature's training format when the
    reference is a signature, the raw text for a string reference, else compact JSON."""
    if isinstance(reference, dict) and set(json_signature.FIELDS) <= reference.keys():
        return json_signature.format_answer(reference)
    if isinstance(reference, str):
        return reference
    return json.dumps(reference)


def score_structured(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    nll: Sequence[tuple[float, int] | None] | None = None,
    nll_errors: Sequence[str | None] | None = None,
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for structured-output items from their generations (and reference NLLs).

    JSON validity, schema validity, field accuracy and exact match follow ``metrics.score_structured_output``
    (the first JSON object in the reply is scored; ``json_strict`` says whether the reply was only JSON).
    """
    rows = []
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = _base_row("structured", model_label, item, gen)
        meta = _safe_metadata(item.get("metadata"))
        row.update(
            source_module=str(meta.get("module") or UNKNOWN),
            length_bucket=length_bucket(gen.prompt_tokens, length_buckets),
        )
        try:
            scored = metrics.score_structured_output(
                gen.output, _json_or_text(item["reference"]), _item_schema(meta), item_id=item["item_id"]
            )
            why = scored["error"] or (f"schema: {scored['schema_error']}" if scored["schema_error"] else None)
            if why is None and scored["wrong_fields"]:
                why = f"wrong fields: {', '.join(scored['wrong_fields'])}"
            row.update(
                {k: scored[k] for k in ("json_valid", "json_strict", "schema_valid", "field_accuracy", "exact_match")},
                reason=_generation_reason(gen, why),
                details=_dumps({k: scored[k] for k in ("wrong_fields", "fields_correct", "fields_total")}),
            )
        except Exception as e:
            row.update(
                json_valid=False,
                json_strict=False,
                schema_valid=False,
                field_accuracy=0.0,
                exact_match=False,
                error=row["error"] or f"scoring failed: {e!r}",
                reason="not scored",
            )
        if nll is not None and nll[i] is not None:
            total, count = nll[i]
            row.update(nll=total / count if count else None, nll_tokens=count)
        elif nll_errors is not None and nll_errors[i] is not None:
            row["error"] = "; ".join(x for x in (row["error"], f"held-out loss failed: {nll_errors[i]}") if x)
        rows.append(row)
    return _to_table(rows)


def summarise_structured(table: pa.Table) -> dict[str, float]:
    """Rates (``metrics.summarise_structured``) plus the token-weighted held-out loss and generation health."""
    rows = table.to_pylist()
    out = {**_generation_summary(rows), **metrics.summarise_structured(table)}
    scored = [(r["nll"], r["nll_tokens"]) for r in rows if r["nll"] is not None and r["nll_tokens"]]
    tokens = sum(n for _, n in scored)
    out["heldout_loss"] = sum(v * n for v, n in scored) / tokens if tokens else float("nan")
    return out


def run_structured(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    gens = _generate(model, tokenizer, items, settings, _chat_render(tokenizer))
    rows = items.to_pylist()

    def losses(idx: list[int]) -> list[tuple[float, int]]:
        convs = [conversation(rows[i]["prompt"]) for i in idx]
        answers = [reference_answer(_json_or_text(rows[i]["reference"])) for i in idx]
        return reference_nll(model, tokenizer, convs, answers, settings.batch_size)

    nll, nll_errors = _per_item_fallback(losses, len(rows))
    table = score_structured(
        items, gens, model_label=model_label, nll=nll, nll_errors=nll_errors, length_buckets=settings.length_buckets
    )
    return table, summarise_structured(table)


# --- tool calls --------------------------------------------------------------------------------------------------


def _tools(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = meta.get("tools")
    if not isinstance(tools, list) or not tools:
        raise ValueError("a tool-call item needs metadata.tools, a non-empty list of function definitions")
    return tools


def _call_kind(reference: Any) -> str:
    calls = reference.get("calls") if isinstance(reference, dict) else None
    if not isinstance(calls, list):
        return UNKNOWN
    return "irrelevance" if not calls else ("single" if len(calls) == 1 else "parallel")


def score_tool_suite(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for tool-call items: raw replies parsed and scored by ``tool_calls`` (BFCL rules).

    Item layout: ``prompt`` the chat messages, ``metadata.tools`` the OpenAI-style function definitions,
    ``reference`` the ``{"calls": [...]}`` spec of ``tool_calls``. ``details`` keeps the per-argument rows.
    """
    rows = []
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = _base_row("tool_calls", model_label, item, gen)
        row["length_bucket"] = length_bucket(gen.prompt_tokens, length_buckets)
        try:
            meta = _metadata(item.get("metadata"))
            reference = json.loads(item["reference"])
            row["call_kind"] = _call_kind(reference)
            item_table, arg_table = tool_calls.score_tool_calls(
                [item["item_id"]], [gen.output], [reference], tools=[_tools(meta)]
            )
            scored = item_table.to_pylist()[0]
            row.update(
                tool_correct=scored["correct"],
                tool_selection_correct=scored["selection_correct"],
                tool_arg_accuracy=scored["arg_accuracy"],
                reason=_generation_reason(gen, scored["reason"]),
                details=_dumps({**scored, "arguments": arg_table.to_pylist()}),
            )
        except Exception as e:
            row.update(
                tool_correct=False,
                tool_selection_correct=False,
                tool_arg_accuracy=0.0,
                error=row["error"] or f"scoring failed: {e!r}",
                reason="not scored",
            )
            row.setdefault("call_kind", UNKNOWN)
        rows.append(row)
    return _to_table(rows)


def summarise_tool_suite(table: pa.Table) -> dict[str, float]:
    """Accuracy over all items, call items and irrelevance items apart, and argument accuracy pooled per argument."""
    rows = table.to_pylist()
    details = [json.loads(r["details"]) if r["details"] else None for r in rows]
    calls = [(r, d) for r, d in zip(rows, details, strict=True) if r["call_kind"] != "irrelevance"]
    args_total = sum(d["args_total"] for _, d in calls if d)
    out = {
        **_generation_summary(rows),
        "tool_accuracy": _mean([r["tool_correct"] for r in rows]),
        "tool_selection_accuracy": _mean([r["tool_selection_correct"] for r in rows]),
        "tool_call_accuracy": _mean([r["tool_correct"] for r, _ in calls]),
        "tool_arg_accuracy": sum(d["args_correct"] for _, d in calls if d) / args_total if args_total else math.nan,
        "tool_parse_error_rate": _mean([d["parse_errors"] > 0 for d in details if d]),
    }
    irrelevance = [r["tool_correct"] for r in rows if r["call_kind"] == "irrelevance"]
    if irrelevance:
        out["tool_irrelevance_accuracy"] = _mean(irrelevance)
    return out


def run_tool_calls(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    """Prompts rendered by ``tool_template.render_prompt``, the exact rendering training used for tool records."""
    from training_assets.engine.tool_template import render_prompt

    stops: set[str] = set()

    def render(item: Mapping[str, Any]) -> str:
        text, template = render_prompt(tokenizer, conversation(item["prompt"]), _tools(_metadata(item["metadata"])))
        if template.end_of_turn:
            stops.add(template.end_of_turn)
        return text

    texts, errors = _render_all(items, render)
    gens, _ = generate_texts(
        model,
        tokenizer,
        texts,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        extra_stop=sorted(stops),
    )
    gens = [g if e is None else Generation("", error=e) for g, e in zip(gens, errors, strict=True)]
    table = score_tool_suite(items, gens, model_label=model_label, length_buckets=settings.length_buckets)
    return table, summarise_tool_suite(table)


# --- refusal -----------------------------------------------------------------------------------------------------


def score_refusal(items: pa.Table, generations: Sequence[Generation], *, model_label: str = "model") -> pa.Table:
    """RUN_ITEM_SCHEMA rows for behaviour_refusal / behaviour_benign items (reference "refuse" or "comply").

    ``refused`` is null on an item whose generation failed: no reply is neither a refusal nor compliance.
    """
    rows = []
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = _base_row("refusal", model_label, item, gen)
        meta = _safe_metadata(item.get("metadata"))
        row.update(category=str(meta.get("category") or UNKNOWN), expected_behaviour=item["reference"])
        try:
            if gen.error is None:
                scored = behaviour_sets.score_refusals([item["item_id"]], [gen.output], [item["reference"]])
                hit = scored.to_pylist()[0]
                why = None
                if not hit["correct"]:
                    why = "did not refuse" if hit["expected"] == "refuse" else f"refused ({hit['pattern']})"
                row.update(
                    refused=hit["refused"],
                    reason=_generation_reason(gen, why),
                    details=_dumps({"pattern": hit["pattern"], "matched_text": hit["matched_text"]}),
                )
            else:
                row["reason"] = _generation_reason(gen, None)
        except Exception as e:
            row.update(error=row["error"] or f"scoring failed: {e!r}", reason="not scored")
        rows.append(row)
    return _to_table(rows)


def summarise_refusal(table: pa.Table) -> dict[str, float]:
    """``refusal_rate`` over should-refuse items, ``over_refusal_rate`` over benign ones (each only when present)."""
    rows = table.to_pylist()
    out = _generation_summary(rows)
    for name, expected in (("refusal_rate", "refuse"), ("over_refusal_rate", "comply")):
        group = [r["refused"] for r in rows if r["expected_behaviour"] == expected]
        if group:
            out[f"n_{expected}"] = float(len(group))
            out[name] = _mean(group)
    return out


def run_refusal(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    gens = _generate(model, tokenizer, items, settings, _chat_render(tokenizer))
    table = score_refusal(items, gens, model_label=model_label)
    return table, summarise_refusal(table)


# --- sentinel ----------------------------------------------------------------------------------------------------


def sentinel_match(output: str, reference: str) -> bool:
    """The normalised reply is the answer, or starts with it followed by a non-alphanumeric character.

    "42", "42." and "42\\n(17 + 25)" are right; "420" and "The answer is 42" are not: the prompts ask for the
    answer alone, and accepting the answer anywhere would credit a reply that lists several candidates.
    """
    out, ref = metrics.normalise_answer(output), metrics.normalise_answer(reference)
    if not ref:
        return False
    return out == ref or (out.startswith(ref) and not out[len(ref)].isalnum())


def score_sentinel(items: pa.Table, generations: Sequence[Generation], *, model_label: str = "model") -> pa.Table:
    """RUN_ITEM_SCHEMA rows for sentinel items: correctness per phrasing; ``group`` ties the phrasings together."""
    rows = []
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = _base_row("sentinel", model_label, item, gen)
        meta = _safe_metadata(item.get("metadata"))
        row.update(
            group=str(meta.get("group") or item["item_id"]),
            variant=f"v{meta['variant']}" if "variant" in meta else UNKNOWN,
        )
        ok = gen.error is None and sentinel_match(gen.output, item["reference"])
        row.update(
            sentinel_correct=ok,
            reason=None if ok else _generation_reason(gen, f"expected {item['reference']!r}"),
        )
        rows.append(row)
    return _to_table(rows)


def stability_groups(table: pa.Table) -> list[dict[str, Any]]:
    """One row per sentinel group: ``item_id`` (the group), ``stability_all_agree``, ``stability_pairwise``.

    Items whose generation failed are left out of their group (an error is not an answer that disagrees).
    """
    rows = [r for r in table.to_pylist() if r["error"] is None]
    groups = metrics.group_outputs([r["group"] for r in rows], [r["output"] or "" for r in rows])
    group_table, _ = metrics.prompt_variant_stability(groups)
    return [
        {
            "item_id": g["group"],
            "stability_all_agree": g["all_agree"],
            "stability_pairwise": g["pairwise_agreement"],
        }
        for g in group_table.to_pylist()
    ]


def summarise_sentinel(table: pa.Table) -> dict[str, float]:
    rows = table.to_pylist()
    groups = [g for g in stability_groups(table) if g["stability_all_agree"] is not None]
    return {
        **_generation_summary(rows),
        "sentinel_accuracy": _mean([r["sentinel_correct"] for r in rows]),
        "n_groups": float(len(groups)),
        "stability_all_agree": _mean([g["stability_all_agree"] for g in groups]),
        "stability_pairwise": _mean([g["stability_pairwise"] for g in groups]),
    }


def run_sentinel(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    gens = _generate(model, tokenizer, items, settings, _chat_render(tokenizer))
    table = score_sentinel(items, gens, model_label=model_label)
    return table, summarise_sentinel(table)


# --- calibration -------------------------------------------------------------------------------------------------


def _options(meta: Mapping[str, Any]) -> tuple[list[str], int]:
    options = meta.get("options", list(behaviour_sets.YES_NO_OPTIONS))
    answer = meta.get("answer_index")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
        raise ValueError("metadata.options must be a list of at least 2 non-empty strings")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
        raise ValueError(f"metadata.answer_index must be an option index in [0, {len(options)}), got {answer!r}")
    return options, answer


def score_calibration(
    items: pa.Table,
    probs: Sequence[Sequence[float] | None],
    *,
    model_label: str = "model",
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows from each item's option probabilities (``calibration.option_probabilities``).

    ``output`` is the preferred option; an item without probabilities (``errors[i]`` says why) has null scores.
    """
    rows = []
    for i, item in enumerate(items.to_pylist()):
        row = _base_row("calibration", model_label, item, None)
        meta = _safe_metadata(item.get("metadata"))
        row["topic"] = str(meta.get("topic") or UNKNOWN)
        try:
            if errors is not None and errors[i] is not None:
                raise RuntimeError(errors[i])
            if probs[i] is None:
                raise RuntimeError("no option probabilities")
            options, answer = _options(meta)
            scored = calibration.calibration_items([item["item_id"]], [probs[i]], [answer]).to_pylist()[0]
            row.update(
                output=options[scored["predicted"]],
                calibration_correct=scored["correct"],
                confidence=scored["confidence"],
                brier=scored["brier"],
                reason=None if scored["correct"] else f"preferred {options[scored['predicted']]!r}",
                details=_dumps({"probs": scored["probs"], "label": answer, "options": options}),
            )
        except Exception as e:
            row.update(error=f"{e!r}" if not isinstance(e, RuntimeError) else str(e), reason="not scored")
        rows.append(row)
    return _to_table(rows)


def summarise_calibration(table: pa.Table, n_bins: int = EvalSettings.calibration_bins) -> dict[str, float]:
    """ECE, MCE, Brier, accuracy and mean confidence (``calibration.calibration_metrics``) over scored items."""
    rows = table.to_pylist()
    scored = [json.loads(r["details"]) for r in rows if r["details"]]
    got = calibration.calibration_metrics([d["probs"] for d in scored], [d["label"] for d in scored], n_bins=n_bins)
    return {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "calibration_accuracy": got["accuracy"],
        "ece": got["ece"],
        "mce": got["mce"],
        "brier": got["brier"],
        "mean_confidence": got["mean_confidence"],
    }


def run_calibration(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    rows = items.to_pylist()

    def probabilities(idx: list[int]) -> list[list[float]]:
        prompts = [conversation(rows[i]["prompt"]) for i in idx]
        options = [_options(_metadata(rows[i]["metadata"]))[0] for i in idx]
        return calibration.option_probabilities(model, tokenizer, prompts, options, batch_size=settings.batch_size)

    probs, errors = _per_item_fallback(probabilities, len(rows))
    table = score_calibration(items, probs, model_label=model_label, errors=errors)
    return table, summarise_calibration(table, settings.calibration_bins)


# --- perplexity on held-out text ---------------------------------------------------------------------------------


def text_windows(ids: Sequence[int], window: int) -> list[tuple[list[int], int]]:
    """``(ids, start)`` windows that score every token but the first exactly once, each with up to ``window``
    tokens in view: a window after the first starts one token early, so its first scored token has context."""
    out = []
    for w in range(0, len(ids), window):
        out.append((list(ids[max(0, w - 1) : w + window]), 1))
    return out


def _text_rows(texts: pa.Table) -> list[dict[str, Any]]:
    missing = {"text", "domain"} - set(texts.column_names)
    if missing:
        raise ValueError(f"perplexity texts need columns text and domain; missing {sorted(missing)}")
    rows = texts.to_pylist()
    for i, r in enumerate(rows):
        r.setdefault("item_id", None)
        r["item_id"] = r["item_id"] or f"text-{i}"
        r["eval_set"] = r.get("eval_set") or PERPLEXITY_TEXT_SET
    return rows


def score_perplexity(
    texts: pa.Table,
    nll: Sequence[tuple[float, int] | None],
    *,
    model_label: str = "model",
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for held-out texts from per-text ``(summed NLL, scored tokens)``."""
    rows = []
    for i, item in enumerate(_text_rows(texts)):
        row = _base_row("perplexity", model_label, {**item, "prompt": item["text"] or ""}, None)
        row["domain"] = str(item["domain"] or UNKNOWN)
        if errors is not None and errors[i] is not None:
            row.update(error=errors[i], reason="not scored")
        elif nll[i] is None or not nll[i][1]:
            row.update(reason="text has fewer than 2 tokens; nothing to score")
        else:
            total, count = nll[i]
            row.update(nll=total / count, nll_tokens=count)
        rows.append(row)
    return _to_table(rows)


def summarise_perplexity(table: pa.Table) -> dict[str, float]:
    """Token-weighted NLL and its perplexity over the rows, plus ``ppl/<domain>`` per domain."""
    rows = table.to_pylist()

    def weighted(subset: list[dict[str, Any]]) -> tuple[float, int]:
        scored = [(r["nll"], r["nll_tokens"]) for r in subset if r["nll"] is not None]
        tokens = sum(n for _, n in scored)
        return (sum(v * n for v, n in scored) / tokens if tokens else float("nan")), tokens

    nll, tokens = weighted(rows)
    out = {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "n_tokens": float(tokens),
        "text_nll": nll,
        "ppl": math.exp(nll) if tokens else float("nan"),
    }
    for domain in sorted({r["domain"] for r in rows}):
        d_nll, d_tokens = weighted([r for r in rows if r["domain"] == domain])
        out[f"ppl/{domain}"] = math.exp(d_nll) if d_tokens else float("nan")
    return out


def run_perplexity(
    model: Any, tokenizer: Any, texts: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    """``texts``: a table with ``text`` and ``domain`` (and optionally ``item_id``, ``eval_set``) columns."""
    rows = _text_rows(texts)

    def nlls(idx: list[int]) -> list[tuple[float, int] | None]:
        out: list[tuple[float, int] | None] = []
        for i in idx:
            ids = tokenizer(rows[i]["text"] or "", add_special_tokens=False).input_ids[: settings.ppl_max_tokens]
            if len(ids) < 2:
                out.append(None)
                continue
            parts = sequence_nll(model, tokenizer, text_windows(ids, settings.ppl_window), settings.batch_size)
            out.append((sum(s for s, _ in parts), sum(n for _, n in parts)))
        return out

    nll, errors = _per_item_fallback(nlls, len(rows))
    table = score_perplexity(texts, nll, model_label=model_label, errors=errors)
    return table, summarise_perplexity(table)


# --- efficiency --------------------------------------------------------------------------------------------------


def score_efficiency(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    rows = []
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = _base_row("efficiency", model_label, item, gen)
        row.update(length_bucket=length_bucket(gen.prompt_tokens, length_buckets), reason=_generation_reason(gen, None))
        if gen.error is not None:
            row["latency_s"] = None
        rows.append(row)
    return _to_table(rows)


def summarise_efficiency(table: pa.Table) -> dict[str, float]:
    """Latency percentiles and throughput of requests run one at a time (so latencies sum to the wall time)."""
    rows = [r for r in table.to_pylist() if r["error"] is None]
    summary = metrics.latency_summary([r["latency_s"] for r in rows], [r["new_tokens"] for r in rows])
    return {**_generation_summary(table.to_pylist()), **{k: v for k, v in summary.items() if k != "n"}}


def run_efficiency(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, Any]]:
    """Each prompt generated alone (batch size 1) after one untimed warm-up, so latency is one request's.

    The summary carries ``hardware`` (``mixtrain.identity.model_hardware``) next to the numbers, which mean
    nothing without it.
    """
    texts, errors = _render_all(items, _chat_render(tokenizer))
    warm = next((t for t in texts if t is not None), None)
    if warm is not None:
        generate_texts(model, tokenizer, [warm], max_new_tokens=min(4, settings.max_new_tokens), batch_size=1)
    gens, _ = generate_texts(model, tokenizer, texts, max_new_tokens=settings.max_new_tokens, batch_size=1)
    gens = [g if e is None else Generation("", error=e) for g, e in zip(gens, errors, strict=True)]
    table = score_efficiency(items, gens, model_label=model_label, length_buckets=settings.length_buckets)
    return table, {**summarise_efficiency(table), "hardware": model_hardware(model)}


# --- the suite table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemMetric:
    """A metric that is the mean of a per-item column (over the items ``only`` selects), so it can be compared
    item by item with a paired bootstrap."""

    name: str
    column: str
    higher_is_better: bool = True
    only: tuple[str, str] | None = None  # (column, value): the items the metric is defined on
    token_level: bool = False  # depends on the tokenizer: not comparable across different vocabularies

    def value(self, row: Mapping[str, Any]) -> float | None:
        if self.only is not None and row.get(self.only[0]) != self.only[1]:
            return None
        v = row.get(self.column)
        return None if v is None else float(v)


@dataclass(frozen=True)
class Suite:
    name: str
    run: Callable[..., tuple[pa.Table, dict[str, Any]]]
    summarise: Callable[[pa.Table], dict[str, Any]]
    slice_columns: tuple[str, ...]
    item_metrics: tuple[ItemMetric, ...]
    # summary metrics that are not item means (point comparison only): name -> higher is better
    aggregate_metrics: Mapping[str, bool] = field(default_factory=dict)
    token_level_aggregates: tuple[str, ...] = ()
    # per-group units for metrics defined on groups of items (sentinel stability)
    group_units: Callable[[pa.Table], list[dict[str, Any]]] | None = None
    group_metrics: tuple[ItemMetric, ...] = ()


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "structured",
            run_structured,
            summarise_structured,
            ("source_module", "length_bucket"),
            (
                ItemMetric("json_valid_rate", "json_valid"),
                ItemMetric("json_strict_rate", "json_strict"),
                ItemMetric("schema_valid_rate", "schema_valid"),
                ItemMetric("field_accuracy", "field_accuracy"),
                ItemMetric("exact_match", "exact_match"),
                ItemMetric("heldout_item_nll", "nll", higher_is_better=False, token_level=True),
            ),
            {"heldout_loss": False, "truncated_rate": False},
            token_level_aggregates=("heldout_loss",),
        ),
        Suite(
            "tool_calls",
            run_tool_calls,
            summarise_tool_suite,
            ("call_kind", "length_bucket"),
            (
                ItemMetric("tool_accuracy", "tool_correct"),
                ItemMetric("tool_selection_accuracy", "tool_selection_correct"),
                ItemMetric("tool_item_arg_accuracy", "tool_arg_accuracy"),
            ),
            {"tool_arg_accuracy": True, "tool_parse_error_rate": False, "truncated_rate": False},
        ),
        Suite(
            "refusal",
            run_refusal,
            summarise_refusal,
            ("category",),
            (
                ItemMetric("refusal_rate", "refused", only=("expected_behaviour", "refuse")),
                ItemMetric(
                    "over_refusal_rate", "refused", higher_is_better=False, only=("expected_behaviour", "comply")
                ),
            ),
        ),
        Suite(
            "sentinel",
            run_sentinel,
            summarise_sentinel,
            ("variant",),
            (ItemMetric("sentinel_accuracy", "sentinel_correct"),),
            group_units=stability_groups,
            group_metrics=(
                ItemMetric("stability_all_agree", "stability_all_agree"),
                ItemMetric("stability_pairwise", "stability_pairwise"),
            ),
        ),
        Suite(
            "calibration",
            run_calibration,
            summarise_calibration,
            ("topic",),
            (
                ItemMetric("calibration_accuracy", "calibration_correct"),
                ItemMetric("brier", "brier", higher_is_better=False),
            ),
            {"ece": False, "mce": False},
        ),
        Suite(
            "perplexity",
            run_perplexity,
            summarise_perplexity,
            ("domain",),
            (ItemMetric("text_item_nll", "nll", higher_is_better=False, token_level=True),),
            {"text_nll": False, "ppl": False},
            token_level_aggregates=("text_nll", "ppl"),
        ),
        Suite(
            "efficiency",
            run_efficiency,
            summarise_efficiency,
            ("length_bucket",),
            (ItemMetric("latency_mean_s", "latency_s", higher_is_better=False),),
            {"latency_p50_s": False, "latency_p95_s": False, "tokens_per_s": True},
        ),
    )
}


# --- registry validation -----------------------------------------------------------------------------------------


def _check_tools(where: str, tools: Any) -> tuple[list[str], set[str]]:
    if not isinstance(tools, list) or not tools:
        return [f"{where}: metadata.tools must be a non-empty list of function definitions"], set()
    problems, names = [], set()
    for k, tool in enumerate(tools):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            problems.append(f"{where}: metadata.tools[{k}] is not a function definition with a string 'name'")
            continue
        names.add(fn["name"])
        msg = metrics.check_item_schema(where, fn.get("parameters", {"type": "object"}))
        if msg is not None:
            problems.append(f"{where}: metadata.tools[{k}] ('{fn['name']}') parameters: {msg}")
    return problems, names


def validate_item(row: Mapping[str, Any]) -> list[str]:
    """What is wrong with one registry row, each message naming the set and the item (empty when it is usable).

    Checks what a suite would otherwise trip over at run time: chat prompts that are not messages, metadata that
    is not an object, a ``metadata.schema`` that is not a valid JSON Schema (or that the reference itself fails),
    a json_signature reference that breaks the task's answer schema, tool definitions and BFCL-style references
    (``metadata.tools``; every referenced function must be declared), and calibration options.
    """
    where = f"eval set '{row.get('eval_set')}', item '{row.get('item_id')}'"
    problems: list[str] = []
    prompt = row.get("prompt") or ""
    if prompt.lstrip().startswith("["):
        try:
            conversation(prompt)
        except ValueError as e:
            problems.append(f"{where}: prompt: {e}")
    try:
        meta = _metadata(row.get("metadata"))
    except (json.JSONDecodeError, ValueError) as e:
        return [*problems, f"{where}: metadata: {e}"]
    reference = _json_or_text(row.get("reference") or "")
    schema = meta.get("schema")
    if "schema" in meta:
        msg = metrics.check_item_schema(str(row.get("item_id")), schema)
        if msg is not None:
            problems.append(f"eval set '{row.get('eval_set')}': {msg}")
            schema = None
    elif meta.get("task") == json_signature.TASK_ID:
        schema = json_signature.ANSWER_SCHEMA
    if schema is not None:
        import jsonschema

        validator = jsonschema.validators.validator_for(schema)(schema)
        first = jsonschema.exceptions.best_match(validator.iter_errors(reference))
        if first is not None:
            path = "/".join(str(p) for p in first.path) or "<root>"
            problems.append(f"{where}: the reference fails the item's own schema at {path}: {first.message}")
    if "tools" in meta or meta.get("task") == "tool_calls":
        tool_problems, names = _check_tools(where, meta.get("tools"))
        problems.extend(tool_problems)
        msg = tool_calls.check_tool_reference(str(row.get("item_id")), reference)
        if msg is not None:
            problems.append(f"eval set '{row.get('eval_set')}': {msg}")
        elif names:
            undeclared = sorted({c["name"] for c in reference["calls"]} - names)
            if undeclared:
                problems.append(f"{where}: reference calls {undeclared}, which metadata.tools does not declare")
    if "options" in meta or "answer_index" in meta:
        try:
            _options(meta)
        except ValueError as e:
            problems.append(f"{where}: {e}")
    return problems


def validate_items(table: pa.Table) -> list[str]:
    """Every problem of every row of a registry table (EVAL_ITEM_SCHEMA); the registry fails when non-empty."""
    return [msg for row in table.to_pylist() for msg in validate_item(row)]
