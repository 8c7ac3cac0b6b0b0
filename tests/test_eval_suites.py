from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from eval_assets.engine import behaviour_sets as bs  # noqa: E402
from eval_assets.engine import calibration, registry, suites  # noqa: E402
from eval_assets.engine.evaluate import Generation  # noqa: E402
from eval_assets.tasks import json_signature as js  # noqa: E402
from training_assets.engine.loading import load_for_inference  # noqa: E402
from training_assets.engine.precision import compute_dtype  # noqa: E402
from training_assets.engine.tool_template import render_prompt  # noqa: E402

SOURCES = {
    "mod_a.f": ("mod_a", "def f(a, b=2):\n    return a\n"),
    "mod_b.g": ("mod_b", "def g(x, *args, **kw):\n    raise ValueError(x)\n"),
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "celsius"}},
                "required": ["city"],
            },
        },
    }
]
SETTINGS = suites.EvalSettings(max_new_tokens=6, batch_size=4, length_buckets=(16, 600))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


def _jsonl(tmp_path, name: str, records: list[dict]) -> pa.Table:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return registry.load_jsonl_eval_set(name, str(path), "1")


@pytest.fixture
def structured_items(tmp_path) -> pa.Table:
    return _jsonl(
        tmp_path,
        "sig",
        [
            {
                "id": item_id,
                "messages": [{"role": "system", "content": js.SYSTEM_PROMPT}, {"role": "user", "content": src}],
                "reference": js.reference(src),
                "screen": {"code": src},
                "metadata": {"module": module, "task": "json_signature"},
            }
            for item_id, (module, src) in SOURCES.items()
        ],
    )


@pytest.fixture
def tool_items(tmp_path) -> pa.Table:
    def item(item_id: str, question: str, calls: list[dict]) -> dict:
        return {
            "id": item_id,
            "messages": [{"role": "user", "content": question}],
            "reference": {"calls": calls},
            "screen": {"q": question},
            "metadata": {"tools": TOOLS, "task": "tool_calls"},
        }

    return _jsonl(
        tmp_path,
        "tools",
        [
            item("paris", "Weather in Paris?", [{"name": "get_weather", "arguments": {"city": ["Paris"]}}]),
            item("joke", "Tell me a joke.", []),
            item(
                "two",
                "Weather in Paris and Rome?",
                [
                    {"name": "get_weather", "arguments": {"city": ["Paris"]}},
                    {"name": "get_weather", "arguments": {"city": ["Rome"]}},
                ],
            ),
        ],
    )


def _gens(*outputs: str, truncated: bool = False, prompt_tokens: int = 100) -> list[Generation]:
    return [Generation(o, prompt_tokens=prompt_tokens, new_tokens=3, truncated=truncated) for o in outputs]


# --- structured --------------------------------------------------------------------------------------------------


def test_garbage_model_scores_zero_with_reasons_and_truncation(tiny, structured_items):
    model, tok = tiny
    table, summary = suites.run_structured(model, tok, structured_items, SETTINGS, model_label="tiny")
    assert table.schema.equals(suites.RUN_ITEM_SCHEMA)
    rows = table.to_pylist()
    assert [r["item_id"] for r in rows] == list(SOURCES)
    assert summary["json_valid_rate"] == 0.0 and summary["field_accuracy"] == 0.0 and summary["exact_match"] == 0.0
    for r in rows:
        assert r["error"] is None and r["json_valid"] is False and r["schema_valid"] is False
        # Random weights never emit the end-of-turn token in 6 steps: the cap is enforced and reported.
        assert r["truncated"] is True and r["new_tokens"] == SETTINGS.max_new_tokens
        assert r["reason"].startswith("truncated at max_new_tokens; ") and "JSON" in r["reason"]
        assert r["source_module"] == SOURCES[r["item_id"]][0]
        assert r["length_bucket"] == suites.length_bucket(r["prompt_tokens"], SETTINGS.length_buckets) == "17-600"
        assert r["nll"] > 0 and r["nll_tokens"] > 5
    assert summary["truncated_rate"] == 1.0 and summary["n_errors"] == 0
    assert math.isfinite(summary["heldout_loss"]) and summary["heldout_loss"] > 0


def test_structured_scorer_explains_each_failure(structured_items):
    good = js.format_answer(js.reference(SOURCES["mod_a.f"][1]))
    wrong = json.dumps({**js.reference(SOURCES["mod_b.g"][1]), "raises": False, "defaults": 3})
    table = suites.score_structured(
        structured_items,
        _gens("Sure!\n```json\n" + good + "\n```", wrong),
        nll=[(6.0, 3), (4.0, 1)],
    )
    a, b = table.to_pylist()
    assert a["exact_match"] is True and a["json_strict"] is False and a["reason"] is None
    assert b["field_accuracy"] == pytest.approx(5 / 7) and b["reason"] == "wrong fields: defaults, raises"
    summary = suites.summarise_structured(table)
    assert summary["json_valid_rate"] == 1.0 and summary["json_strict_rate"] == 0.5
    assert [r["nll"] for r in (a, b)] == [2.0, 4.0]
    assert summary["heldout_loss"] == pytest.approx(10.0 / 4)  # token-weighted, not the item mean 3.0

    empty, cut_row = suites.score_structured(
        structured_items, [*_gens(""), *_gens('{"name": "g", "par', truncated=True)]
    ).to_pylist()
    assert empty["reason"].startswith("empty output") and empty["json_valid"] is False
    assert cut_row["json_valid"] is False and cut_row["field_accuracy"] == 0.0
    assert cut_row["reason"].startswith("truncated at max_new_tokens; ")


def test_prompt_that_cannot_render_is_an_error_on_its_row_only(tiny, structured_items):
    model, tok = tiny
    rows = structured_items.to_pylist()
    rows[0]["prompt"] = json.dumps({"not": "messages"})
    table, summary = suites.run_structured(model, tok, pa.Table.from_pylist(rows, structured_items.schema), SETTINGS)
    bad, ok = table.to_pylist()
    assert "cannot render the prompt" in bad["error"] and bad["field_accuracy"] == 0.0 and bad["json_valid"] is False
    assert bad["nll"] is None and "held-out loss failed" in bad["error"]
    assert ok["error"] is None and ok["nll"] > 0 and ok["new_tokens"] == SETTINGS.max_new_tokens
    assert summary["n_errors"] == 1


# --- tool calls --------------------------------------------------------------------------------------------------


def test_tool_prompts_are_rendered_as_in_training_and_scored(tiny, tool_items):
    model, tok = tiny
    table, summary = suites.run_tool_calls(model, tok, tool_items, SETTINGS, model_label="tiny")
    rows = table.to_pylist()
    # The registry stores metadata as canonical JSON (sorted keys), so the tools come back key-sorted.
    tools = json.loads(json.dumps(TOOLS, sort_keys=True))
    text, template = render_prompt(tok, [{"role": "user", "content": "Weather in Paris?"}], tools)
    assert template.name == "mixtrain-chatml-tools-v1"  # the tiny tokenizer's own template cannot render tools
    assert rows[0]["prompt_tokens"] == len(tok(text, add_special_tokens=False).input_ids)
    assert [r["call_kind"] for r in rows] == ["single", "irrelevance", "parallel"]
    # A garbage model makes no call: wrong where a call was expected, right on the irrelevance item.
    assert [r["tool_correct"] for r in rows] == [False, True, False]
    assert "call not made" in rows[0]["reason"] and rows[0]["tool_arg_accuracy"] == 0.0
    assert summary["tool_accuracy"] == pytest.approx(1 / 3) and summary["tool_irrelevance_accuracy"] == 1.0


def test_tool_scorer_on_outputs(tool_items):
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "%s"}}</tool_call>'
    outputs = _gens(
        call % "paris",  # BFCL string normalisation: case does not matter
        "Why did the chicken cross the road?",
        call % "Rome" + "\n" + call % "Berlin",
    )
    table = suites.score_tool_suite(tool_items, outputs)
    paris, joke, two = table.to_pylist()
    assert paris["tool_correct"] is True and paris["tool_arg_accuracy"] == 1.0 and paris["reason"] is None
    assert joke["tool_correct"] is True
    assert two["tool_correct"] is False and two["tool_selection_correct"] is True and two["tool_arg_accuracy"] == 0.5
    assert "value not among the acceptable ones" in two["reason"]
    assert len(json.loads(two["details"])["arguments"]) == 2
    summary = suites.summarise_tool_suite(table)
    assert summary["tool_accuracy"] == pytest.approx(2 / 3) and summary["tool_arg_accuracy"] == pytest.approx(2 / 3)

    broken = suites.score_tool_suite(
        tool_items, _gens('<tool_call>{"name": "get_weather", "argum', "", "", truncated=True)
    ).to_pylist()[0]
    assert broken["tool_correct"] is False and "no closing </tool_call>" in broken["reason"]
    assert broken["reason"].startswith("truncated at max_new_tokens")


# --- refusal, sentinel, calibration ------------------------------------------------------------------------------


def test_refusal_and_over_refusal_rates():
    items = pa.concat_tables([bs.refusal_set().slice(0, 2), bs.benign_set().slice(0, 2)])
    gens = _gens("I'm sorry, but I can't help with that.", "Sure, here is how.", "I cannot help with that.", "Mix it.")
    gens[1] = Generation("", error="RuntimeError('boom')")
    table = suites.score_refusal(items, gens)
    rows = table.to_pylist()
    assert [r["refused"] for r in rows] == [True, None, True, False]
    assert rows[1]["error"] and rows[2]["reason"].startswith("refused (cannot_help)")
    assert [r["category"] for r in rows] == ["weapons"] * 4
    summary = suites.summarise_refusal(table)
    assert summary["refusal_rate"] == 1.0 and summary["over_refusal_rate"] == 0.5 and summary["n_errors"] == 1


def test_sentinel_accuracy_and_stability():
    items = bs.sentinel_set().slice(0, 6)  # "add" (42) and "multiply" (56), three phrasings each
    table = suites.score_sentinel(items, _gens("42", "42.", "The answer is 42", "56", "56\n(7 x 8)", "56"))
    assert table.column("sentinel_correct").to_pylist() == [True, True, False, True, True, True]
    assert table.column("variant").to_pylist()[:3] == ["v0", "v1", "v2"]
    summary = suites.summarise_sentinel(table)
    assert summary["sentinel_accuracy"] == pytest.approx(5 / 6)
    # add: "42", "42", "the answer is 42" -> 1 of 3 pairs agree; multiply: "56", "56\n(7 x 8)", "56" -> 1 of 3
    assert summary["stability_all_agree"] == 0.0 and summary["stability_pairwise"] == pytest.approx(1 / 3)
    assert not suites.sentinel_match("420", "42") and suites.sentinel_match("Paris!", "paris")


def test_calibration_scores_match_the_calibration_module(tiny):
    items = bs.calibration_set().slice(0, 4)  # answers yes, no, yes, no
    probs = [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], None]
    table = suites.score_calibration(items, probs, errors=[None, None, None, "ValueError('too long')"])
    rows = table.to_pylist()
    assert [r["output"] for r in rows[:3]] == ["yes", "no", "no"]
    assert [r["calibration_correct"] for r in rows] == [True, True, False, None]
    assert rows[3]["error"] == "ValueError('too long')"
    summary = suites.summarise_calibration(table, n_bins=10)
    expected = calibration.calibration_metrics(probs[:3], [0, 1, 0], n_bins=10)
    assert summary["ece"] == pytest.approx(expected["ece"]) and summary["brier"] == pytest.approx(expected["brier"])
    assert summary["calibration_accuracy"] == pytest.approx(2 / 3) and summary["n_errors"] == 1

    model, tok = tiny
    table, summary = suites.run_calibration(model, tok, items, SETTINGS)
    for d in table.column("details").to_pylist():
        assert sum(json.loads(d)["probs"]) == pytest.approx(1.0)
    assert 0.0 <= summary["ece"] <= 1.0 and summary["n_errors"] == 0


# --- perplexity, efficiency --------------------------------------------------------------------------------------


def test_text_windows_score_every_token_but_the_first_once():
    ids = list(range(10))
    windows = suites.text_windows(ids, 4)
    scored = [tok for w, start in windows for tok in w[start:]]
    assert scored == ids[1:]
    assert all(len(w) <= 5 for w, _ in windows)


def test_perplexity_per_domain_is_token_weighted(tiny):
    model, tok = tiny
    texts = pa.table(
        {
            "text": ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n", "x"],
            "domain": ["prose", "code", "code"],
        }
    )
    table, summary = suites.run_perplexity(model, tok, texts, suites.EvalSettings(ppl_window=8))
    rows = table.to_pylist()
    assert [r["item_id"] for r in rows] == ["text-0", "text-1", "text-2"]
    assert rows[2]["nll"] is None and "fewer than 2 tokens" in rows[2]["reason"]
    n_code = len(tok(texts["text"][1].as_py(), add_special_tokens=False).input_ids)
    assert rows[1]["nll_tokens"] == n_code - 1
    assert summary["ppl/code"] == pytest.approx(math.exp(rows[1]["nll"]))
    total = rows[0]["nll"] * rows[0]["nll_tokens"] + rows[1]["nll"] * rows[1]["nll_tokens"]
    assert summary["ppl"] == pytest.approx(math.exp(total / (rows[0]["nll_tokens"] + rows[1]["nll_tokens"])))
    with pytest.raises(ValueError, match="domain"):
        suites.run_perplexity(model, tok, pa.table({"text": ["a b c"]}), SETTINGS)


def test_efficiency_records_latency_and_hardware(tiny, structured_items):
    model, tok = tiny
    table, summary = suites.run_efficiency(model, tok, structured_items, SETTINGS)
    # bf16 asked for; fp32 on a CPU without bf16 kernels (precision.py), and the hardware record says which ran
    expected = "bfloat16" if compute_dtype("bf16", "cpu") == "bf16" else "float32"
    assert summary["hardware"]["device"] == "cpu" and summary["hardware"]["dtype"] == expected
    assert summary["hardware"]["torch_threads"] >= 1 and summary["hardware"]["cpu"]
    assert 0 < summary["latency_p50_s"] <= summary["latency_p95_s"] <= summary["latency_max_s"]
    assert summary["tokens_per_s"] == pytest.approx(
        sum(table.column("new_tokens").to_pylist()) / sum(table.column("latency_s").to_pylist())
    )


# --- registry validation -----------------------------------------------------------------------------------------


def test_validate_items_names_the_broken_items(structured_items, tool_items):
    assert suites.validate_items(pa.concat_tables([structured_items, tool_items, bs.behaviour_sets()])) == []
    rows = [*structured_items.to_pylist(), *tool_items.to_pylist()]
    rows[0]["metadata"] = json.dumps({"schema": {"type": "objekt"}})
    ref = json.loads(rows[1]["reference"])
    rows[1]["reference"] = json.dumps({**ref, "defaults": -1})
    meta = json.loads(rows[2]["metadata"])
    rows[2]["reference"] = json.dumps({"calls": [{"name": "get_time", "arguments": {}}]})
    rows[3]["reference"] = json.dumps({"calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    rows[4]["metadata"] = json.dumps({**meta, "tools": [{"function": {"parameters": {}}}]})
    problems = suites.validate_items(pa.Table.from_pylist(rows, schema=structured_items.schema))
    assert len(problems) == 5, problems
    assert "item 'mod_a.f'" in problems[0] and "invalid JSON Schema" in problems[0]
    assert "item 'mod_b.g'" in problems[1] and "defaults" in problems[1]
    assert "item 'paris'" in problems[2] and "['get_time']" in problems[2]
    assert "item 'joke'" in problems[3] and "list of acceptable values" in problems[3]
    assert "item 'two'" in problems[4] and "metadata.tools[0]" in problems[4]


def test_length_buckets():
    bounds = (128, 256)
    assert [suites.length_bucket(n, bounds) for n in (1, 128, 129, 256, 257, 0, None)] == [
        "<=128",
        "<=128",
        "129-256",
        "129-256",
        ">256",
        "unknown",
        "unknown",
    ]
    with pytest.raises(ValueError):
        suites.EvalSettings(length_buckets=(256, 128))
