"""The generation budget derived from reference answers, recorded per model and suite, and a run that reuses a
model's stored rows and compares chosen pairs (the release gate's candidate against the live model)."""

from __future__ import annotations

import math
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from eval_assets.engine import behaviour_sets as bs
from eval_assets.engine import budget, registry, suites
from eval_assets.engine.reporting import eval_settings
from mixtrain.config.evaluation import EvalSpec
from tests.helpers import write_signature_set

SOURCES = [("mod_a", "def f(a, b=2):\n    return a\n"), ("mod_b", "def g(x, *args, **kw):\n    raise ValueError(x)\n")]


def test_quantile_is_nearest_rank_and_the_budget_is_clamped():
    lengths = list(range(1, 101))
    assert budget.quantile_length(lengths, 1.0) == 100
    assert budget.quantile_length(lengths, 0.95) == 95
    assert budget.quantile_length([7], 0.5) == 7
    rule = suites.EvalSettings(derive_budget=True, budget_margin=1.5, budget_floor=20, budget_cap=120)
    assert budget.derived_budget([10, 40], rule) == 60  # ceil(40 * 1.5)
    assert budget.derived_budget([3, 5], rule) == 20  # the floor
    assert budget.derived_budget([100], rule) == 120  # the cap
    with pytest.raises(ValueError, match="no reference lengths"):
        budget.quantile_length([], 1.0)
    with pytest.raises(ValueError, match="floor <= cap"):
        suites.EvalSettings(budget_floor=10, budget_cap=5)


def test_config_picks_fixed_or_derived():
    derived = eval_settings(EvalSpec())
    assert derived.derive_budget and derived.max_new_tokens == 96 and derived.budget_cap == 512
    fixed = eval_settings(EvalSpec(max_new_tokens=8))
    assert not fixed.derive_budget and fixed.max_new_tokens == 8
    custom = eval_settings(EvalSpec(generation_budget={"quantile": 0.95, "margin": 2.0, "floor": 4, "cap": 64}))
    assert (custom.budget_quantile, custom.budget_margin, custom.budget_floor, custom.budget_cap) == (0.95, 2, 4, 64)
    with pytest.raises(ValueError, match="floor 70 is above cap 64"):
        EvalSpec(generation_budget={"floor": 70, "cap": 64})


@pytest.fixture(scope="module")
def structured(tmp_path_factory) -> pa.Table:
    return registry.load_jsonl_eval_set(
        "sig", write_signature_set(tmp_path_factory.mktemp("s") / "s.jsonl", SOURCES), "1"
    )


def test_suite_budget_counts_reference_tokens_with_the_models_tokenizer(structured, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rule = suites.EvalSettings(derive_budget=True, budget_margin=1.25, budget_floor=1, budget_cap=10_000)
    got = budget.suite_budget(suites.SUITES["structured"], structured, tok, rule)
    texts = [suites.SUITES["structured"].reference_text(r) for r in structured.to_pylist()]
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    assert got == {
        "max_new_tokens": math.ceil(longest * 1.25),
        "source": budget.REFERENCES,
        "references": 2,
        "reference_tokens": longest,
    }
    # a behaviour set has no reference answers: the default; an explicit budget: the same everywhere
    assert budget.suite_budget(suites.SUITES["sentinel"], bs.sentinel_set(), tok, rule)["source"] == budget.DEFAULT
    fixed = budget.suite_budget(suites.SUITES["structured"], structured, tok, suites.EvalSettings(max_new_tokens=7))
    assert (fixed["max_new_tokens"], fixed["source"]) == (7, budget.FIXED)


@pytest.fixture(scope="module")
def two_models(tiny_model_dir, tmp_path_factory) -> dict[str, tuple[str, None]]:
    import torch
    from transformers import AutoModelForCausalLM

    other = tmp_path_factory.mktemp("m") / "other"
    shutil.copytree(tiny_model_dir, other)
    model = AutoModelForCausalLM.from_pretrained(str(other))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(other))
    return {"base": (str(tiny_model_dir), None), "other": (str(other), None)}


def test_run_records_each_models_budget_and_reuses_stored_rows(structured, two_models):
    from eval_assets.engine.comparison import run_evaluation

    settings = suites.EvalSettings(
        derive_budget=True, budget_margin=1.0, budget_floor=3, budget_cap=6, max_new_tokens=5, n_resamples=50
    )
    items = {"structured": structured, "sentinel": bs.sentinel_set().slice(0, 3)}
    first = run_evaluation(two_models, "base", items, settings)
    for label in two_models:
        budgets = first.record["models"][label]["generation_budget"]
        assert budgets["structured"]["source"] == budget.REFERENCES and budgets["structured"]["max_new_tokens"] == 6
        assert budgets["sentinel"] == {
            "max_new_tokens": 5,
            "source": budget.DEFAULT,
            "references": 0,
            "reference_tokens": None,
        }
    assert first.record["decoding"]["budget"] == "derived"
    rows = first.items.to_pylist()
    limit = {"structured": 6, "sentinel": 5}
    assert all(r["new_tokens"] <= limit[r["suite"]] for r in rows)
    cut = [r for r in rows if r["suite"] == "structured" and r["truncated"]]
    assert cut and all("truncated at max_new_tokens" in r["reason"] for r in cut)  # random weights never stop

    # The base's rows stored as "live" (not loaded again): the candidate compared with it and with base alike.
    base_rows = first.items.filter(pc.equal(first.items["model"], "base"))
    info = {k: first.record["models"]["base"][k] for k in ("vocab_sha256", "generation_budget")}
    again = run_evaluation(
        {"base": two_models["base"], "other": two_models["other"]},
        "base",
        items,
        settings,
        reused={"live": (base_rows, info)},
        pairs=[("other", "base"), ("other", "live")],
    )
    assert again.record["models"]["live"]["reused"] is True
    # the baseline's reused rows lead the report, where they are when it is evaluated with the others
    as_base = run_evaluation(
        {"other": two_models["other"]}, "base", items, settings, reused={"base": (base_rows, info)}
    )
    assert as_base.items.column("model").to_pylist() == first.items.column("model").to_pylist()
    assert as_base.comparison.equals(first.comparison)  # greedy decoding, seeded bootstrap: the same comparison
    live_rows = again.items.filter(pc.equal(again.items["model"], "live"))
    assert live_rows.drop_columns(["model"]).equals(base_rows.drop_columns(["model"]))
    by = {}
    for r in again.comparison.to_pylist():
        by.setdefault(r["baseline_model"], []).append({k: v for k, v in r.items() if k != "baseline_model"})
    assert set(by) == {"base", "live"} and by["base"] == by["live"]
    with pytest.raises(ValueError, match="both to evaluate and reused"):
        run_evaluation(two_models, "base", items, settings, reused={"other": (base_rows, info)})
