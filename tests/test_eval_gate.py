from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from eval_assets.engine import bootstrap as bs
from eval_assets.engine import gate as g

COMPARISON = [
    {"metric": "field_accuracy", "slice": "all", "candidate": 0.80, "baseline": 0.70, "ci_low": 0.05, "ci_high": 0.15},
    {"metric": "field_accuracy", "slice": "easy", "candidate": 0.90, "baseline": 0.80, "ci_low": 0.02, "ci_high": 0.2},
    {"metric": "field_accuracy", "slice": "hard", "candidate": 0.50, "baseline": 0.53, "ci_low": -0.1, "ci_high": 0.04},
    {
        "metric": "over_refusal_rate",
        "slice": "all",
        "candidate": 0.10,
        "baseline": 0.05,
        "ci_low": 0.01,
        "ci_high": 0.09,
    },
    {"metric": "latency_p95_s", "slice": "all", "candidate": 1.4, "baseline": None, "ci_low": None, "ci_high": None},
    {"metric": "exact_match", "slice": "all", "candidate": float("nan"), "baseline": 0.5, "ci_low": 0, "ci_high": 0},
]


def by_name(result: g.GateResult) -> dict[str, dict]:
    return {c["name"]: c for c in result.checks}


def test_threshold_criteria():
    r = g.evaluate_gate(
        [
            {"name": "acc floor", "metric": "field_accuracy", "op": ">=", "value": 0.75},
            {"name": "latency budget", "metric": "latency_p95_s", "op": "<=", "value": 1.0},
        ],
        COMPARISON,
    )
    assert not r.passed
    checks = by_name(r)
    assert checks["acc floor"]["passed"] and checks["acc floor"]["threshold"] == 0.75
    assert [f["name"] for f in r.failures] == ["latency budget"]
    assert r.failures[0]["candidate"] == 1.4 and "1.4 <= 1" in r.failures[0]["message"]


def test_no_regression_bases_on_a_small_drop():
    # hard slice: diff -0.03, CI [-0.10, 0.04]
    def run(**kw):
        return g.evaluate_gate([{"metric": "field_accuracy", "slice": "hard", "op": "no_regression", **kw}], COMPARISON)

    assert not run().passed  # point: any measured drop fails with tolerance 0
    assert run(tolerance=0.05).passed
    assert run(basis="ci_high").passed  # the interval includes no change: not a significant drop
    assert not run(basis="ci_low", tolerance=0.05).passed  # cannot rule out a 0.10 drop
    assert run(basis="ci_low", tolerance=0.1).passed
    check = run().checks[0]
    assert check["diff"] == pytest.approx(-0.03) and check["threshold"] == 0.0


def test_no_regression_lower_is_better():
    # over-refusal went up from 0.05 to 0.10 (CI on diff [0.01, 0.09]): a regression for a lower-is-better metric
    base = {"metric": "over_refusal_rate", "op": "no_regression", "higher_is_better": False}
    assert not g.evaluate_gate([base], COMPARISON).passed
    assert not g.evaluate_gate([{**base, "basis": "ci_high"}], COMPARISON).passed  # CI entirely a worsening
    assert g.evaluate_gate([{**base, "basis": "ci_high", "tolerance": 0.02}], COMPARISON).passed
    assert g.evaluate_gate([{**base, "tolerance": 0.05}], COMPARISON).passed


def test_star_expands_to_every_slice_and_names_failing_slice():
    r = g.evaluate_gate(
        [{"name": "no drop", "metric": "field_accuracy", "slice": "*", "op": "no_regression"}], COMPARISON
    )
    assert [c["slice"] for c in r.checks] == ["all", "easy", "hard"]
    assert [(f["name"], f["slice"]) for f in r.failures] == [("no drop", "hard")]


def test_missing_metric_slice_nan_and_baseline_fail_with_messages():
    r = g.evaluate_gate(
        [
            {"metric": "pass_at_1", "op": ">=", "value": 0.1},
            {"metric": "field_accuracy", "slice": "medium", "op": ">=", "value": 0.1},
            {"metric": "exact_match", "op": ">=", "value": 0.1},
            {"metric": "latency_p95_s", "op": "no_regression"},
            {"metric": "latency_p95_s", "op": "no_regression", "basis": "ci_high"},
        ],
        COMPARISON,
    )
    assert not r.passed and len(r.failures) == 5
    msgs = [f["message"] for f in r.failures]
    assert "'pass_at_1' is not in the comparison table" in msgs[0]
    assert "field_accuracy[medium] is missing" in msgs[1]
    assert "NaN" in msgs[2]
    assert "no baseline" in msgs[3]
    assert "confidence interval" in msgs[4]
    assert r.to_table().schema == g.GATE_CHECK_SCHEMA


def test_malformed_criteria_fail_instead_of_crashing():
    bad = [
        {"metric": "field_accuracy", "op": ">"},
        {"metric": "field_accuracy", "op": ">=", "value": "high"},
        {"metric": "field_accuracy", "op": "no_regression", "value": 0.1},
        {"metric": "field_accuracy", "op": "no_regression", "basis": "median"},
        {"metric": "field_accuracy", "op": "no_regression", "tolerance": -1},
        {"metric": "field_accuracy", "op": ">=", "value": 0.1, "tolerence": 0.1},
        {"op": ">=", "value": 0.1},
        "field_accuracy >= 0.1",
    ]
    r = g.evaluate_gate(bad, COMPARISON)
    assert not r.passed and len(r.failures) == len(bad)
    assert all("malformed" in f["message"] for f in r.failures)
    assert "tolerence" in r.failures[5]["message"]
    assert r.to_table().num_rows == len(bad)
    assert g.validate_criterion({"metric": "m", "op": "no_regression", "tolerance": 0.01}) is None


def test_empty_criteria_do_not_pass_and_duplicate_rows_are_ambiguous():
    assert not g.evaluate_gate([], COMPARISON).passed
    dup = [*COMPARISON, COMPARISON[0]]
    r = g.evaluate_gate([{"metric": "field_accuracy", "op": ">=", "value": 0}], dup)
    assert not r.passed and "2 times" in r.failures[0]["message"]
    with pytest.raises(ValueError, match="row 0"):
        g.evaluate_gate([], [{"metric": "m"}])


def test_gate_on_a_bootstrap_comparison_table():
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(100)]
    base_vals = rng.uniform(size=100)
    base = pa.table({"item_id": ids, "score": base_vals})
    better = pa.table({"item_id": ids, "score": base_vals + 0.05})
    worse = pa.table({"item_id": ids, "score": base_vals - 0.05})
    criteria = [{"metric": "score", "op": "no_regression", "basis": "ci_high"}]
    assert g.evaluate_gate(criteria, bs.compare_paired(better, base, ["score"], n_resamples=200)).passed
    r = g.evaluate_gate(criteria, bs.compare_paired(worse, base, ["score"], n_resamples=200))
    assert not r.passed and r.failures[0]["diff"] == pytest.approx(-0.05)
