from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from eval_assets.engine import bootstrap as bs


def test_identical_inputs_give_zero_width_interval_at_zero():
    x = np.random.default_rng(0).uniform(size=50)
    r = bs.paired_bootstrap(x, x, n_resamples=500, seed=1)
    assert r["diff"] == 0.0 and r["ci_low"] == 0.0 and r["ci_high"] == 0.0
    assert r["candidate"] == pytest.approx(x.mean())


def test_deterministic_given_seed_and_seed_matters():
    rng = np.random.default_rng(0)
    c, b = rng.uniform(size=80), rng.uniform(size=80)
    a1 = bs.paired_bootstrap(c, b, n_resamples=300, seed=7)
    a2 = bs.paired_bootstrap(c, b, n_resamples=300, seed=7)
    a3 = bs.paired_bootstrap(c, b, n_resamples=300, seed=8)
    assert a1 == a2
    assert (a1["ci_low"], a1["ci_high"]) != (a3["ci_low"], a3["ci_high"])


def test_interval_covers_true_difference_at_nominal_rate():
    # 200 synthetic experiments with a known mean difference of 0.1; a 90% interval should cover it ~90% of the
    # time (binomial sd ~2%, bounds at 3 sd); an 80% interval passed off as 90%, a wrong sign or an unpaired
    # resampling lands outside.
    rng = np.random.default_rng(42)
    true_diff, covered, widths = 0.1, 0, []
    for k in range(200):
        difficulty = rng.normal(0, 1, 150)  # shared per-item effect: pairing must cancel it
        base = difficulty + rng.normal(0, 0.3, 150)
        cand = difficulty + true_diff + rng.normal(0, 0.3, 150)
        r = bs.paired_bootstrap(cand, base, n_resamples=500, confidence=0.90, seed=k)
        covered += r["ci_low"] <= true_diff <= r["ci_high"]
        widths.append(r["ci_high"] - r["ci_low"])
    assert 0.84 <= covered / 200 <= 0.96
    # paired sd of a difference is ~0.42 / sqrt(150) = 0.035 -> width ~0.11; unpaired would be ~0.38
    assert np.mean(widths) < 0.16


def test_chunked_resampling_equals_unchunked(monkeypatch):
    d = np.random.default_rng(5).normal(size=40)
    whole = bs.bootstrap_mean_diffs(d, n_resamples=100, rng=np.random.default_rng(0))
    monkeypatch.setattr(bs, "_CHUNK_ELEMENTS", 40 * 7)  # 7 resamples per chunk
    chunked = bs.bootstrap_mean_diffs(d, n_resamples=100, rng=np.random.default_rng(0))
    # integers are drawn row-major from one stream, so chunking changes memory use, not the resamples
    assert whole.shape == (100,)
    np.testing.assert_array_equal(whole, chunked)


def test_input_validation():
    with pytest.raises(ValueError, match="equal"):
        bs.paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        bs.paired_bootstrap([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="confidence"):
        bs.paired_bootstrap([1.0], [1.0], confidence=95)
    assert np.isnan(bs.paired_bootstrap([], [])["ci_low"])


def _tables():
    rng = np.random.default_rng(1)
    ids = [f"i{k}" for k in range(120)]
    slices = ["easy" if k % 3 else "hard" for k in range(120)]
    base_acc = rng.uniform(size=120) < 0.5
    # candidate: better on easy items, identical on hard ones
    cand_acc = np.where(np.array(slices) == "easy", base_acc | (rng.uniform(size=120) < 0.5), base_acc)
    base = pa.table({"item_id": ids, "slice": slices, "exact_match": base_acc, "score": rng.uniform(size=120)})
    cand = pa.table(
        {"item_id": ids[::-1], "slice": slices[::-1], "exact_match": cand_acc[::-1], "score": rng.uniform(size=120)}
    )
    return cand, base, cand_acc, base_acc, np.array(slices)


def test_compare_paired_per_slice():
    cand, base, cand_acc, base_acc, slices = _tables()
    t = bs.compare_paired(cand, base, ["exact_match"], slice_column="slice", n_resamples=400, seed=3)
    assert t.schema == bs.COMPARISON_SCHEMA
    rows = {r["slice"]: r for r in t.to_pylist()}
    assert set(rows) == {"all", "easy", "hard"}
    assert rows["all"]["n"] == 120 and rows["easy"]["n"] == 80 and rows["hard"]["n"] == 40
    easy = slices == "easy"
    assert rows["easy"]["diff"] == pytest.approx(cand_acc[easy].mean() - base_acc[easy].mean())
    assert rows["easy"]["ci_low"] > 0  # a real improvement, clear of noise
    assert rows["hard"]["ci_low"] == rows["hard"]["ci_high"] == 0.0  # identical on hard items
    assert rows["all"]["candidate"] == pytest.approx(cand_acc.mean())
    again = bs.compare_paired(cand, base, ["exact_match"], slice_column="slice", n_resamples=400, seed=3)
    assert again.equals(t)
    # adding a metric does not move the other metric's interval (per-(metric, slice) seeds)
    both = bs.compare_paired(cand, base, ["score", "exact_match"], slice_column="slice", n_resamples=400, seed=3)
    em = [r for r in both.to_pylist() if r["metric"] == "exact_match"]
    assert em == t.to_pylist()


def test_compare_paired_drops_null_pairs_and_rejects_mismatched_items():
    cand = [{"item_id": "a", "m": 1.0}, {"item_id": "b", "m": None}, {"item_id": "c", "m": 0.0}]
    base = [{"item_id": "a", "m": 0.0}, {"item_id": "b", "m": 1.0}, {"item_id": "c", "m": float("nan")}]
    row = bs.compare_paired(cand, base, ["m"], n_resamples=50).to_pylist()[0]
    assert row["n"] == 1 and row["diff"] == 1.0
    with pytest.raises(ValueError, match=r"only in candidate \['d'\]"):
        bs.compare_paired([*cand, {"item_id": "d", "m": 1.0}], base, ["m"])
    with pytest.raises(ValueError, match="twice"):
        bs.compare_paired([*cand, cand[0]], base, ["m"])
    with pytest.raises(ValueError, match="'nope'"):
        bs.compare_paired(cand, base, ["nope"])
    empty = bs.compare_paired([{"item_id": "a", "m": None}], [{"item_id": "a", "m": 1.0}], ["m"]).to_pylist()[0]
    assert empty["n"] == 0 and empty["ci_low"] is None
