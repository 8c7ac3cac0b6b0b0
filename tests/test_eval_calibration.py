from __future__ import annotations

import math

import numpy as np
import pytest

from eval_assets.engine import calibration as cal


def test_perfectly_confident_and_right_is_perfectly_calibrated():
    probs = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0, 1.0]]
    m = cal.calibration_metrics(probs, [0, 1, 2])
    assert m["accuracy"] == 1.0 and m["ece"] == 0.0 and m["brier"] == 0.0 and m["mce"] == 0.0


def test_ece_and_brier_by_hand():
    # Two bins (n_bins=2): confidences 0.9, 0.8 (bin 1: (0.5, 1]) and 0.5 ([0, 0.5]).
    probs = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    labels = [0, 0, 1]
    m = cal.calibration_metrics(probs, labels, n_bins=2)
    # bin 1: items 0 (right) and 1 (wrong): acc 0.5, conf 0.85; bin 0: item 2 predicts 0 (tie -> first), wrong.
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["ece"] == pytest.approx((2 / 3) * abs(0.5 - 0.85) + (1 / 3) * abs(0.0 - 0.5))
    assert m["mce"] == pytest.approx(0.5)
    brier = ((0.9 - 1) ** 2 + 0.1**2, (0.2 - 1) ** 2 + 0.8**2, 0.5**2 + (0.5 - 1) ** 2)
    assert m["brier"] == pytest.approx(sum(brier) / 3)
    assert m["mean_confidence"] == pytest.approx((0.9 + 0.8 + 0.5) / 3)


def test_bin_edges_are_right_closed():
    # confidence exactly 0.5 with 2 bins belongs to the first bin (0, 0.5]
    table = cal.reliability_table([0.5, 1.0, 0.75], [True, True, False], n_bins=2)
    rows = table.to_pylist()
    assert [r["n"] for r in rows] == [1, 2]
    assert rows[1]["accuracy"] == pytest.approx(0.5) and rows[1]["confidence"] == pytest.approx(0.875)
    assert rows[1]["gap"] == pytest.approx(0.5 - 0.875)
    empty = cal.reliability_table([0.95], [True], n_bins=4).to_pylist()
    assert empty[0]["accuracy"] is None and empty[3]["n"] == 1


def test_ece_matches_reliability_table():
    rng = np.random.default_rng(3)
    p_yes = rng.uniform(0, 1, 200)
    labels = (rng.uniform(0, 1, 200) > p_yes).astype(int)  # yes (0) with probability p_yes: calibrated
    probs = cal.yes_no_probs(p_yes)
    m = cal.calibration_metrics(probs, labels.tolist(), n_bins=10)
    items = cal.calibration_items([f"i{k}" for k in range(200)], probs, labels.tolist())
    rel = cal.reliability_table(items.column("confidence").to_pylist(), items.column("correct").to_pylist(), 10)
    ece = sum(r["n"] * abs(r["gap"]) for r in rel.to_pylist() if r["n"]) / 200
    assert m["ece"] == pytest.approx(ece)
    assert m["ece"] < 0.15  # calibrated by construction; sampling noise only
    over = cal.calibration_metrics(cal.yes_no_probs(np.where(p_yes > 0.5, 0.999, 0.001)), labels.tolist())
    assert over["ece"] > m["ece"] + 0.1  # same predictions, over-confident


def test_bad_rows_are_named():
    with pytest.raises(ValueError, match="row 1"):
        cal.calibration_metrics([[0.5, 0.5], [0.7, 0.7]], [0, 0])
    with pytest.raises(ValueError, match="row 0: label"):
        cal.calibration_metrics([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="at least 2"):
        cal.calibration_metrics([[1.0]], [0])
    assert math.isnan(cal.calibration_metrics([], [])["ece"])


def test_calibration_items_rows():
    t = cal.calibration_items(["a", "b"], [[0.3, 0.7], [0.6, 0.4]], [1, 1])
    rows = t.to_pylist()
    assert rows[0]["correct"] and rows[0]["p_label"] == pytest.approx(0.7)
    assert not rows[1]["correct"] and rows[1]["predicted"] == 0 and rows[1]["confidence"] == pytest.approx(0.6)


# --- option probabilities from a tiny causal LM ---


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from training_assets.engine.loading import load_for_inference
    from training_assets.engine.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("tiny_cal")
    make_tiny_model(str(path), seed=0)
    return load_for_inference(str(path), dtype="fp32")


def _brute_force_logprob(model, tok, prompt_text: str, option: str) -> float:
    import torch

    p = tok(prompt_text, add_special_tokens=False).input_ids
    o = tok(option, add_special_tokens=False).input_ids
    ids = torch.tensor([p + o])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logp[len(p) + k - 1, t] for k, t in enumerate(o)))


def test_option_logprobs_match_unbatched_scoring(tiny):
    model, tok = tiny
    prompts = ["Is Paris the capital of France? Answer:", [{"role": "user", "content": "Is 7 prime?"}]]
    options = [" yes", " no", " maybe not"]
    got = cal.option_logprobs(model, tok, prompts, options, batch_size=4)
    texts = [prompts[0], tok.apply_chat_template(prompts[1], tokenize=False, add_generation_prompt=True)]
    for pi, text in enumerate(texts):
        for oi, opt in enumerate(options):
            lp, n = got[pi][oi]
            assert lp == pytest.approx(_brute_force_logprob(model, tok, text, opt), abs=1e-4)
            assert n == len(tok(opt, add_special_tokens=False).input_ids)


def test_option_probabilities_normalised_and_batch_invariant(tiny):
    model, tok = tiny
    prompts = ["The sky is blue. True or false?", "2 + 2 = 4. Yes or no?", "Hello"]
    per_prompt = [[" true", " false"], [" yes", " no"], [" a", " b", " c"]]
    p1 = cal.option_probabilities(model, tok, prompts, per_prompt, batch_size=1)
    p7 = cal.option_probabilities(model, tok, prompts, per_prompt, batch_size=7)
    for a, b, opts in zip(p1, p7, per_prompt, strict=True):
        assert len(a) == len(opts) and sum(a) == pytest.approx(1.0)
        assert a == pytest.approx(b, abs=1e-5)
    lp = cal.option_logprobs(model, tok, prompts[:1], per_prompt[:1])[0]
    expect = np.exp([x for x, _ in lp])
    assert p1[0] == pytest.approx((expect / expect.sum()).tolist(), abs=1e-6)
    normed = cal.option_probabilities(model, tok, prompts[:1], per_prompt[:1], length_normalise=True)[0]
    e = np.exp([x / n for x, n in lp])
    assert normed == pytest.approx((e / e.sum()).tolist(), abs=1e-6)
    assert model.training is False
    m = cal.calibration_metrics(p1[:2], [0, 0])
    assert 0.0 <= m["ece"] <= 1.0


def test_option_probabilities_input_errors(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="at least 2 options"):
        cal.option_probabilities(model, tok, ["q"], [[" yes"]])
    with pytest.raises(ValueError, match="option lists"):
        cal.option_probabilities(model, tok, ["q", "r"], [[" yes", " no"]])
    with pytest.raises(ValueError, match="no tokens"):
        cal.option_probabilities(model, tok, ["q"], [" yes", ""])
