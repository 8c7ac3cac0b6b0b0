"""Tool-call chat records: validation, template choice, loss masking, prompt rendering and parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mixtrain.model_store import current_version
from training_assets.engine.examples import IGNORE_INDEX, RecordError, prepare_examples, tokenize_records
from training_assets.engine.tool_template import (
    NATIVE_TEMPLATE_NAME,
    TOOL_CHAT_TEMPLATE,
    TOOL_TEMPLATE_NAME,
    ToolCallParseError,
    parse_tool_calls,
    render_prompt,
    select_template,
    supports_tools,
)


def _demo_base() -> Path:
    """The live base_model version the demo published (its directory; a missing one makes the test skip)."""
    storage = Path(__file__).resolve().parents[1] / "examples" / "demo" / "storage"
    pointer = current_version(str(storage), "base_model")
    return storage / "base_model" / (pointer["path"] if pointer else "unpublished")


SMOLLM2_DIR = _demo_base()

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now", "description": "Current time"}},
]
RESULT = '{"temp_c": 21, "sky": "clear"}'
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris, and the time?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"type": "function", "function": {"name": "now", "arguments": {}}},
        ],
    },
    {"role": "tool", "name": "get_weather", "content": RESULT},
    {"role": "tool", "name": "now", "content": "12:00"},
    {"role": "assistant", "content": "21 C and clear; it is noon."},
]

# A ChatML template that does render tools (Hermes/Qwen style), to exercise the native path.
NATIVE_TOOL_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\nTOOLS:' }}{% for t in tools %}{{ t | tojson }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + (m['content'] or '') }}"
    "{%- if m['tool_calls'] is defined %}{% for c in m['tool_calls'] %}"
    "{{ '<call>' + c['function']['name'] + ' ' + (c['function']['arguments'] | tojson) + '</call>' }}"
    "{%- endfor %}{% endif %}{{ '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Mentions tools but drops calls and results: a source scan would be fooled, the probe is not.
MENTIONS_TOOLS_TEMPLATE = (
    "{%- if tools %}{{ 'There are ' + (tools | length | string) + ' tools.\\n' }}{% endif %}"
    "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + (m['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tool_record(messages: list[dict] | None = None, tools: list[dict] | None = None, doc_id: str = "t0") -> dict:
    payload = {"tools": TOOLS if tools is None else tools, "messages": MESSAGES if messages is None else messages}
    return {"doc_id": doc_id, "kind": "chat", "text": "", "messages": json.dumps(payload)}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture
def native_tokenizer(tiny_model_dir: Path):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = NATIVE_TOOL_TEMPLATE
    return tok


def labelled_text(tokenizer, ex: dict) -> list[str]:
    """Decoded contiguous runs of labelled tokens."""
    runs: list[list[int]] = []
    prev = False
    for tok, lab in zip(ex["input_ids"], ex["labels"], strict=True):
        if lab != IGNORE_INDEX:
            if not prev:
                runs.append([])
            runs[-1].append(tok)
        prev = lab != IGNORE_INDEX
    return [tokenizer.decode(r) for r in runs]


def test_fallback_template_labels_calls_and_answers_but_not_tool_results(tokenizer) -> None:
    prepared = prepare_examples([tool_record()], tokenizer, max_seq_len=1024)
    (ex,) = prepared.examples
    full = tokenizer.decode(ex["input_ids"])
    calls = (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
        '<tool_call>{"name": "now", "arguments": {}}</tool_call><|im_end|>'
    )
    assert labelled_text(tokenizer, ex) == [calls, "21 C and clear; it is noon.<|im_end|>"]
    # Tools are shown to the model in the system turn, after the record's own system message.
    assert full.startswith("<|im_start|>system\nBe brief.\n\n")
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in full
    assert f"<|im_start|>tool\n{RESULT}<|im_end|>" in full
    unlabelled = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab == -100])
    assert RESULT in unlabelled and "Weather in Paris" in unlabelled

    t = prepared.templates["tools"]
    assert (t.name, t.text, t.end_of_turn) == (TOOL_TEMPLATE_NAME, TOOL_CHAT_TEMPLATE, "<|im_end|>")
    assert prepared.templates_manifest()["tools"]["sha256"] == t.sha256 and len(t.sha256) == 64
    assert prepared.stats["tool_records"] == 1 and prepared.stats["tool_calls"] == 2
    # What the model learns to emit parses back into the calls of the record.
    assert parse_tool_calls(calls) == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "now", "arguments": {}},
    ]


def test_eval_prompt_is_the_training_prefix_with_the_same_template(tokenizer) -> None:
    prepared = prepare_examples([tool_record()], tokenizer, max_seq_len=1024)
    full = tokenizer.decode(prepared.examples[0]["input_ids"])
    prompt, template = render_prompt(tokenizer, MESSAGES[:2], TOOLS)
    assert template.sha256 == prepared.templates["tools"].sha256
    assert prompt.endswith("<|im_start|>assistant\n") and full.startswith(prompt)
    # Later turns (after a tool result) too, with arguments given as dicts or as JSON strings.
    prompt2, _ = render_prompt(tokenizer, MESSAGES[:5], TOOLS)
    assert full.startswith(prompt2) and len(prompt2) > len(prompt)
    # Without tools the tokenizer's own template is used, as for plain chat records.
    plain, plain_t = render_prompt(tokenizer, [{"role": "user", "content": "hi"}])
    assert plain_t.name == NATIVE_TEMPLATE_NAME and plain == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_native_tool_template_is_used_when_it_renders_tools(native_tokenizer) -> None:
    assert supports_tools(native_tokenizer)
    prepared = prepare_examples([tool_record()], native_tokenizer, max_seq_len=1024)
    t = prepared.templates["tools"]
    assert t.name == NATIVE_TEMPLATE_NAME and t.text == NATIVE_TOOL_TEMPLATE
    (ex,) = prepared.examples
    assert labelled_text(native_tokenizer, ex) == [
        '<call>get_weather {"city": "Paris"}</call><call>now {}</call><|im_end|>',
        "21 C and clear; it is noon.<|im_end|>",
    ]
    assert render_prompt(native_tokenizer, MESSAGES[:2], TOOLS)[1].sha256 == t.sha256


def test_a_template_that_only_mentions_tools_gets_the_fallback(tokenizer, tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = MENTIONS_TOOLS_TEMPLATE
    assert not supports_tools(tok) and not supports_tools(tokenizer)
    assert select_template(tok, with_tools=True).name == TOOL_TEMPLATE_NAME
    assert select_template(tok, with_tools=False).text == MENTIONS_TOOLS_TEMPLATE


@pytest.mark.skipif(not (SMOLLM2_DIR / "tokenizer.json").is_file(), reason="demo base model not materialised")
def test_smollm2_template_ignores_tools_so_the_fallback_is_used() -> None:
    tok = AutoTokenizer.from_pretrained(str(SMOLLM2_DIR))
    assert not supports_tools(tok)
    prepared = prepare_examples([tool_record()], tok, max_seq_len=2048)
    assert prepared.templates["tools"].name == TOOL_TEMPLATE_NAME
    assert labelled_text(tok, prepared.examples[0])[1] == "21 C and clear; it is noon.<|im_end|>"


def test_plain_and_tool_records_mix_and_plain_ones_are_unchanged(tokenizer) -> None:
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    records = [
        {"kind": "chat", "text": "", "messages": json.dumps(plain)},
        tool_record(),
        # tools declared but no call made: still a tool conversation (the model learns when not to call)
        tool_record([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),
    ]
    prepared = prepare_examples(records, tokenizer, 1024)
    assert set(prepared.templates) == {"chat", "tools"}
    assert prepared.templates["chat"].name == NATIVE_TEMPLATE_NAME
    assert (
        prepared.examples[0]["input_ids"]
        == tokenizer.apply_chat_template(plain, tokenize=True, return_dict=True)["input_ids"]
    )
    assert [e["record"] for e in prepared.examples] == [0, 1, 2]
    assert prepared.stats["tool_records"] == 2


def test_no_assistant_turn_is_counted_not_fatal(tokenizer) -> None:
    records = [
        tool_record([{"role": "user", "content": "just saying"}], doc_id="q"),
        {"kind": "chat", "text": "", "messages": json.dumps([{"role": "user", "content": "x"}])},
        tool_record(doc_id="ok"),
    ]
    prepared = prepare_examples(records, tokenizer, 1024)
    assert prepared.stats["dropped_no_assistant"] == 2 and prepared.stats["examples"] == 1
    assert prepared.stats["dropped_no_labels"] == 0
    # The original five-count view folds them into dropped_no_labels, as it always counted them.
    _, legacy = tokenize_records(records, tokenizer, 1024)
    assert legacy["dropped_no_labels"] == 2 and set(legacy) == {
        "examples",
        "truncated",
        "tokens",
        "label_tokens",
        "dropped_no_labels",
    }


def call(name: str, arguments) -> dict:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}],
    }


USER = {"role": "user", "content": "q"}


@pytest.mark.parametrize(
    ("payload", "field", "needle"),
    [
        ({"tools": {"x": 1}, "messages": [USER]}, "tools", "expected a list"),
        ({"tools": [{"name": "f"}], "messages": [USER]}, "tools[0]", "'type': 'function'"),
        (
            {"tools": [{"type": "function", "function": {"name": ""}}], "messages": [USER]},
            "tools[0].function.name",
            "non-empty",
        ),
        ({"tools": [TOOLS[1], TOOLS[1]], "messages": [USER]}, "tools[1].function.name", "declared twice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
                "messages": [USER],
            },
            "tools[0].function.parameters",
            "not a valid JSON schema",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("nope", {})]},
            "messages[1].tool_calls[0].function.name",
            "not one of",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("get_weather", "{bad")]},
            "messages[1].tool_calls[0].function.arguments",
            "not valid JSON",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("get_weather", "[1]")]},
            "messages[1].tool_calls[0].function.arguments",
            "JSON object",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("get_weather", {"days": 2})]},
            "messages[1].tool_calls[0].function.arguments",
            "'city' is a required property",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("get_weather", {"city": "P", "days": "two"})]},
            "messages[1].tool_calls[0].function.arguments",
            "at days",
        ),
        (
            {"tools": TOOLS, "messages": [USER, {**call("now", {}), "tool_calls": []}]},
            "messages[1].tool_calls",
            "non-empty",
        ),
        (
            {"tools": TOOLS, "messages": [{**USER, "tool_calls": call("now", {})["tool_calls"]}]},
            "messages[0].tool_calls",
            "only assistant",
        ),
        (
            {"tools": TOOLS, "messages": [USER, {"role": "tool", "content": "r"}]},
            "messages[1]",
            "must follow an assistant",
        ),
        (
            {"tools": TOOLS, "messages": [USER, call("now", {}), {"role": "tool", "content": {"a": 1}}]},
            "messages[2]",
            "'content': str",
        ),
        ({"tools": TOOLS, "extra": 1, "messages": [USER]}, "messages", "unknown keys ['extra']"),
        ({"messages": [USER, call("now", {})]}, "messages[1].tool_calls", "need the functions declared"),
    ],
)
def test_malformed_tool_records_name_record_and_field(tokenizer, payload: dict, field: str, needle: str) -> None:
    ok = {"kind": "text", "text": "fine", "messages": None}
    bad = {"doc_id": "bad", "kind": "chat", "text": "", "messages": json.dumps(payload)}
    with pytest.raises(RecordError, match="record 1 doc_id=bad") as err:
        prepare_examples([ok, bad], tokenizer, 256)
    assert f"field '{field}'" in str(err.value) and needle in str(err.value)


def test_tool_calls_in_a_bare_list_without_tools_fail(tokenizer) -> None:
    bad = {"doc_id": "b", "kind": "chat", "text": "", "messages": json.dumps([USER, call("now", {})])}
    with pytest.raises(RecordError, match="need the functions declared"):
        prepare_examples([bad], tokenizer, 256)


def test_parse_tool_calls() -> None:
    text = (
        'Let me check.\n<tool_call>{"name": "f", "arguments": {"a": [1, "x"]}}</tool_call>\n'
        '<tool_call> {"name": "g", "arguments": "{\\"b\\": 2}"} </tool_call>'
    )
    assert parse_tool_calls(text) == [{"name": "f", "arguments": {"a": [1, "x"]}}, {"name": "g", "arguments": {"b": 2}}]
    assert parse_tool_calls("no calls here") == []
    assert parse_tool_calls('<tool_call>{"name": "h"}</tool_call>') == [{"name": "h", "arguments": {}}]
    for bad, needle in [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>["f"]</tool_call>', "JSON object"),
        ('<tool_call>{"arguments": {}}</tool_call>', "'name'"),
        ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "'arguments' must be"),
        ('<tool_call>{"name": "f", "arguments": {}}', "unclosed"),
    ]:
        with pytest.raises(ToolCallParseError, match=needle):
            parse_tool_calls(bad)
