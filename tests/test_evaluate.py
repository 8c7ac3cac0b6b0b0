from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")

from eval_assets.engine import evaluate as ev  # noqa: E402
from eval_assets.engine import registry  # noqa: E402
from eval_assets.tasks import json_signature as js  # noqa: E402
from training_assets.engine.loading import load_for_inference  # noqa: E402
from training_assets.engine.tiny import make_tiny_model  # noqa: E402

SOURCES = [
    "def f(a, b=2):\n    return a\n",
    "def g(x, *args, **kw):\n    raise ValueError(x)\n",
    "def f(a, b=2):\n    return a\n",  # same function again: must get the same answer as the first
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    make_tiny_model(str(path), seed=0)
    return load_for_inference(str(path))


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> pa.Table:
    path = tmp_path_factory.mktemp("eval") / "holdout.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"mod.item{i}",
                "messages": js.prompt_messages(src),
                "reference": js.reference(src),
                "screen": {"code": src},
            }
        )
        for i, src in enumerate(SOURCES)
    ]
    path.write_text("\n".join(lines) + "\n")
    return registry.load_jsonl_eval_set("signature_holdout", str(path), "1")


def _conversation(src: str) -> list[dict[str, str]]:
    return js.prompt_messages(src)


def test_generate_returns_texts_in_input_order_with_timing(tiny):
    model, tok = tiny
    short = [{"role": "user", "content": "Hello"}]
    convs = [_conversation(SOURCES[0]), short, _conversation(SOURCES[0])]
    padding_side = tok.padding_side
    texts, stats = ev.generate(model, tok, convs, max_new_tokens=6, batch_size=2)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    # Identical requests ride in one batch after length sorting, so they must come back identical and in place.
    assert texts[0] == texts[2]
    assert tok.padding_side == padding_side  # the caller's tokenizer is left as it was
    assert 0 < stats["new_tokens"] <= 3 * 6
    assert 0 < stats["latency_p50_s"] <= stats["latency_p95_s"]
    assert stats["tokens_per_s"] > 0 and stats["n"] == 3
    with pytest.raises(ValueError):
        ev.generate(model, tok, convs, max_new_tokens=0, batch_size=2)


def test_loss_example_masks_exactly_the_assistant_answer(tiny):
    _, tok = tiny
    ids, start = ev._loss_example(tok, _conversation(SOURCES[0]), '{"name": "f"}')
    assert tok.decode(ids[start:]) == '{"name": "f"}<|im_end|>\n'
    assert tok.decode(ids[:start]).endswith("<|im_start|>assistant\n")


def test_reference_loss_is_a_finite_mean_and_batch_invariant(tiny):
    model, tok = tiny
    convs = [_conversation(s) for s in SOURCES]
    refs = [js.format_answer(js.reference(s)) for s in SOURCES]
    one = ev.reference_loss(model, tok, convs, refs, batch_size=1)
    three = ev.reference_loss(model, tok, convs, refs, batch_size=3)
    assert math.isfinite(one) and 0 < one < 2 * math.log(len(tok))
    assert three == pytest.approx(one, rel=2e-2)  # right padding must not change the loss beyond bf16 noise
    with pytest.raises(ValueError, match="references"):
        ev.reference_loss(model, tok, convs, refs[:2], batch_size=2)


def test_evaluate_json_signature_on_tiny_model_is_well_formed(tiny, items):
    model, tok = tiny
    table, metrics = ev.evaluate_json_signature(model, tok, items, max_new_tokens=8, batch_size=2, model_label="tiny")
    assert table.schema.equals(ev.EVAL_RESULT_SCHEMA)
    assert table.column("item_id").to_pylist() == ["mod.item0", "mod.item1", "mod.item2"]
    assert set(table.column("model").to_pylist()) == {"tiny"}
    assert table.column("prompt").to_pylist() == items.column("prompt").to_pylist()
    assert set(metrics) == {
        "json_valid_rate",
        "schema_valid_rate",
        "field_accuracy",
        "exact_match",
        "heldout_loss",
        "n",
        "latency_p50_s",
        "latency_p95_s",
        "tokens_per_s",
    }
    assert metrics["n"] == 3
    for key in ("json_valid_rate", "schema_valid_rate", "field_accuracy", "exact_match"):
        assert 0.0 <= metrics[key] <= 1.0
    assert math.isfinite(metrics["heldout_loss"]) and metrics["heldout_loss"] > 0


class _AnswersWith(torch.nn.Module):
    """A real model whose generate() always answers with one fixed text, to check scoring and aggregation."""

    def __init__(self, model, tok, answer: str):
        super().__init__()
        self.inner = model
        self.generation_config = model.generation_config
        self.answer_ids = [*tok(answer, add_special_tokens=False).input_ids, tok.eos_token_id]

    def forward(self, **kwargs):
        return self.inner(**kwargs)

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        new = torch.tensor([self.answer_ids] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)


def test_evaluate_json_signature_scores_and_aggregates(tiny, items):
    model, tok = tiny
    answer = "```json\n" + js.format_answer(js.reference(SOURCES[0])) + "\n```"
    fake = _AnswersWith(model, tok, answer)
    table, metrics = ev.evaluate_json_signature(fake, tok, items, max_new_tokens=8, batch_size=2, model_label="fake")
    assert table.column("exact_match").to_pylist() == [True, False, True]
    assert table.column("output").to_pylist()[0] == answer
    # g differs from f in name, params, defaults, varargs, kwargs, returns_value and raises: 0 of 7 fields.
    assert table.column("field_accuracy").to_pylist() == [1.0, 0.0, 1.0]
    assert metrics["json_valid_rate"] == 1.0 and metrics["schema_valid_rate"] == 1.0
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    assert metrics["field_accuracy"] == pytest.approx(2 / 3)


# -- all candidates on all sets ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> str:
    """A LoRA adapter trained on the answer to SOURCES[1], so its held-out loss differs from the base's."""
    from training_assets.engine.config import SFTConfig
    from training_assets.engine.sft import train_lora

    answer = js.format_answer(js.reference(SOURCES[1]))
    conversation = [*js.prompt_messages(SOURCES[1]), {"role": "assistant", "content": answer}]
    recipe = {
        "base_model": "tiny",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "merge": False},
        "steps": 3,
        "batch_size": 1,
        "lr": 5e-2,
        "warmup_steps": 0,
        "max_seq_len": 1024,
        "dtype": "fp32",
    }
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    record = {"kind": "chat", "text": "", "messages": json.dumps(conversation)}
    train_lora(str(tiny_model_dir), [record], SFTConfig.from_recipe(recipe), str(out), data_manifest_id="test")
    return str(out)


def test_evaluate_candidates_reads_the_base_once_and_matches_loading_each_alone(
    tiny_model_dir, adapter_dir, items, monkeypatch
):
    from transformers import AutoModelForCausalLM

    base = str(tiny_model_dir)
    other = pa.Table.from_pylist([{**r, "eval_set": "other"} for r in items.to_pylist()], schema=items.schema)
    registry_table = pa.concat_tables([items, other])
    reads: list[str] = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, path, *args, **kwargs):
        reads.append(str(path))
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    # "base" again after the adapter: it must not see the weights the adapter was merged into.
    candidates = {"base": (base, None), "sft": (base, adapter_dir), "again": (base, None)}
    report, summary = ev.evaluate_candidates(
        candidates, registry_table, ["other", "signature_holdout"], limit=2, max_new_tokens=6, batch_size=2
    )
    assert reads == [base], "the base weights must be read once for all candidates"
    monkeypatch.undo()

    assert report.schema.names == [*ev.EVAL_RESULT_SCHEMA.names, "eval_set"]
    assert list(summary) == [f"{c}/{s}" for c in candidates for s in ("other", "signature_holdout")]
    rows = report.select(["model", "eval_set", "item_id"]).to_pylist()
    assert [(r["model"], r["eval_set"]) for r in rows] == [
        (c, s) for c in candidates for s in ("other", "signature_holdout") for _ in range(2)
    ]
    assert {r["item_id"] for r in rows} == {"mod.item0", "mod.item1"}  # limit keeps the first two of each set

    first_two = items.slice(0, 2)
    for label, adapter in (("base", None), ("sft", adapter_dir)):
        model, tok = load_for_inference(base, adapter)
        alone, metrics = ev.evaluate_json_signature(
            model, tok, first_two, max_new_tokens=6, batch_size=2, model_label=label
        )
        got = report.filter(
            pc.and_(pc.equal(report["model"], label), pc.equal(report["eval_set"], "signature_holdout"))
        )
        assert got.column("output").to_pylist() == alone.column("output").to_pylist()
        assert summary[f"{label}/signature_holdout"]["heldout_loss"] == metrics["heldout_loss"]
    assert report.filter(pc.equal(report["model"], "again")).column("output").to_pylist() == (
        report.filter(pc.equal(report["model"], "base")).column("output").to_pylist()
    )
    assert summary["again/other"]["heldout_loss"] == summary["base/other"]["heldout_loss"]
    assert summary["sft/other"]["heldout_loss"] != summary["base/other"]["heldout_loss"]

    with pytest.raises(ValueError, match="nothing to evaluate"):
        ev.evaluate_candidates(candidates, registry_table, [], limit=None, max_new_tokens=6, batch_size=2)
