"""Scores that explain themselves: structured-output checks, latency, and stability across prompt variants.

Every scorer returns one row per item (what was parsed, which check failed and why) next to the aggregate, so a
report can show why a model lost points and a paired bootstrap can resample the same per-item values.

JSON parsing decision: a model's answer is *scored* on the first JSON value found in its output (prose or a
Markdown fence around it is tolerated, as ``json_signature.score`` does), because the task asks what the model
knows, not how tidily it formats. Whether the whole output was nothing but JSON is reported separately as
``json_strict``, so format drift (a chatty fine-tune) stays visible instead of silently costing accuracy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa

STRUCTURED_ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("json_valid", pa.bool_(), nullable=False),  # a JSON value of the reference's kind was found
        pa.field("json_strict", pa.bool_(), nullable=False),  # the output (fences/whitespace aside) is only JSON
        pa.field("schema_valid", pa.bool_()),  # null: the item has no usable schema (see ``error``)
        pa.field("schema_error", pa.string()),  # first validation error of the parsed answer
        pa.field("fields_correct", pa.int64(), nullable=False),
        pa.field("fields_total", pa.int64(), nullable=False),
        pa.field("field_accuracy", pa.float64(), nullable=False),
        pa.field("exact_match", pa.bool_(), nullable=False),
        pa.field("wrong_fields", pa.list_(pa.string()), nullable=False),
        pa.field("error", pa.string()),  # parse failure or an unusable item schema
    ]
)

STABILITY_GROUP_SCHEMA = pa.schema(
    [
        pa.field("group", pa.string(), nullable=False),
        pa.field("n_variants", pa.int64(), nullable=False),
        pa.field("n_distinct", pa.int64(), nullable=False),
        pa.field("all_agree", pa.bool_()),  # null when the group has fewer than 2 variants
        pa.field("pairwise_agreement", pa.float64()),
        pa.field("majority_answer", pa.string()),
        pa.field("error", pa.string()),
    ]
)

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


# --- percentiles and latency ------------------------------------------------------------------------------------


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-quantile (``q`` a fraction in [0, 1], e.g. 0.95) with linear interpolation; NaN when empty.

    A fraction rather than numpy's 0-100 so that call sites read like the metric names (p95 -> 0.95).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a fraction in [0, 1], got {q}")
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan")
    return float(np.quantile(arr, q))


def latency_summary(
    latencies_s: Sequence[float],
    new_tokens: Sequence[int] | None = None,
    *,
    wall_s: float | None = None,
) -> dict[str, float]:
    """p50/p95/max latency and throughput from per-request timings.

    Throughput is total new tokens over ``wall_s`` when given: with batched generation every request in a batch
    reports the batch's latency, so summing latencies would count the same seconds several times. Without
    ``wall_s`` the requests are taken as sequential and the latencies are summed.
    """
    lat = np.asarray(latencies_s, dtype=float)
    if lat.size and (not np.all(np.isfinite(lat)) or np.any(lat < 0)):
        raise ValueError("latencies must be finite and >= 0")
    out = {
        "n": float(lat.size),
        "latency_mean_s": float(lat.mean()) if lat.size else float("nan"),
        "latency_p50_s": percentile(lat, 0.50),
        "latency_p95_s": percentile(lat, 0.95),
        "latency_max_s": float(lat.max()) if lat.size else float("nan"),
    }
    if new_tokens is not None:
        tok = np.asarray(new_tokens, dtype=float)
        if tok.shape != lat.shape:
            raise ValueError(f"{tok.size} token counts for {lat.size} latencies")
        seconds = float(wall_s) if wall_s is not None else float(lat.sum())
        out["new_tokens"] = float(tok.sum())
        out["tokens_per_s"] = float(tok.sum()) / seconds if seconds > 0 else float("nan")
    return out


# --- structured output -------------------------------------------------------------------------------------------


def check_item_schema(item_id: str, schema: Any) -> str | None:
    """None when ``schema`` is a usable JSON Schema, else an error message that names the item.

    The metaschema is chosen by the schema's ``$schema`` (draft 2020-12 when absent), so an item written against
    an older draft is checked by that draft's rules.
    """
    if not isinstance(schema, dict | bool):
        return f"item '{item_id}': schema must be a JSON object or boolean, got {type(schema).__name__}"
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        where = "/".join(str(p) for p in e.path) or "<root>"
        return f"item '{item_id}': invalid JSON Schema at {where}: {e.message}"
    return None


def check_item_schemas(items: Iterable[tuple[str, Any]]) -> list[str]:
    """Every unusable schema among ``(item_id, schema)`` pairs, one message each (registry validation)."""
    return [msg for item_id, schema in items if (msg := check_item_schema(item_id, schema)) is not None]


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    m = _FENCE.match(stripped)
    return m.group(1).strip() if m else stripped


def extract_json(text: str, kinds: tuple[type, ...] = (dict,)) -> tuple[Any, bool, str | None]:
    """``(value, strict, error)``: the first JSON value of one of ``kinds`` in ``text``.

    ``strict`` says the whole output (one Markdown fence and surrounding whitespace aside) was that value.
    ``value`` is None when nothing of the wanted kind parses; ``error`` then says what was wrong.
    """
    body = _strip_fence(text)
    try:
        whole = json.loads(body)
    except json.JSONDecodeError:
        whole = None
    else:
        if isinstance(whole, kinds):
            return whole, True, None
    decoder = json.JSONDecoder()
    openers = ("{" if dict in kinds or object in kinds else "") + ("[" if list in kinds or object in kinds else "")
    if not openers:
        return None, False, "the output is not JSON (only objects and arrays are searched for inside text)"
    last_error = "the output is not JSON and has no " + " or ".join(f"'{c}'" for c in openers)
    for pos, ch in enumerate(text):
        if ch not in openers:
            continue
        try:
            obj, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            last_error = f"JSON parse error at char {e.pos}: {e.msg}"
            continue
        if isinstance(obj, kinds):
            return obj, False, None
        last_error = f"first JSON value is a {type(obj).__name__}, not {'/'.join(k.__name__ for k in kinds)}"
    return None, False, last_error


def values_equal(predicted: Any, expected: Any) -> bool:
    """Deep JSON equality where a bool never equals a number (Python says ``True == 1``; JSON Schema does not).

    ints and floats compare by value (1 == 1.0), as JSON does not distinguish them; lists are order-sensitive.
    """
    if isinstance(predicted, bool) or isinstance(expected, bool):
        return isinstance(predicted, bool) and isinstance(expected, bool) and predicted == expected
    if isinstance(expected, int | float) and isinstance(predicted, int | float):
        return math.isclose(predicted, expected, rel_tol=1e-9, abs_tol=0.0) or predicted == expected
    if isinstance(expected, dict):
        return (
            isinstance(predicted, dict)
            and predicted.keys() == expected.keys()
            and all(values_equal(predicted[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(predicted, list)
            and len(predicted) == len(expected)
            and all(values_equal(p, e) for p, e in zip(predicted, expected, strict=True))
        )
    return type(predicted) is type(expected) and predicted == expected


def _json_kinds(reference: Any) -> tuple[type, ...]:
    """What to look for in the output: the reference's own container kind, or any JSON value for a scalar.

    A scalar is only recognised as the whole output: inside prose, any number or word would "parse".
    """
    if isinstance(reference, dict | list):
        return (type(reference),)
    return (object,)


def score_structured_output(
    output: str,
    reference: Any,
    schema: Any = None,
    *,
    item_id: str = "",
    fields: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One STRUCTURED_ITEM_SCHEMA row for a model ``output`` against the expected JSON ``reference``.

    - ``field_accuracy``: for an object reference, the share of its top-level fields (or ``fields``) that the
      answer has with an equal value (``values_equal``); for any other reference, 1.0 or 0.0 on the whole value.
    - ``exact_match``: the parsed answer equals the reference as a whole (extra keys make it not exact).
    - ``schema_valid``: the answer validates against ``schema``; null when there is no schema or it is unusable,
      so a broken item is not charged to the model (``error`` names the item instead).
    """
    value, strict, parse_error = extract_json(output, _json_kinds(reference))
    parsed = value is not None
    if isinstance(reference, dict):
        names = list(fields) if fields is not None else list(reference)
        missing = [f for f in names if f not in reference]
        if missing:
            raise ValueError(f"item '{item_id}': fields {missing} are not in the reference")
        wrong = [f for f in names if not (parsed and f in value and values_equal(value[f], reference[f]))]
        total = len(names)
    else:
        names = ["<value>"]
        wrong = [] if parsed and values_equal(value, reference) else ["<value>"]
        total = 1
    correct = total - len(wrong)
    schema_valid: bool | None = None
    schema_error: str | None = None
    error = None if parsed else parse_error
    if schema is not None:
        problem = check_item_schema(item_id, schema)
        if problem is not None:
            error = problem if error is None else f"{error}; {problem}"
        elif not parsed:
            schema_valid = False
        else:
            validator = jsonschema.validators.validator_for(schema)(schema)
            first = jsonschema.exceptions.best_match(validator.iter_errors(value))
            schema_valid = first is None
            if first is not None:
                where = "/".join(str(p) for p in first.path) or "<root>"
                schema_error = f"{where}: {first.message}"
    return {
        "item_id": item_id,
        "json_valid": parsed,
        "json_strict": parsed and strict,
        "schema_valid": schema_valid,
        "schema_error": schema_error,
        "fields_correct": correct,
        "fields_total": total,
        "field_accuracy": correct / total if total else 1.0,
        "exact_match": parsed and values_equal(value, reference),
        "wrong_fields": wrong,
        "error": error,
    }


def score_structured_outputs(
    item_ids: Sequence[str],
    outputs: Sequence[str],
    references: Sequence[Any],
    schemas: Sequence[Any] | Any = None,
    *,
    fields: Sequence[str] | None = None,
) -> pa.Table:
    """STRUCTURED_ITEM_SCHEMA rows for many items; ``schemas`` is one schema per item or one for all."""
    n = len(item_ids)
    if len(outputs) != n or len(references) != n:
        raise ValueError(f"{n} item ids, {len(outputs)} outputs, {len(references)} references")
    per_item = isinstance(schemas, list | tuple)
    if per_item and len(schemas) != n:
        raise ValueError(f"{len(schemas)} schemas for {n} items")
    rows = [
        score_structured_output(
            outputs[i], references[i], schemas[i] if per_item else schemas, item_id=item_ids[i], fields=fields
        )
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=STRUCTURED_ITEM_SCHEMA)


def score_structured_registry_items(
    items: pa.Table, outputs: Sequence[str], *, schema_key: str = "schema", default_schema: Any = None
) -> pa.Table:
    """Score outputs against registry rows (EVAL_ITEM_SCHEMA): ``reference`` is JSON, the schema sits in
    ``metadata[schema_key]`` when an item carries its own, else ``default_schema`` (a task-wide schema).

    A reference that is not JSON is compared as a plain string, as the registry stores string references raw.
    """
    ids = items.column("item_id").to_pylist()
    refs: list[Any] = []
    for raw in items.column("reference").to_pylist():
        try:
            refs.append(json.loads(raw))
        except json.JSONDecodeError:
            refs.append(raw)
    schemas: list[Any] = []
    metas = items.column("metadata").to_pylist() if "metadata" in items.column_names else [None] * len(ids)
    for meta in metas:
        parsed = json.loads(meta) if meta else {}
        schemas.append(parsed.get(schema_key, default_schema) if isinstance(parsed, dict) else default_schema)
    return score_structured_outputs(ids, list(outputs), refs, schemas)


def summarise_structured(table: pa.Table) -> dict[str, float]:
    """Rates over a STRUCTURED_ITEM_SCHEMA table; ``schema_valid_rate`` counts only items with a usable schema."""
    n = table.num_rows

    def rate(col: str) -> float:
        vals = [v for v in table.column(col).to_pylist() if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "n": float(n),
        "json_valid_rate": rate("json_valid"),
        "json_strict_rate": rate("json_strict"),
        "schema_valid_rate": rate("schema_valid"),
        "n_schema_checked": float(sum(v is not None for v in table.column("schema_valid").to_pylist())),
        "field_accuracy": rate("field_accuracy"),
        "exact_match": rate("exact_match"),
    }


# --- stability across prompt variants ----------------------------------------------------------------------------


def normalise_answer(text: str) -> str:
    """Case-folded, whitespace-collapsed, without trailing punctuation or wrapping quotes: "Paris." == "paris"."""
    t = " ".join(text.casefold().split())
    return t.strip(" \t.!?;:'\"`")


def prompt_variant_stability(
    outputs_by_group: Mapping[str, Sequence[str]],
    *,
    normalise: Callable[[str], str] = normalise_answer,
) -> tuple[pa.Table, dict[str, float]]:
    """Whether a model says the same thing when a question is asked K ways.

    Per group (one item, K variant prompts): ``all_agree`` (every normalised output identical) and
    ``pairwise_agreement`` (share of the K*(K-1)/2 variant pairs that agree, which credits 2-of-3 agreement that
    ``all_agree`` does not). A group with fewer than two outputs cannot disagree; it is kept in the table with an
    error and left out of the rates rather than counted as agreeing.
    """
    rows: list[dict[str, Any]] = []
    for group, outputs in outputs_by_group.items():
        norm = [normalise(o) for o in outputs]
        counts: dict[str, int] = {}
        for a in norm:
            counts[a] = counts.get(a, 0) + 1
        majority = max(counts, key=lambda a: (counts[a], -norm.index(a))) if norm else None
        if len(norm) < 2:
            rows.append(
                {
                    "group": str(group),
                    "n_variants": len(norm),
                    "n_distinct": len(counts),
                    "all_agree": None,
                    "pairwise_agreement": None,
                    "majority_answer": majority,
                    "error": f"group '{group}' has {len(norm)} variant(s); stability needs at least 2",
                }
            )
            continue
        pairs = list(combinations(norm, 2))
        rows.append(
            {
                "group": str(group),
                "n_variants": len(norm),
                "n_distinct": len(counts),
                "all_agree": len(counts) == 1,
                "pairwise_agreement": sum(a == b for a, b in pairs) / len(pairs),
                "majority_answer": majority,
                "error": None,
            }
        )
    table = pa.Table.from_pylist(rows, schema=STABILITY_GROUP_SCHEMA)
    scored = [r for r in rows if r["error"] is None]
    summary = {
        "n_groups": float(len(scored)),
        "n_skipped": float(len(rows) - len(scored)),
        "agreement_rate": float(np.mean([r["all_agree"] for r in scored])) if scored else float("nan"),
        "mean_pairwise_agreement": float(np.mean([r["pairwise_agreement"] for r in scored]))
        if scored
        else float("nan"),
    }
    return table, summary


def group_outputs(groups: Sequence[str], outputs: Sequence[str]) -> dict[str, list[str]]:
    """``{group: [outputs in input order]}`` from parallel columns, for ``prompt_variant_stability``."""
    if len(groups) != len(outputs):
        raise ValueError(f"{len(groups)} group labels for {len(outputs)} outputs")
    out: dict[str, list[str]] = {}
    for g, o in zip(groups, outputs, strict=True):
        out.setdefault(g, []).append(o)
    return out
