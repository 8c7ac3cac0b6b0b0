"""Tool-call scoring in the manner of BFCL's AST checker: the call is compared as data, never executed.

Reference spec of one item (JSON-serialisable, so it can live in a registry row's ``reference``)::

    {"calls": [{"name": "get_weather",
                "arguments": {"city": ["Paris", "Paris, France"], "unit": ["celsius"]},
                "optional": ["unit"]}]}

- ``arguments`` maps each parameter to a *list of acceptable values* (BFCL's possible-answer layout), so a value
  that is itself a list is written inside one: ``{"ids": [[1, 2, 3]]}``.
- A parameter in ``optional`` may be omitted; so may any parameter that the item's tool definition (``tools``:
  OpenAI-style ``{"name", "parameters": {"properties", "required"}}``) does not list as required, and a value
  equal to the definition's ``default`` is accepted for it as well. A predicted argument that the reference does
  not name is an error ("unexpected argument") unless it equals that parameter's ``default``.
- ``{"calls": []}`` is an irrelevance item: none of the tools fits, and the right answer is no call at all.
- Several reference calls are a parallel call: they are matched to the predicted calls regardless of order.

Value matching (``match_value``), as BFCL does: numbers compare by value across int and float (``2 == 2.0``) but a
bool is never a number; strings compare after ``normalise_string`` (case, spaces and the punctuation
`` ,./-_*^`` removed); lists compare element by element in order; objects key by key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

TOOL_ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("irrelevance", pa.bool_(), nullable=False),  # the reference expects no call
        pa.field("expected_calls", pa.int64(), nullable=False),
        pa.field("predicted_calls", pa.int64(), nullable=False),
        pa.field("parse_errors", pa.int64(), nullable=False),
        pa.field("selection_correct", pa.bool_(), nullable=False),  # same multiset of function names
        pa.field("args_correct", pa.int64(), nullable=False),
        pa.field("args_total", pa.int64(), nullable=False),
        pa.field("arg_accuracy", pa.float64()),  # null when there is no argument to get right
        pa.field("correct", pa.bool_(), nullable=False),  # right functions, every argument right, nothing extra
        pa.field("reason", pa.string()),  # the first thing that went wrong, for the report
    ]
)

TOOL_ARG_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("call_index", pa.int64(), nullable=False),  # index into the reference calls
        pa.field("function", pa.string(), nullable=False),
        pa.field("argument", pa.string(), nullable=False),
        pa.field("expected", pa.string(), nullable=False),  # JSON list of acceptable values
        pa.field("predicted", pa.string()),  # JSON of the predicted value; null when omitted
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_STRING_NOISE = re.compile(r"[ ,./\-_*^]")
_MISSING = object()


class ToolSpecError(ValueError):
    """A reference spec does not have the documented layout; the message names the item and the field."""


def normalise_string(s: str) -> str:
    """BFCL's string standardisation: lower case, without spaces or the characters ``,./-_*^``."""
    return _STRING_NOISE.sub("", s).lower()


def match_value(predicted: Any, expected: Any) -> bool:
    """One predicted argument value against one acceptable value (see the module docstring for the rules)."""
    if isinstance(predicted, bool) or isinstance(expected, bool):
        return isinstance(predicted, bool) and isinstance(expected, bool) and predicted == expected
    if isinstance(expected, int | float) and isinstance(predicted, int | float):
        return predicted == expected or math.isclose(predicted, expected, rel_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(predicted, str) and normalise_string(predicted) == normalise_string(expected)
    if isinstance(expected, list | tuple):
        return (
            isinstance(predicted, list | tuple)
            and len(predicted) == len(expected)
            and all(match_value(p, e) for p, e in zip(predicted, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(predicted, dict)
            and predicted.keys() == expected.keys()
            and all(match_value(predicted[k], v) for k, v in expected.items())
        )
    return predicted is None and expected is None


def _decode_call(payload: Any) -> dict[str, Any]:
    """A ``{"name", "arguments"}`` call from a decoded block; ``arguments`` may arrive as a JSON string."""
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        raise ValueError("not an object with a string 'name'")
    args = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise ValueError(f"'arguments' is a {type(args).__name__}, not an object")
    return {"name": payload["name"], "arguments": args}


def parse_tool_calls(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``(calls, errors)`` from ``<tool_call>{json}</tool_call>`` blocks in raw model output.

    A block that does not decode to a call (bad JSON, no name, an unclosed block cut off by the token limit)
    becomes one entry in ``errors`` and no call, so one broken block neither hides the others nor stops a run.
    """
    calls: list[dict[str, Any]] = []
    errors: list[str] = []
    for n, m in enumerate(_TOOL_CALL_BLOCK.finditer(text), start=1):
        body = m.group(1).strip()
        if not m.group(0).endswith("</tool_call>"):
            errors.append(f"block {n}: no closing </tool_call>")
            continue
        try:
            calls.append(_decode_call(json.loads(body)))
        except json.JSONDecodeError as e:
            errors.append(f"block {n}: JSON parse error at char {e.pos}: {e.msg}")
        except ValueError as e:
            errors.append(f"block {n}: {e}")
    return calls, errors


def _tool_index(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, tool in enumerate(tools or []):
        fn = tool.get("function", tool) if isinstance(tool, Mapping) else None  # {"type": "function", ...} too
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise ToolSpecError(f"tools[{i}] is not a function definition with a string 'name'")
        params = fn.get("parameters", {})
        if not isinstance(params, Mapping):
            raise ToolSpecError(f"tools[{i}] ('{fn['name']}'): 'parameters' must be a JSON Schema object")
        out[fn["name"]] = params
    return out


def _check_reference(item_id: str, reference: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls = reference.get("calls") if isinstance(reference, Mapping) else None
    if not isinstance(calls, list):
        raise ToolSpecError(f"item '{item_id}': reference must be an object with a 'calls' list")
    for i, call in enumerate(calls):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise ToolSpecError(f"item '{item_id}': calls[{i}] needs a string 'name'")
        args = call.get("arguments", {})
        if not isinstance(args, Mapping):
            raise ToolSpecError(f"item '{item_id}': calls[{i}].arguments must be an object")
        for arg, acceptable in args.items():
            if not isinstance(acceptable, list) or not acceptable:
                raise ToolSpecError(
                    f"item '{item_id}': calls[{i}].arguments.{arg} must be a non-empty list of acceptable values"
                )
        if not isinstance(call.get("optional", []), list):
            raise ToolSpecError(f"item '{item_id}': calls[{i}].optional must be a list of parameter names")
    return calls


def check_tool_reference(item_id: str, reference: Any) -> str | None:
    """None for a well-formed reference spec, else the message naming the item and field (registry validation)."""
    try:
        _check_reference(item_id, reference)
    except ToolSpecError as e:
        return str(e)
    return None


def _score_args(
    ref_call: Mapping[str, Any], predicted: Mapping[str, Any] | None, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per reference argument (and per unexpected predicted argument) of one matched call."""
    required = set(params.get("required", [])) if params else None
    props = params.get("properties", {}) if params else {}
    optional = set(ref_call.get("optional", []))
    pred_args = predicted["arguments"] if predicted is not None else {}
    rows: list[dict[str, Any]] = []
    for arg, acceptable in ref_call.get("arguments", {}).items():
        value = pred_args.get(arg, _MISSING) if predicted is not None else _MISSING
        may_omit = arg in optional or (required is not None and arg not in required)
        accepted = list(acceptable)
        if may_omit and isinstance(props.get(arg), Mapping) and "default" in props[arg]:
            accepted.append(props[arg]["default"])
        if predicted is None:
            ok, reason = False, "call not made"
        elif value is _MISSING:
            ok, reason = may_omit, None if may_omit else "required argument omitted"
        else:
            ok = any(match_value(value, a) for a in accepted)
            reason = None if ok else "value not among the acceptable ones"
        rows.append(
            {
                "argument": arg,
                "expected": json.dumps(acceptable, sort_keys=True),
                "predicted": None if value is _MISSING else json.dumps(value, sort_keys=True, default=str),
                "correct": ok,
                "reason": reason,
            }
        )
    for arg in sorted(set(pred_args) - set(ref_call.get("arguments", {}))):
        # Spelling out an optional parameter's default changes nothing about the call, so it is not an error.
        spec = props.get(arg)
        default = spec.get("default", _MISSING) if isinstance(spec, Mapping) else _MISSING
        same_as_default = default is not _MISSING and match_value(pred_args[arg], default)
        rows.append(
            {
                "argument": arg,
                "expected": "[]" if default is _MISSING else json.dumps([default], sort_keys=True),
                "predicted": json.dumps(pred_args[arg], sort_keys=True, default=str),
                "correct": same_as_default,
                "reason": None if same_as_default else "unexpected argument",
            }
        )
    return rows


def score_tool_item(
    predicted: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any],
    *,
    item_id: str = "",
    tools: Sequence[Mapping[str, Any]] | None = None,
    parse_errors: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(item row, argument rows)`` in TOOL_ITEM_SCHEMA / TOOL_ARG_SCHEMA for one item's predicted calls.

    Matching for parallel calls: among all same-name (reference call, predicted call) pairs, the pair with the
    most correct arguments is matched first, then the best of the remaining ones (ties: earlier reference call,
    then earlier prediction). Predicted calls left over are extra calls.
    A parse error makes the item incorrect even when the parsed calls are right: the model emitted a broken call.
    """
    ref_calls = _check_reference(item_id, reference)
    params_by_name = _tool_index(tools)
    pred = [dict(p) for p in predicted]
    for i, p in enumerate(pred):
        if not isinstance(p.get("name"), str) or not isinstance(p.get("arguments", {}), Mapping):
            raise ToolSpecError(f"item '{item_id}': predicted call {i} is not {{name: str, arguments: object}}")
        p.setdefault("arguments", {})
    selection_ok = sorted(c["name"] for c in ref_calls) == sorted(p["name"] for p in pred)
    # Every same-name (reference, prediction) pair is scored; the best-scoring pair is matched first, then the
    # best among the rest, so a wrong early prediction cannot take the partner of a right later one.
    candidates = []
    for ci, ref_call in enumerate(ref_calls):
        params = params_by_name.get(ref_call["name"], {})
        for pi, p in enumerate(pred):
            if p["name"] == ref_call["name"]:
                rows = _score_args(ref_call, p, params)
                candidates.append((-sum(r["correct"] for r in rows), ci, pi, rows))
    matched: dict[int, list[dict[str, Any]]] = {}
    used: set[int] = set()
    for _, ci, pi, rows in sorted(candidates, key=lambda c: c[:3]):
        if ci not in matched and pi not in used:
            matched[ci] = rows
            used.add(pi)
    unmatched = [pi for pi in range(len(pred)) if pi not in used]
    arg_rows: list[dict[str, Any]] = []
    for ci, ref_call in enumerate(ref_calls):
        rows = matched[ci] if ci in matched else _score_args(ref_call, None, params_by_name.get(ref_call["name"], {}))
        arg_rows.extend({"item_id": item_id, "call_index": ci, "function": ref_call["name"], **r} for r in rows)
    args_total = len(arg_rows)
    args_correct = sum(r["correct"] for r in arg_rows)
    reasons = []
    if parse_errors:
        reasons.append(f"{parse_errors} tool-call block(s) failed to parse")
    if not ref_calls and pred:
        reasons.append(f"expected no call, got {[p['name'] for p in pred]}")
    elif not selection_ok:
        reasons.append(f"called {sorted(p['name'] for p in pred)}, expected {sorted(c['name'] for c in ref_calls)}")
    bad = next((r for r in arg_rows if not r["correct"]), None)
    if bad is not None:
        reasons.append(f"{bad['function']}.{bad['argument']}: {bad['reason']}")
    correct = not reasons and not unmatched
    item = {
        "item_id": item_id,
        "irrelevance": not ref_calls,
        "expected_calls": len(ref_calls),
        "predicted_calls": len(pred),
        "parse_errors": parse_errors,
        "selection_correct": selection_ok,
        "args_correct": args_correct,
        "args_total": args_total,
        "arg_accuracy": args_correct / args_total if args_total else None,
        "correct": correct,
        "reason": "; ".join(reasons) or None,
    }
    return item, arg_rows


def score_tool_calls(
    item_ids: Sequence[str],
    outputs: Sequence[str | Sequence[Mapping[str, Any]]],
    references: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Sequence[Mapping[str, Any]] | None] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Per-item and per-argument tables for many items.

    An output is raw model text (parsed with ``parse_tool_calls``) or an already-parsed list of calls.
    ``tools`` is one list of tool definitions per item (or None): it decides which parameters may be omitted.
    """
    n = len(item_ids)
    if len(outputs) != n or len(references) != n or (tools is not None and len(tools) != n):
        raise ValueError(f"{n} item ids but {len(outputs)} outputs / {len(references)} references / tools mismatch")
    items: list[dict[str, Any]] = []
    args: list[dict[str, Any]] = []
    for i in range(n):
        out = outputs[i]
        if isinstance(out, str):
            calls, errors = parse_tool_calls(out)
        else:
            calls, errors = list(out), []
        row, arg_rows = score_tool_item(
            calls, references[i], item_id=item_ids[i], tools=tools[i] if tools else None, parse_errors=len(errors)
        )
        if errors:
            row["reason"] = f"{row['reason']} ({errors[0]})"
        items.append(row)
        args.extend(arg_rows)
    return (
        pa.Table.from_pylist(items, schema=TOOL_ITEM_SCHEMA),
        pa.Table.from_pylist(args, schema=TOOL_ARG_SCHEMA),
    )


def summarise_tool_calls(items: pa.Table) -> dict[str, float]:
    """Rates over a TOOL_ITEM_SCHEMA table, with irrelevance items reported apart from the call items.

    ``selection_accuracy`` and ``accuracy`` cover every item; ``arg_accuracy`` pools arguments over call items
    (each argument counts once, so items with many arguments weigh more, as in BFCL's per-argument view);
    ``irrelevance_accuracy`` is the share of no-call items where the model indeed made no call.
    """
    rows = items.to_pylist()
    call_rows = [r for r in rows if not r["irrelevance"]]
    irr_rows = [r for r in rows if r["irrelevance"]]
    args_total = sum(r["args_total"] for r in call_rows)

    def mean(vals: list[float]) -> float:
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "n": float(len(rows)),
        "n_irrelevance": float(len(irr_rows)),
        "accuracy": mean([r["correct"] for r in rows]),
        "selection_accuracy": mean([r["selection_correct"] for r in rows]),
        "call_accuracy": mean([r["correct"] for r in call_rows]),
        "arg_accuracy": sum(r["args_correct"] for r in call_rows) / args_total if args_total else float("nan"),
        "irrelevance_accuracy": mean([r["predicted_calls"] == 0 for r in irr_rows]),
        "parse_error_rate": mean([r["parse_errors"] > 0 for r in rows]),
    }
