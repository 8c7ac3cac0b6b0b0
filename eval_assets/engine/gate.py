"""Release criteria checked against a comparison table (``bootstrap.COMPARISON_SCHEMA`` or the same columns).

A criterion is a dict::

    {"name": "no worse on accuracy",        # optional; default "<metric>[<slice>] <op> <value|tolerance>"
     "metric": "field_accuracy",
     "slice": "all",                         # optional, default "all"; "*" = every slice the table has for it
     "op": ">=" | "<=" | "no_regression",
     "value": 0.8,                           # for >= and <=: the bound on the candidate's value
     "tolerance": 0.02,                      # for no_regression: allowed drop (default 0)
     "higher_is_better": true,               # for no_regression; false for latency, over-refusal, ...
     "basis": "point" | "ci_high" | "ci_low"}  # for no_regression, default "point"

``no_regression`` compares ``diff = candidate - baseline`` (sign flipped when lower is better) with
``-tolerance`` on one of three bases: ``point`` fails when the measured drop exceeds the tolerance (the rule of
``ReleaseGateSpec``); ``ci_high`` fails only when the whole interval lies below it (a drop that noise cannot
explain); ``ci_low`` fails unless the interval rules such a drop out (strict: small sets rarely pass).

The gate never passes by accident: a malformed criterion, a metric or slice missing from the table, a NaN value
or a missing baseline/interval that the criterion needs each fail that criterion with a message saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mixtrain.config.evaluation import ReleaseGateSpec

OPS = (">=", "<=", "no_regression")
BASES = ("point", "ci_high", "ci_low")
ALL_SLICES = "*"
DEFAULT_SLICE = "all"
_KEYS = {"name", "metric", "slice", "op", "value", "tolerance", "higher_is_better", "basis"}

GATE_CHECK_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("metric", pa.string()),
        pa.field("slice", pa.string()),
        pa.field("op", pa.string()),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("candidate", pa.float64()),
        pa.field("baseline", pa.float64()),
        pa.field("diff", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("threshold", pa.float64()),  # the bound the checked figure was compared with
        pa.field("message", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)  # GATE_CHECK_SCHEMA rows, one per (criterion, slice)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    def to_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.checks, schema=GATE_CHECK_SCHEMA)


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def validate_criterion(c: Any) -> str | None:
    """None for a well-formed criterion, else what is wrong with it."""
    if not isinstance(c, Mapping):
        return f"a criterion must be a mapping, got {type(c).__name__}"
    unknown = sorted(set(c) - _KEYS)
    if unknown:
        return f"unknown key(s) {unknown}; allowed: {sorted(_KEYS)}"
    if not isinstance(c.get("metric"), str) or not c["metric"]:
        return "'metric' must be a non-empty string"
    if not isinstance(c.get("slice", DEFAULT_SLICE), str):
        return "'slice' must be a string"
    op = c.get("op")
    if op not in OPS:
        return f"'op' must be one of {list(OPS)}, got {op!r}"
    if op in (">=", "<="):
        if _num(c.get("value")) is None:
            return f"op '{op}' needs a numeric 'value'"
        extra = sorted({"tolerance", "higher_is_better", "basis"} & set(c))
        if extra:
            return f"op '{op}' does not use {extra}"
    else:
        if "value" in c:
            return "op 'no_regression' takes 'tolerance', not 'value'"
        tol = _num(c.get("tolerance", 0.0))
        if tol is None or tol < 0:
            return "'tolerance' must be a number >= 0"
        if c.get("basis", "point") not in BASES:
            return f"'basis' must be one of {list(BASES)}, got {c.get('basis')!r}"
        if not isinstance(c.get("higher_is_better", True), bool):
            return "'higher_is_better' must be true or false"
    return None


def criterion_name(c: Mapping[str, Any]) -> str:
    if isinstance(c.get("name"), str) and c["name"]:
        return c["name"]
    bound = c.get("value") if c.get("op") in (">=", "<=") else f"tol={c.get('tolerance', 0.0)}"
    return f"{c.get('metric')}[{c.get('slice', DEFAULT_SLICE)}] {c.get('op')} {bound}"


def _rows(table: pa.Table | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    for i, r in enumerate(rows):
        missing = {"metric", "slice", "candidate"} - set(r)
        if missing:
            raise ValueError(f"comparison row {i} lacks column(s) {sorted(missing)}")
    return rows


def _check_one(c: Mapping[str, Any], name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    cand, base = _num(row.get("candidate")), _num(row.get("baseline"))
    lo, hi = _num(row.get("ci_low")), _num(row.get("ci_high"))
    diff = None if cand is None or base is None else cand - base
    out = {
        "name": name,
        "metric": c["metric"],
        "slice": row["slice"],
        "op": c["op"],
        "candidate": cand,
        "baseline": base,
        "diff": diff,
        "ci_low": lo,
        "ci_high": hi,
        "threshold": None,
    }
    where = f"{c['metric']}[{row['slice']}]"
    if cand is None:
        return {**out, "passed": False, "message": f"{where}: candidate value is missing or NaN"}
    if c["op"] in (">=", "<="):
        bound = float(c["value"])
        ok = cand >= bound if c["op"] == ">=" else cand <= bound
        return {**out, "threshold": bound, "passed": ok, "message": f"{where}: {cand:.4g} {c['op']} {bound:.4g}"}
    tol = float(c.get("tolerance", 0.0))
    sign = 1.0 if c.get("higher_is_better", True) else -1.0
    basis = c.get("basis", "point")
    figure = {"point": diff, "ci_high": hi, "ci_low": lo}[basis]
    if basis == "point" and figure is None:
        return {**out, "passed": False, "message": f"{where}: no baseline value to compare with"}
    if figure is None:
        return {**out, "passed": False, "message": f"{where}: basis '{basis}' needs a confidence interval; none given"}
    if sign < 0 and basis != "point":
        # Lower is better: the interval on -diff is [-ci_high, -ci_low], so the bounds swap roles.
        figure = {"ci_high": lo, "ci_low": hi}[basis]
    improvement = sign * figure
    ok = improvement >= -tol
    direction = "higher" if sign > 0 else "lower"
    msg = (
        f"{where}: candidate {cand:.4g} vs baseline {base if base is None else f'{base:.4g}'}; "
        f"{basis} change {improvement:+.4g} ({direction} is better), allowed drop {tol:.4g}"
    )
    return {**out, "threshold": -tol, "passed": ok, "message": msg}


def evaluate_gate(
    criteria: Sequence[Mapping[str, Any]], comparison: pa.Table | Sequence[Mapping[str, Any]]
) -> GateResult:
    """Check every criterion; ``passed`` only when every check passed (an empty criteria list fails).

    ``comparison`` has columns metric, slice, candidate, baseline, ci_low, ci_high (the last three may be null
    for a metric without a baseline, e.g. a latency budget). A ``"*"`` slice expands to one check per slice.
    """
    rows = _rows(comparison)
    index: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        index.setdefault((r["metric"], r["slice"]), []).append(r)
    checks: list[dict[str, Any]] = []
    for i, c in enumerate(criteria):
        problem = validate_criterion(c)
        if problem is not None:
            name = criterion_name(c) if isinstance(c, Mapping) else f"criterion #{i}"
            checks.append(_failure(name, c, f"criterion #{i} is malformed: {problem}"))
            continue
        name = criterion_name(c)
        metric, wanted = c["metric"], c.get("slice", DEFAULT_SLICE)
        slices = [s for (m, s) in index if m == metric]
        if not slices:
            known = sorted({m for m, _ in index})
            checks.append(_failure(name, c, f"metric '{metric}' is not in the comparison table (has: {known})"))
            continue
        targets = slices if wanted == ALL_SLICES else [wanted]
        for s in targets:
            found = index.get((metric, s), [])
            if len(found) != 1:
                why = "is missing" if not found else f"appears {len(found)} times"
                checks.append(_failure(name, c, f"{metric}[{s}] {why} in the comparison table (slices: {slices})", s))
                continue
            checks.append(_check_one(c, name, found[0]))
    if not criteria:
        checks.append(_failure("no criteria", {}, "the gate has no criteria; an empty gate does not pass"))
    passed = all(ch["passed"] for ch in checks)
    return GateResult(passed=passed, checks=checks)


def _failure(name: str, c: Any, message: str, slice_: str | None = None) -> dict[str, Any]:
    spec = c if isinstance(c, Mapping) else {}

    def text(key: str, default: str | None = None) -> str | None:
        v = spec.get(key, default)
        return v if isinstance(v, str) else None

    return {
        "name": name,
        "metric": text("metric"),
        "slice": slice_ if slice_ is not None else text("slice", DEFAULT_SLICE),
        "op": text("op"),
        "passed": False,
        "candidate": None,
        "baseline": None,
        "diff": None,
        "ci_low": None,
        "ci_high": None,
        "threshold": None,
        "message": message,
    }


def gate_criteria(gate: ReleaseGateSpec) -> list[dict]:
    """The primary metric's no-regression criterion first, then the same on every slice (``slice_basis``), then the
    configured ones, each with its eval set.

    Why every slice: an overall score can hold while one kind of item gets worse (a candidate that gains on easy
    items and loses the hard ones). Judged on the bootstrap interval by default, so that a slice of a few items
    blocks a release only when its drop is more than resampling noise.
    """
    primary = {
        "name": f"{gate.primary_metric} no regression",
        "metric": gate.primary_metric,
        "op": "no_regression",
        "tolerance": gate.tolerance,
        "eval_set": gate.eval_set,
    }
    slices = []
    if gate.slice_basis is not None:
        slices.append(
            {
                **primary,
                "name": f"{gate.primary_metric} no regression in any slice ({gate.slice_basis})",
                "slice": ALL_SLICES,
                "basis": gate.slice_basis,
            }
        )
    rest = [{**c.model_dump(exclude_unset=True), "eval_set": c.eval_set or gate.eval_set} for c in gate.criteria]
    return [primary, *slices, *rest]


def gate_verdict(
    comparison: pa.Table, gate: ReleaseGateSpec, baseline: str = "base", baseline_name: str | None = None
) -> tuple[bool, list[dict]]:
    """Every criterion checked on the candidate's rows against ``baseline`` (a ``baseline_model`` label: the live
    release or the base, ``live.gate_baseline``) in its eval set; (passed, one row per check). Without such rows
    every criterion fails and says that the comparison with that baseline is missing."""
    mine = comparison.filter(
        pc.and_(
            pc.equal(comparison["candidate_model"], gate.candidate), pc.equal(comparison["baseline_model"], baseline)
        )
    )
    shown = baseline if baseline_name is None or baseline_name == baseline else f"{baseline} ({baseline_name})"
    checks: list[dict] = []
    for criterion in gate_criteria(gate):
        eval_set = criterion.pop("eval_set")
        rows = mine.filter(pc.equal(mine["eval_set"], eval_set))
        if rows.num_rows == 0:
            missing = f"no comparison of {gate.candidate} with {shown} on {eval_set} in the table"
            found = [{**_failure(criterion_name(criterion), criterion, missing), "eval_set": eval_set}]
        else:
            found = [{**c, "eval_set": eval_set} for c in evaluate_gate([criterion], rows).checks]
        checks.extend({**c, "baseline_model": shown, "message": f"vs {shown}: {c['message']}"} for c in found)
    return all(c["passed"] for c in checks), checks
