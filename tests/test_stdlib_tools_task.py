"""The demo's tool-calling task: real stdlib tools, references that execute, and one format for training and eval."""

from __future__ import annotations

import inspect
import json

import pyarrow as pa
import pytest

from eval_assets.engine.evaluate import Generation
from eval_assets.engine.registry import load_jsonl_eval_set
from eval_assets.engine.suites import score_tool_suite, summarise_tool_suite, validate_items
from eval_assets.tasks import stdlib_tools as t
from training_assets.engine.examples import IGNORE_INDEX, prepare_examples
from training_assets.engine.tool_template import TOOL_TEMPLATE_NAME


def test_tool_specs_are_the_real_signatures_and_docstrings():
    for tool in t.TOOLS:
        fn = tool.spec()["function"]
        sig = inspect.signature(tool.function)
        named = [p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert fn["parameters"]["required"] == named == list(fn["parameters"]["properties"])
        assert fn["description"] == inspect.getdoc(tool.function).splitlines()[0].strip()


def test_items_rotate_kinds_and_every_reference_executes():
    items = t.make_items(40, seed=3, prefix="x")
    assert [it.kind for it in items[:4]] == ["single", "single", "parallel", "irrelevance"]
    for it in items:
        offered = set(it.tools)
        assert len(it.tools) == 4 == len(offered)
        if it.kind == "irrelevance":
            assert it.calls == []
        else:
            assert len(it.calls) == (2 if it.kind == "parallel" else 1)
            for call in it.calls:
                assert call["name"] in offered
                tool = next(x for x in t.TOOLS if x.name == call["name"])
                tool.function(*call["arguments"].values())  # raises if a reference is not a valid call
    withheld = [it for it in items if it.kind == "irrelevance" and it.withheld]
    assert withheld and all(it.withheld not in it.tools for it in withheld)
    assert t.make_items(12, seed=3, prefix="x") == items[:12]  # reproducible


def test_no_request_repeats_within_a_set(monkeypatch: pytest.MonkeyPatch):
    """Paths and off-topic requests come from a handful of values; a set still never asks the same thing twice,
    and a set larger than its distinct requests fails naming itself instead of looping."""
    items = t.make_items(400, seed=0, prefix="x")
    assert len({it.request for it in items}) == 400
    assert [it.kind for it in items] == ["single", "single", "parallel", "irrelevance"] * 100
    irrelevant = [it for it in items if it.kind == "irrelevance"]
    assert set(t.OFF_TOPIC) <= {it.request for it in irrelevant}  # every off-topic request used, none twice
    monkeypatch.setattr(t, "_draw", lambda r, item_id, kind, size: t.ToolItem(item_id, kind, "same", [], []))
    with pytest.raises(ValueError, match=r"'y'.*no new single request"):
        t.make_items(2, seed=0, prefix="y")


def test_holdout_requests_never_occur_in_training():
    train, holdout = t.split(48, 16, seed=0)
    assert len(holdout) == 16
    assert not {it.request for it in train} & {it.request for it in holdout}


def test_eval_records_load_into_the_registry_and_validate(tmp_path):
    path = tmp_path / "tools.jsonl"
    items = t.make_items(8, seed=0, prefix="h")
    path.write_text("".join(json.dumps(t.eval_record(it)) + "\n" for it in items))
    table = load_jsonl_eval_set("tool_holdout", str(path), "1")
    assert table.num_rows == 8
    assert validate_items(table) == []


def _reply(item: t.ToolItem) -> str:
    """What a perfect model writes in the fallback template's convention."""
    return (
        "\n".join(
            "<tool_call>" + json.dumps({"name": c["name"], "arguments": c["arguments"]}) + "</tool_call>"
            for c in item.calls
        )
        or "None of these functions can do that."
    )


@pytest.mark.parametrize("perfect", [True, False])
def test_a_perfect_reply_scores_one_and_a_wrong_argument_does_not(tmp_path, perfect):
    items = t.make_items(8, seed=1, prefix="h")
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(t.eval_record(it)) + "\n" for it in items))
    table = load_jsonl_eval_set("tool_holdout", str(path), "1")
    replies = [_reply(it) for it in items]
    if not perfect:  # first single item: every integer argument off by one
        first = items[0]
        args = {k: v + 1 if isinstance(v, int) else v for k, v in first.calls[0]["arguments"].items()}
        replies[0] = "<tool_call>" + json.dumps({"name": first.calls[0]["name"], "arguments": args}) + "</tool_call>"
    scored = score_tool_suite(table, [Generation(r) for r in replies])
    summary = summarise_tool_suite(scored)
    assert summary["tool_selection_accuracy"] == 1.0
    assert summary["tool_irrelevance_accuracy"] == 1.0
    assert summary["tool_accuracy"] == (1.0 if perfect else 7 / 8)
    assert pa.compute.sum(scored["tool_correct"]).as_py() == (8 if perfect else 7)


def test_train_records_render_through_the_tool_template_with_loss_on_the_calls_only(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    item = next(it for it in t.make_items(8, seed=2, prefix="tr") if it.kind == "single")
    rec = t.train_record(item)
    record = {
        "id": rec["id"],
        "kind": "chat",
        "messages": json.dumps({"tools": rec["tools"], "messages": rec["messages"]}),
    }
    prepared = prepare_examples([record], tok, 2048)
    assert prepared.stats["tool_records"] == 1 and prepared.stats["tool_calls"] == 1
    assert prepared.templates["tools"].name == TOOL_TEMPLATE_NAME
    ex = prepared.examples[0]
    labelled = tok.decode([i for i, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE_INDEX])
    call = item.calls[0]
    assert labelled.startswith("<tool_call>") and f'"name": "{call["name"]}"' in labelled
    assert item.request not in labelled  # the user's words are context, not targets
