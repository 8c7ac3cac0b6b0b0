"""Dedupe compares a chat record's content, not the template its source wraps every example in."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixassets.engine.chat import normalise
from mixassets.engine.dedupe import DedupeConfig, dedupe, dedupe_incremental
from mixassets.engine.dedupe.content import ContentView, chat_segments, find_templates
from tests.helpers import documents

SYSTEM = "You analyse Python code. Reply with one JSON object and nothing else."
# The fixed wrapping is long next to an example, as the JSON schema in the demo's signature prompt is.
SCHEMA = " ".join(f'"field{i}": {{"type": "string", "description": "what field {i} holds"}},' for i in range(24))
TEMPLATE = (
    "Describe this Python function's signature as JSON matching the schema below.\n"
    "{" + SCHEMA + "}\n"
    "params: parameter names in order, with self and cls, without star args.\n"
    "defaults: how many params have defaults; raises: whether it raises.\n"
    "```python\n{code}\n```"
)
OTHER_TEMPLATE = "Please read the following function carefully and summarise its parameters as JSON.\n{code}\nThanks!"
VOCAB = [f"name{i}" for i in range(400)]


def example(k: int) -> tuple[str, str]:
    """A distinct short function and its JSON answer: a few words, far fewer than the template's."""
    rng = random.Random(k)
    args = rng.sample(VOCAB, 2)
    code = f"def f{k}({args[0]}, {args[1]}):\n    return {args[0]} + {rng.choice(VOCAB)}"
    answer = json.dumps({"name": f"f{k}", "params": args, "defaults": 0})
    return code, answer


def record(doc_id: str, source: str, code: str, answer: str, *, system: str = SYSTEM, template: str = TEMPLATE) -> dict:
    chat = normalise(
        [
            {"role": "system", "content": system},
            {"role": "user", "content": template.replace("{code}", code)},
            {"role": "assistant", "content": answer},
        ],
        "messages",
    )
    return {"doc_id": doc_id, "source_id": source, "kind": "chat", "text": chat.text(), "messages": chat.to_json()}


def table(rows: list[dict]) -> pa.Table:
    return documents([{"locator": f"f.jsonl:{i + 1}", **r} for i, r in enumerate(rows)])


EXAMPLES = [example(k) for k in range(300)]
SFT = [record(f"sft-{k:03d}", "sft", *ex) for k, ex in enumerate(EXAMPLES)]
# Another source with its own template and system prompt, which repeats five of the sft examples.
OTHER = [
    record(f"other-{k:03d}", "other", *example(1000 + k), system="Be terse.", template=OTHER_TEMPLATE)
    for k in range(25)
] + [record(f"copy-{k}", "other", *EXAMPLES[k], system="Be terse.", template=OTHER_TEMPLATE) for k in range(5)]
# The same content as sft-010 under another system prompt, in the sft source itself.
RESYSTEM = record("resystem-010", "sft", *EXAMPLES[10], system="You are a careful assistant.")


def test_whole_text_drops_distinct_examples_that_share_a_template() -> None:
    """The symptom: compared on the rendered text, the shared wrapping makes distinct examples duplicates."""
    _, clusters = dedupe(table(SFT), config=DedupeConfig(content_fields={"chat": ("text",)}))
    assert clusters.num_rows > 50


def test_distinct_examples_sharing_a_template_are_all_kept_and_true_duplicates_dropped() -> None:
    kept, clusters = dedupe(table([*SFT, *OTHER, RESYSTEM]))
    dropped = {r["doc_id"]: r for r in clusters.to_pylist()}
    # every distinct example stays; each copy (another template, another system prompt) goes as an exact match
    families = [{"resystem-010", "sft-010"}, *({f"sft-{k:03d}", f"copy-{k}"} for k in range(5))]
    assert len(dropped) == len(families)
    assert all(len(family & set(dropped)) == 1 for family in families)
    assert {r["match_type"] for r in dropped.values()} == {"exact"}
    assert kept.num_rows == len(SFT) + len(OTHER) + 1 - 6


def test_templates_are_found_per_source_and_need_enough_records() -> None:
    cfg = DedupeConfig()
    found = find_templates([table([*SFT, *OTHER])], cfg.content_fields, cfg.template_min_share, 20)
    assert set(found) == {"sft", "other"}
    assert len(found["sft"]) == 6  # the template's five fixed lines (schema included) and the closing fence
    # a source with fewer chat records than template_min_records has no template: one record cannot tell
    few = find_templates([table(SFT[:19])], cfg.content_fields, cfg.template_min_share, 20)
    assert few == {}
    view = ContentView(cfg.content_fields, found)
    code, answer = EXAMPLES[3]
    rec = SFT[3]
    assert view.text(rec["text"], "chat", rec["messages"], "sft") == f"{code}\n\n{answer}"


def test_content_fields_select_roles_and_tool_calls() -> None:
    chat = normalise(
        {
            "tools": [{"type": "function", "function": {"name": "lookup"}}],
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "find x"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
                },
                {"role": "tool", "content": "x is 1", "name": "lookup"},
            ],
        },
        "messages",
    )
    assert chat_segments(chat, ("user", "assistant", "tool", "tool_calls")) == [
        "find x",
        '{"arguments": {"q": "x"}, "name": "lookup"}',
        "x is 1",
    ]
    assert chat_segments(chat, ("system",)) == ["sys"]
    view = ContentView({"chat": ("text",)})
    assert view.text("whole", "chat", chat.to_json(), "s") == "whole"
    assert ContentView({"chat": ("user",)}).text("whole", "chat", "not json", "s") == "whole"  # unparseable: text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content_fields": {"html": ("text",)}}, "unknown source kind"),
        ({"content_fields": {"text": ("user",)}}, "compared whole"),
        ({"content_fields": {"chat": ()}}, "must name roles"),
        ({"template_min_share": 0.0}, "template_min_share"),
        ({"template_min_records": 1}, "template_min_records"),
    ],
)
def test_content_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DedupeConfig(**kwargs)


def test_content_settings_are_part_of_the_fingerprint() -> None:
    assert DedupeConfig().fingerprint() != DedupeConfig(content_fields={"chat": ("text",)}).fingerprint()
    assert DedupeConfig().fingerprint() != DedupeConfig(template_min_share=0.9).fingerprint()


def test_refresh_trusting_an_unchanged_chat_source_reuses_its_template(tmp_path) -> None:
    before = dedupe_incremental(table(SFT))
    pq.write_table(before.sketches, tmp_path / "sketches.parquet")
    pq.write_table(before.verified_pairs, tmp_path / "pairs.parquet")
    corpus = table([*SFT, *OTHER])  # sft holds the records it held: the caller may trust it as unchanged
    full = dedupe_incremental(corpus)
    inc = dedupe_incremental(
        corpus,
        previous_sketches=pq.read_table(tmp_path / "sketches.parquet"),
        previous_pairs=pq.read_table(tmp_path / "pairs.parquet"),
        unchanged_sources={"sft"},
    )
    assert inc.stats.sketches_reused == len(SFT)
    assert (
        full.clusters.num_rows == 5
    )  # the five copies in the other source    assert inc.kept_mask.tolist() == full.kept_mask.tolist()
    assert inc.clusters.equals(full.clusters)
    assert (
        inc.sketches.schema.metadata[b"mixtrain.dedupe.templates"]
        == full.sketches.schema.metadata[b"mixtrain.dedupe.templates"]
    )
