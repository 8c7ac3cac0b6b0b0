"""One evaluation run: every candidate on every suite, summaries per slice, and paired comparisons to a baseline.

What a run promises:

- Every item of every suite for every loaded candidate is a row of ``EvalRun.items`` (``suites.RUN_ITEM_SCHEMA``).
- A candidate that cannot be loaded, a suite that fails as a whole, or a tokenizer that differs from the
  expected one is a row of ``EvalRun.problems``; the rest of the report is still produced.
- A candidate whose evaluation runs past ``EvalSettings.generation_timeout_s`` is a ``timeout`` problem, marked
  ``timed_out`` in the record, and has no rows at all (so no comparisons, which the release gate refuses).
- Comparisons are per (candidate, suite, eval set, metric, slice). Metrics that are item means get a paired
  bootstrap interval (``bootstrap.compare_paired``, seeded from ``EvalSettings.seed``); aggregate metrics that are
  not item means (ECE, perplexity, latency percentiles, token-weighted loss) get the point difference only
  (``paired`` false, interval null), which ``gate`` treats as "no interval" rather than as a pass.
- ``EvalRun.record`` says what would be needed to reproduce the numbers: model identities, eval set versions and
  checksums, decoding settings, seeds, chat template hashes, hardware and package versions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine import bootstrap
from eval_assets.engine.budget import suite_budget
from eval_assets.engine.candidates import iter_candidates
from eval_assets.engine.deadline import GenerationTimeout, time_limit
from eval_assets.engine.record import model_record, run_record
from eval_assets.engine.suites import (
    RUN_ITEM_SCHEMA,
    EvalSettings,
    ItemMetric,
    Suite,
)
from eval_assets.engine.suites.rows import conform_rows
from eval_assets.engine.task_plugins import suite_table
from mixtrain.markdown import markdown_table

RUN_SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("slice", pa.string(), nullable=False),  # "all" or "<slice column>=<value>"
        pa.field("n", pa.int64(), nullable=False),  # items in the slice
        pa.field("value", pa.float64()),  # null when the metric has no value on the slice (NaN)
    ]
)

RUN_COMPARISON_SCHEMA = pa.schema(
    [
        pa.field("candidate_model", pa.string(), nullable=False),
        pa.field("baseline_model", pa.string(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        *bootstrap.COMPARISON_SCHEMA,
        pa.field("higher_is_better", pa.bool_(), nullable=False),
        pa.field("paired", pa.bool_(), nullable=False),  # the interval is a paired bootstrap over items/groups
    ]
)

PROBLEM_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string()),
        pa.field("suite", pa.string()),
        pa.field("kind", pa.string(), nullable=False),  # load | suite | timeout | tokenizer | comparison
        pa.field("message", pa.string(), nullable=False),
    ]
)


@dataclass
class EvalRun:
    items: pa.Table  # suites.RUN_ITEM_SCHEMA
    summary: pa.Table  # RUN_SUMMARY_SCHEMA
    comparison: pa.Table  # RUN_COMPARISON_SCHEMA
    problems: list[dict[str, Any]] = field(default_factory=list)  # PROBLEM_SCHEMA rows
    record: dict[str, Any] = field(default_factory=dict)

    def problems_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.problems, schema=PROBLEM_SCHEMA)

    def comparison_for(self, candidate: str, eval_set: str | None = None) -> pa.Table:
        """One candidate's comparison rows (of one eval set), the shape ``gate.evaluate_gate`` reads."""
        mask = pc.equal(self.comparison["candidate_model"], candidate)
        if eval_set is not None:
            mask = pc.and_(mask, pc.equal(self.comparison["eval_set"], eval_set))
        return self.comparison.filter(mask)

    def to_markdown(self, *, slices: bool = False) -> str:
        """The comparison as Markdown: per candidate, value vs baseline, difference and its interval."""
        lines: list[str] = []
        if self.problems:
            lines.append("**Problems**\n")
            lines.extend(
                f"- {p['model'] or '-'} / {p['suite'] or '-'} ({p['kind']}): {p['message']}" for p in self.problems
            )
            lines.append("")
        rows = self.comparison.to_pylist()
        if not slices:
            rows = [r for r in rows if r["slice"] == bootstrap.ALL_SLICE]
        if not rows:
            lines.append("_No comparisons: no candidate besides the baseline produced results._")
            return "\n".join(lines)
        for candidate in dict.fromkeys(r["candidate_model"] for r in rows):
            mine = [r for r in rows if r["candidate_model"] == candidate]
            lines.append(f"**{candidate}** vs **{mine[0]['baseline_model']}**\n")
            table_rows = [
                {
                    "suite": r["suite"],
                    "eval set": r["eval_set"],
                    "metric": r["metric"] + ("" if r["higher_is_better"] else " (lower is better)"),
                    "slice": r["slice"],
                    "n": r["n"],
                    "candidate": _fmt(r["candidate"]),
                    "baseline": _fmt(r["baseline"]),
                    "diff": _fmt(r["diff"], signed=True),
                    f"{r['confidence']:.0%} CI": _ci(r),
                }
                for r in mine
            ]
            columns = list(table_rows[0])
            if not slices:
                columns.remove("slice")
            lines.append(markdown_table(table_rows, columns))
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _fmt(v: float | None, *, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _ci(row: Mapping[str, Any]) -> str:
    if row["ci_low"] is None or row["ci_high"] is None:
        return "-"
    return f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def limit_items(table: pa.Table, limit: int | None) -> pa.Table:
    """The first ``limit`` items of each eval set, in table order (all when ``limit`` is None)."""
    if limit is None or "eval_set" not in table.column_names:
        return table if limit is None else table.slice(0, limit)
    keep: list[int] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(table.column("eval_set").to_pylist()):
        if seen.get(s, 0) < limit:
            keep.append(i)
            seen[s] = seen.get(s, 0) + 1
    return table.take(pa.array(keep, pa.int64()))


# --- summaries ---------------------------------------------------------------------------------------------------


def _slices(spec: Suite, rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    out = [(bootstrap.ALL_SLICE, rows)]
    for col in spec.slice_columns:
        values = dict.fromkeys(r[col] for r in rows if r[col] is not None)
        out.extend((f"{col}={v}", [r for r in rows if r[col] == v]) for v in values)
    return out


def _numeric(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(v) else float(v)


def _summaries(spec: Suite, rows: list[dict[str, Any]]) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{slice: (n, summary)}`` for all rows of one (model, suite, eval set) and each of its slices."""
    return {
        name: (len(sub), spec.summarise(pa.Table.from_pylist(sub, schema=RUN_ITEM_SCHEMA)))
        for name, sub in _slices(spec, rows)
    }


# --- comparisons -------------------------------------------------------------------------------------------------


def _paired_rows(
    spec: Suite,
    cand: list[dict[str, Any]],
    base: list[dict[str, Any]],
    metrics: Sequence[ItemMetric],
    settings: EvalSettings,
    *,
    slice_columns: Sequence[str],
) -> list[dict[str, Any]]:
    if not metrics:
        return []
    names = [m.name for m in metrics]

    def units(rows: list[dict[str, Any]], col: str | None) -> list[dict[str, Any]]:
        return [
            {
                "item_id": r["item_id"],
                "_slice": None if col is None else f"{col}={r[col]}",
                **{m.name: m.value(r) for m in metrics},
            }
            for r in rows
        ]

    out: list[dict[str, Any]] = []
    for k, col in enumerate([None, *slice_columns] if slice_columns else [None]):
        table = bootstrap.compare_paired(
            units(cand, col),
            units(base, col),
            names,
            slice_column=None if col is None else "_slice",
            n_resamples=settings.n_resamples,
            confidence=settings.confidence,
            seed=settings.seed,
        )
        for r in table.to_pylist():
            if (k > 0 and r["slice"] == bootstrap.ALL_SLICE) or r["n"] == 0:
                continue  # "all" comes from the first call; a metric with no items on a slice is not a result
            hib = next(m.higher_is_better for m in metrics if m.name == r["metric"])
            out.append({**r, "higher_is_better": hib, "paired": True})
    return out


def _aggregate_rows(
    names: Mapping[str, bool],
    cand: Mapping[str, tuple[int, dict[str, Any]]],
    base: Mapping[str, tuple[int, dict[str, Any]]],
    settings: EvalSettings,
) -> list[dict[str, Any]]:
    out = []
    for slice_name, (n, summary) in cand.items():
        if slice_name not in base:
            continue
        for metric, hib in names.items():
            c, b = _numeric(summary.get(metric)), _numeric(base[slice_name][1].get(metric))
            if c is None and b is None:
                continue
            out.append(
                {
                    "metric": metric,
                    "slice": slice_name,
                    "n": n,
                    "candidate": c,
                    "baseline": b,
                    "diff": None if c is None or b is None else c - b,
                    "ci_low": None,
                    "ci_high": None,
                    "confidence": settings.confidence,
                    "n_resamples": 0,
                    "higher_is_better": hib,
                    "paired": False,
                }
            )
    return out


def _compare(
    spec: Suite,
    cand: list[dict[str, Any]],
    base: list[dict[str, Any]],
    cand_summary: Mapping[str, tuple[int, dict[str, Any]]],
    base_summary: Mapping[str, tuple[int, dict[str, Any]]],
    settings: EvalSettings,
    *,
    same_tokenizer: bool,
) -> list[dict[str, Any]]:
    item_metrics = [m for m in spec.item_metrics if same_tokenizer or not m.token_level]
    rows = _paired_rows(spec, cand, base, item_metrics, settings, slice_columns=spec.slice_columns)
    if spec.group_units is not None:
        c_units = spec.group_units(pa.Table.from_pylist(cand, schema=RUN_ITEM_SCHEMA))
        b_units = spec.group_units(pa.Table.from_pylist(base, schema=RUN_ITEM_SCHEMA))
        # Groups where one side lost an item to an error are compared on the groups both sides have.
        shared = {u["item_id"] for u in c_units} & {u["item_id"] for u in b_units}
        rows += _paired_rows(
            spec,
            [u for u in c_units if u["item_id"] in shared],
            [u for u in b_units if u["item_id"] in shared],
            spec.group_metrics,
            settings,
            slice_columns=(),
        )
    aggregates = {
        k: v for k, v in spec.aggregate_metrics.items() if same_tokenizer or k not in spec.token_level_aggregates
    }
    return rows + _aggregate_rows(aggregates, cand_summary, base_summary, settings)


# --- the run -----------------------------------------------------------------------------------------------------


def run_evaluation(
    candidates: Mapping[str, tuple[str, str | None]],
    baseline_label: str,
    suites: Mapping[str, pa.Table],
    settings: EvalSettings | None = None,
    *,
    identities: Mapping[str, Any] | None = None,
    expected_vocab_sha256: str | None = None,
    reused: Mapping[str, tuple[pa.Table, dict[str, Any]]] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> EvalRun:
    """Evaluate every candidate on every suite and compare each with ``baseline_label``.

    ``candidates`` maps a label to ``(base_dir, adapter_dir or None)`` (candidates on one base share one read of
    its weights); ``suites`` maps a suite name (``suites.SUITES``, or a plugin task's: ``settings.tasks`` or an
    installed one, see ``task_plugins``) to its items: registry rows (EVAL_ITEM_SCHEMA) for every suite but
    ``perplexity``, which takes a table of ``text`` and ``domain`` (optional ``item_id``, ``eval_set``).
    ``identities`` (label -> e.g. manifest id / weights hash) goes into the record as given.
    The expected tokenizer is ``expected_vocab_sha256`` or, without it, the baseline's.

    ``reused`` maps a label to the item rows and model record of an earlier run of the same items and settings
    (the caller checks that: ``live.run_fingerprint``); that model is not loaded, its rows are taken as they are.
    ``pairs`` lists the (candidate, baseline) comparisons to make; by default every model against
    ``baseline_label``. ``on_progress`` gets one dict per (candidate, suite) as it ends: an evaluation takes
    minutes, and the terminal should show where.
    """
    settings = settings or EvalSettings()
    reused = reused or {}
    if baseline_label not in candidates and baseline_label not in reused:
        raise ValueError(f"baseline '{baseline_label}' is not one of the candidates {sorted(candidates)}")
    if set(candidates) & set(reused):
        raise ValueError(f"model(s) {sorted(set(candidates) & set(reused))} both to evaluate and reused")
    specs = suite_table(settings.tasks)  # the built-in suites and the plugin tasks' (checked as they load)
    unknown = sorted(set(suites) - set(specs))
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; known: {sorted(specs)}")
    if not suites:
        raise ValueError("no suites to run")
    limited = {name: limit_items(items, settings.limit) for name, items in suites.items()}
    problems: list[dict[str, Any]] = []
    tables: list[pa.Table] = []
    models: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {}  # non-numeric suite output (hardware), per model and suite

    def report(label: str, index: int, suite: str, status: str, items: int | None, started: float) -> None:
        if on_progress is not None:
            on_progress(
                {
                    "eval_candidate": label,
                    "candidate": index,
                    "candidates": len(candidates),
                    "suite": suite,
                    "suite_index": list(limited).index(suite) + 1 if suite in limited else 0,
                    "suites": len(limited),
                    "items": items,
                    "elapsed_s": round(time.perf_counter() - started, 3),
                    "status": status,
                }
            )

    for index, (label, model, tokenizer, error) in enumerate(iter_candidates(candidates, dtype=settings.dtype), 1):
        base_dir, adapter_dir = candidates[label]
        models[label] = {
            "base_dir": base_dir,
            "adapter_dir": adapter_dir,
            "identity": (identities or {}).get(label),
            "loaded": error is None,
        }
        if error is not None:
            problems.append({"model": label, "suite": None, "kind": "load", "message": f"cannot load: {error!r}"})
            continue
        models[label].update(model_record(tokenizer, model, with_tools="tool_calls" in limited))
        budgets = {n: suite_budget(specs[n], t, tokenizer, settings) for n, t in limited.items() if specs[n].generates}
        models[label]["generation_budget"] = budgets
        mine: list[pa.Table] = []
        try:
            with time_limit(label, settings.generation_timeout_s):
                for name, items in limited.items():
                    budget = budgets.get(name, {}).get("max_new_tokens", settings.max_new_tokens)
                    mine_settings = replace(settings, max_new_tokens=budget)
                    started = time.perf_counter()
                    try:
                        table, summary = specs[name].run(model, tokenizer, items, mine_settings, model_label=label)
                    except Exception as e:  # a suite that fails as a whole is reported; the other suites still run
                        message = f"suite failed: {e!r}"
                        problems.append({"model": label, "suite": name, "kind": "suite", "message": message})
                        report(label, index, name, "failed", None, started)
                        continue
                    report(label, index, name, "", table.num_rows, started)
                    mine.append(table)
                    extra.setdefault(label, {})[name] = {k: v for k, v in summary.items() if _numeric(v) is None}
        except GenerationTimeout as e:
            # Nothing of a candidate cut off part-way is scored: with no rows it has no comparisons, and the
            # release gate fails a candidate whose metrics are missing.
            problems.append({"model": label, "suite": None, "kind": "timeout", "message": str(e)})
            models[label]["timed_out"] = True
            extra.pop(label, None)
            mine = []
        tables.extend(mine)
        del model, tokenizer
    for label, (rows, info) in reused.items():
        models[label] = {**info, "identity": (identities or {}).get(label, info.get("identity")), "reused": True}
        at = RUN_ITEM_SCHEMA.get_field_index("model")
        relabelled = conform_rows(rows)
        mine = relabelled.set_column(at, RUN_ITEM_SCHEMA.field(at), pa.array([label] * len(rows), pa.string()))
        tables.insert(0 if label == baseline_label else len(tables), mine)  # the baseline's rows lead, as when run

    expected = expected_vocab_sha256 or models[baseline_label].get("vocab_sha256")
    mismatched: set[str] = set()
    for label, info in models.items():
        got = info.get("vocab_sha256")
        if expected is not None and got is not None and got != expected:
            mismatched.add(label)
            problems.append(
                {
                    "model": label,
                    "suite": None,
                    "kind": "tokenizer",
                    "message": f"tokenizer differs from the expected one (vocab sha256 {got[:12]} vs {expected[:12]}, "
                    f"{info['vocab_size']} tokens): outputs are still scored and compared, but token-level figures "
                    "(held-out NLL, perplexity, prompt-length buckets) are not comparable and are left out of its "
                    "comparisons",
                }
            )

    items = pa.concat_tables(tables) if tables else RUN_ITEM_SCHEMA.empty_table()
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in items.to_pylist():
        grouped.setdefault((r["model"], r["suite"], r["eval_set"]), []).append(r)
    summaries = {key: _summaries(specs[key[1]], rows) for key, rows in grouped.items()}
    summary_rows = [
        {"model": m, "suite": s, "eval_set": e, "metric": metric, "slice": slice_name, "n": n, "value": _numeric(v)}
        for (m, s, e), by_slice in summaries.items()
        for slice_name, (n, summary) in by_slice.items()
        for metric, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]

    if pairs is None:
        pairs = [(label, baseline_label) for label in models if label != baseline_label]
    comparison_rows: list[dict[str, Any]] = []
    for (label, suite, eval_set), rows, against in (
        (key, rows, b) for key, rows in grouped.items() for c, b in pairs if c == key[0]
    ):
        base_rows = grouped.get((against, suite, eval_set))
        if base_rows is None:
            problems.append(
                {
                    "model": label,
                    "suite": suite,
                    "kind": "comparison",
                    "message": f"no baseline ('{against}') results on {eval_set}; nothing to compare with",
                }
            )
            continue
        try:
            compared = _compare(
                specs[suite],
                rows,
                base_rows,
                summaries[(label, suite, eval_set)],
                summaries[(against, suite, eval_set)],
                settings,
                same_tokenizer=label not in mismatched and against not in mismatched,
            )
        except ValueError as e:
            problems.append({"model": label, "suite": suite, "kind": "comparison", "message": f"{eval_set}: {e}"})
            continue
        comparison_rows.extend(
            {"candidate_model": label, "baseline_model": against, "suite": suite, "eval_set": eval_set, **r}
            for r in compared
        )

    record = run_record(baseline_label, models, limited, settings, extra)
    return EvalRun(
        items=items,
        summary=pa.Table.from_pylist(summary_rows, schema=RUN_SUMMARY_SCHEMA),
        comparison=pa.Table.from_pylist(comparison_rows, schema=RUN_COMPARISON_SCHEMA),
        problems=problems,
        record=record,
    )
