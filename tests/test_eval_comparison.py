from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mixtrain import identity

torch = pytest.importorskip("torch")

from eval_assets.engine import behaviour_sets as bs  # noqa: E402
from eval_assets.engine import comparison, registry, suites  # noqa: E402
from eval_assets.engine.bootstrap import ALL_SLICE  # noqa: E402
from eval_assets.engine.gate import evaluate_gate  # noqa: E402
from eval_assets.engine.report_checks import truncation_shares  # noqa: E402
from eval_assets.engine.reporting import adapter_headline, gate_headline, reported_metrics  # noqa: E402
from mixtrain.config.evaluation import ReleaseGateSpec  # noqa: E402
from tests.helpers import write_signature_set  # noqa: E402

SOURCES = [
    ("mod_a", "def f(a, b=2):\n    return a\n"),
    ("mod_b", "def g(x, *args, **kw):\n    raise ValueError(x)\n"),
    ("mod_b", "def h(self, y):\n    return self.y\n"),
]
SETTINGS = suites.EvalSettings(max_new_tokens=4, batch_size=8, n_resamples=300, seed=7, limit=6)


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> dict[str, tuple[str, None]]:
    """The tiny base, a second tiny model with other weights, one with an extra token, and a missing one."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("candidates")
    other = root / "other"
    shutil.copytree(tiny_model_dir, other)
    model = AutoModelForCausalLM.from_pretrained(str(other))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(other))
    vocab = root / "vocab"
    shutil.copytree(tiny_model_dir, vocab)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(vocab))
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(str(vocab))
    return {
        "base": (str(tiny_model_dir), None),
        "other": (str(other), None),
        "vocab": (str(vocab), None),
        "missing": (str(root / "does-not-exist"), None),
    }


@pytest.fixture(scope="module")
def suite_items(tmp_path_factory) -> dict[str, pa.Table]:
    path = write_signature_set(tmp_path_factory.mktemp("sets") / "sig.jsonl", SOURCES)
    structured = registry.load_jsonl_eval_set("sig", path, "3")
    return {
        "structured": structured,
        "refusal": pa.concat_tables([bs.refusal_set(), bs.benign_set()]),
        "sentinel": bs.sentinel_set(),
        "calibration": bs.calibration_set(),
        "perplexity": pa.table(
            {
                "text": ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n"],
                "domain": ["prose", "code"],
            }
        ),
    }


@pytest.fixture(scope="module")
def run(models, suite_items) -> comparison.EvalRun:
    identities = {"base": {"manifest_id": "m-base"}, "other": {"weights_sha256": "abc"}}
    return comparison.run_evaluation(models, "base", suite_items, SETTINGS, identities=identities)


def test_every_item_of_every_loaded_candidate_is_a_row(run, suite_items):
    assert run.items.schema.equals(suites.RUN_ITEM_SCHEMA)
    per_model = 3 + 6 + 6 + 6 + 6 + 2  # structured, refusal (6 of each set), sentinel, calibration, perplexity
    counts = {m: run.items.filter(pc.equal(run.items["model"], m)).num_rows for m in ("base", "other", "vocab")}
    assert counts == {"base": per_model, "other": per_model, "vocab": per_model}
    assert "missing" not in set(run.items.column("model").to_pylist())
    assert run.items.filter(pc.is_valid(run.items["error"])).num_rows == 0
    # The columns the release-gate check reads are there.
    sig = run.items.filter(pc.equal(run.items["eval_set"], "sig"))
    assert {"eval_set", "model", "item_id", "field_accuracy"} <= set(sig.column_names)
    assert sig.column("field_accuracy").null_count == 0


def test_problems_name_the_unloadable_candidate_and_the_foreign_tokenizer(run):
    kinds = {(p["model"], p["kind"]) for p in run.problems}
    assert kinds == {("missing", "load"), ("vocab", "tokenizer")}
    message = next(p["message"] for p in run.problems if p["kind"] == "tokenizer")
    assert "tokenizer differs from the expected one" in message and "538 tokens" in message
    metrics_of = {m: set(run.comparison_for(m).column("metric").to_pylist()) for m in ("other", "vocab")}
    token_level = {"heldout_item_nll", "heldout_loss", "text_item_nll", "text_nll", "ppl"}
    assert token_level <= metrics_of["other"]
    assert not token_level & metrics_of["vocab"]
    assert "field_accuracy" in metrics_of["vocab"]  # outputs are still compared
    assert "- missing / - (load): cannot load" in run.to_markdown()


def test_summary_has_every_slice_and_agrees_with_the_comparison(run):
    summary = run.summary.to_pylist()
    slices = {r["slice"] for r in summary if r["model"] == "base" and r["suite"] == "structured"}
    assert slices == {ALL_SLICE, "source_module=mod_a", "source_module=mod_b", "length_bucket=<=128"}
    ppl = {r["slice"]: r["value"] for r in summary if r["model"] == "base" and r["metric"] == "ppl"}
    assert set(ppl) == {ALL_SLICE, "domain=prose", "domain=code"} and all(v > 1 for v in ppl.values())
    value = {(r["model"], r["eval_set"], r["metric"], r["slice"]): r["value"] for r in summary}
    checked = 0
    for r in run.comparison_for("other").to_pylist():
        key = (r["eval_set"], r["metric"], r["slice"])
        if ("other", *key) not in value:
            continue  # item-mean metrics named for the item column (heldout_item_nll, ...) have no summary twin
        checked += 1
        assert r["candidate"] == pytest.approx(value[("other", *key)], nan_ok=True), r
        assert r["baseline"] == pytest.approx(value[("base", *key)], nan_ok=True), r
    assert checked > 30


def test_comparison_is_paired_seeded_and_renders(run, models, suite_items):
    rows = run.comparison_for("other").to_pylist()
    by_key = {(r["eval_set"], r["metric"], r["slice"]): r for r in rows}
    nll = by_key[("sig", "heldout_item_nll", ALL_SLICE)]
    assert nll["paired"] and nll["n"] == 3 and nll["n_resamples"] == SETTINGS.n_resamples
    assert nll["ci_low"] <= nll["diff"] <= nll["ci_high"] and nll["diff"] != 0  # other weights, other loss
    assert not nll["higher_is_better"]
    assert ("sig", "heldout_item_nll", "source_module=mod_b") in by_key
    assert by_key[("sig", "heldout_item_nll", "source_module=mod_b")]["n"] == 2
    ece = by_key[("calibration_yesno", "ece", ALL_SLICE)]
    assert (
        not ece["paired"] and ece["ci_low"] is None and ece["diff"] == pytest.approx(ece["candidate"] - ece["baseline"])
    )
    assert by_key[("behaviour_refusal", "refusal_rate", ALL_SLICE)]["n"] == 6
    assert ("behaviour_refusal", "over_refusal_rate", ALL_SLICE) not in by_key
    stab = by_key[("sentinel", "stability_pairwise", ALL_SLICE)]
    assert stab["paired"] and stab["n"] == 2  # 6 items = 2 groups of 3 phrasings: the group is the unit

    # The same inputs and seed give the same intervals (outputs are deterministic: greedy decoding).
    again = comparison.run_evaluation(
        {"base": models["base"], "other": models["other"]}, "base", {"structured": suite_items["structured"]}, SETTINGS
    )
    nll2 = next(
        r for r in again.comparison.to_pylist() if r["metric"] == "heldout_item_nll" and r["slice"] == ALL_SLICE
    )
    assert (nll2["ci_low"], nll2["ci_high"]) == (nll["ci_low"], nll["ci_high"])

    md = run.to_markdown()
    assert "**other** vs **base**" in md and "**vocab** vs **base**" in md
    assert "| structured | sig | heldout_item_nll (lower is better) | 3 |" in md
    assert f"[{nll['ci_low']:+.4f}, {nll['ci_high']:+.4f}]" in md
    assert "source_module=mod_b" not in md and "source_module=mod_b" in run.to_markdown(slices=True)

    gate = evaluate_gate(
        [{"metric": "heldout_item_nll", "op": "no_regression", "higher_is_better": False, "tolerance": 100.0}],
        run.comparison_for("other", "sig"),
    )
    assert gate.passed


def test_reproducibility_record(run, models, suite_items):
    rec = run.record
    assert rec["baseline"] == "base"
    assert rec["models"]["base"]["identity"] == {"manifest_id": "m-base"}
    assert rec["models"]["missing"]["loaded"] is False
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["base"][0])
    assert rec["models"]["base"]["chat_template_sha256"] == hashlib.sha256(tok.chat_template.encode()).hexdigest()
    assert rec["models"]["base"]["vocab_sha256"] == identity.vocab_sha256(tok)
    assert rec["models"]["base"]["hardware"]["device"] == "cpu"
    sig = rec["eval_sets"]["sig"]
    assert sig == {
        "n_items": 3,
        "versions": ["3"],
        "checksum": registry.registry_checksum(suite_items["structured"]),
        "suites": ["structured"],
    }
    assert rec["eval_sets"]["behaviour_refusal"]["n_items"] == 6  # limit applies per eval set
    assert rec["decoding"]["max_new_tokens"] == 4 and rec["decoding"]["strategy"] == "greedy"
    assert rec["seeds"] == {"bootstrap_seed": 7, "n_resamples": 300, "confidence": 0.95}
    assert rec["packages"]["torch"] == importlib.metadata.version("torch")
    json.dumps(rec)  # the record is plain JSON


def test_a_failing_suite_is_a_problem_not_a_crash(models, suite_items):
    bad_texts = pa.table({"text": ["no domain column here"]})
    out = comparison.run_evaluation(
        {"base": models["base"]},
        "base",
        {"perplexity": bad_texts, "sentinel": bs.sentinel_set().slice(0, 3)},
        SETTINGS,
    )
    assert [(p["suite"], p["kind"]) for p in out.problems] == [("perplexity", "suite")]
    assert "domain" in out.problems[0]["message"]
    assert set(out.items.column("suite").to_pylist()) == {"sentinel"}
    assert out.comparison.num_rows == 0 and "No comparisons" in out.to_markdown()
    with pytest.raises(ValueError, match="baseline"):
        comparison.run_evaluation({"a": models["base"]}, "b", {"sentinel": bs.sentinel_set()}, SETTINGS)
    with pytest.raises(ValueError, match="unknown suite"):
        comparison.run_evaluation({"a": models["base"]}, "a", {"vibes": bs.sentinel_set()}, SETTINGS)


def test_headline_is_a_few_keys_of_the_reported_metrics(run):
    """The report's metadata keeps a handful of numbers (the gate metric per model, the verdict, truncation) under
    the keys the full metrics have, so a plot continues run over run; everything else stays in the table."""
    values = reported_metrics(run)
    assert len(values) > 40  # what used to be flat metadata keys
    gate = ReleaseGateSpec(eval_set="sig", candidate="other", primary_metric="field_accuracy", tolerance=0.0)
    headline = gate_headline(run, gate, "base", "base")
    scores = {k: v for k, v in headline.items() if k.endswith("/structured/field_accuracy")}
    assert set(scores) == {"base/structured/field_accuracy", "other/structured/field_accuracy",
                           "vocab/structured/field_accuracy"}  # fmt: skip
    assert all(values[k] == v for k, v in scores.items())
    primary = run.comparison_for("other", "sig").filter(pc.equal(run.comparison_for("other", "sig")["slice"], "all"))
    row = next(r for r in primary.to_pylist() if r["metric"] == "field_accuracy")
    assert headline["release_gate/diff"] == pytest.approx(row["diff"])
    assert headline["release_gate/passed"] is (row["diff"] >= 0)
    shares = [r["share"] for r in truncation_shares(run.items) if r["model"] == "other"]
    assert headline["other/truncated_share"] == max(shares)
    assert len(headline) == 6
    # a task adapter: its label and the base's, the same keys in every partition
    relabelled = reported_metrics(run, {"other": "adapter"})
    adapter = adapter_headline(relabelled, run, "other", "adapter")
    assert set(adapter) == {
        "base/structured/field_accuracy",
        "base/perplexity/ppl",
        "adapter/structured/field_accuracy",
        "adapter/perplexity/ppl",
        "adapter/truncated_share",
    }  # no tool_calls suite in this run: no tool accuracy
    assert adapter["adapter/perplexity/ppl"] == values["other/perplexity/ppl"]
