"""Tool-call chat records on the data side: read, gated (PII in call arguments), stored as training reads them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from mixassets.engine import chat
from mixassets.engine.gating import gate
from mixassets.engine.readers import read_source
from mixtrain.config.data import SourceSpec

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "send_mail",
            "description": "Send an e-mail",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}}},
        },
    }
]


def _call(name: str, arguments: object) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _record(
    rid: str, calls: list[dict], *, user: str = "Please let Bob know that the nightly release went out on schedule."
) -> dict:
    return {
        "id": rid,
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "name": "send_mail", "content": "sent"},
            {"role": "assistant", "content": "Done: Bob has been told that the build passed."},
        ],
    }


def _spec(**kw: object) -> SourceSpec:
    base = {"id": "tools", "path": "data/*", "format": "jsonl", "kind": "chat", "license": "MIT"}
    return SourceSpec.model_validate({**base, **kw})


def _read(tmp_path: Path, records: list[dict], **kw: object) -> tuple[pa.Table, pa.Table]:
    path = tmp_path / "data" / "tools.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return read_source(_spec(**kw), [str(path)], base=str(tmp_path), capture_time=T0)


def test_reader_keeps_tools_and_calls_and_the_text_covers_the_arguments(tmp_path):
    # arguments as an OpenAI export writes them: a JSON string
    rec = _record("a", [_call("send_mail", json.dumps({"to": "bob", "body": "build is green"}))])
    docs, bad = _read(tmp_path, [rec])
    assert bad.num_rows == 0 and docs.num_rows == 1
    stored = json.loads(docs["messages"][0].as_py())
    assert stored["tools"] == TOOLS
    call = stored["messages"][1]["tool_calls"][0]["function"]
    assert call == {"name": "send_mail", "arguments": {"to": "bob", "body": "build is green"}}
    text = docs["text"][0].as_py()
    assert '"body": "build is green"' in text and text == chat.parse_stored(docs["messages"][0].as_py()).text()


def test_a_malformed_call_is_a_read_error_naming_the_field(tmp_path):
    rec = _record("b", [_call("send_mail", "{not json")])
    docs, bad = _read(tmp_path, [rec])
    assert docs.num_rows == 0
    assert "messages[1].tool_calls[0].function.arguments' is not JSON" in bad["reason"][0].as_py()


def test_pii_in_call_arguments_is_redacted_in_text_and_in_the_stored_call(tmp_path):
    rec = _record("c", [_call("send_mail", {"to": "bob.smith@example.com", "body": "build is green"})])
    docs, _ = _read(tmp_path, [rec])
    result = gate(docs, _spec(rights_tags=[]))
    assert result.accepted.num_rows == 1, result.quarantine.to_pylist()
    stored = json.loads(result.accepted["messages"][0].as_py())
    assert stored["messages"][1]["tool_calls"][0]["function"]["arguments"]["to"] == "<EMAIL>"
    assert "bob.smith@example.com" not in result.accepted["text"][0].as_py()
    assert "bob.smith@example.com" not in result.accepted["messages"][0].as_py()


def test_pii_that_cannot_be_redacted_inside_a_call_quarantines_the_document(tmp_path):
    rec = _record("d", [_call("send_mail", {"to": 14155552671, "body": "call me"})])  # a phone as a JSON number
    docs, _ = _read(tmp_path, [rec])
    result = gate(docs, _spec(rights_tags=[]))
    assert result.accepted.num_rows == 0
    assert "tool call's arguments" in result.quarantine["reason"][0].as_py()


def test_undeclared_tools_and_calls_from_the_user_are_quarantined(tmp_path):
    undeclared = _record("e", [_call("delete_repo", {"name": "x"})])
    by_user = _record("f", [_call("send_mail", {"to": "bob"})])
    by_user["messages"][0] = {"role": "user", "content": "hi", "tool_calls": [_call("send_mail", {"to": "bob"})]}
    docs, _ = _read(tmp_path, [undeclared, by_user])
    result = gate(docs, _spec(rights_tags=[]))
    reasons = sorted(result.quarantine["reason"].to_pylist())
    assert result.accepted.num_rows == 0 and len(reasons) == 2
    assert any("do not declare" in r for r in reasons) and any(
        "only assistant turns may call tools" in r for r in reasons
    )


def test_gated_tool_records_are_training_examples(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from training_assets.engine.examples import prepare_examples

    rec = _record("g", [_call("send_mail", {"to": "bob", "body": "build is green"})])
    docs, _ = _read(tmp_path, [rec])
    accepted = gate(docs, _spec(rights_tags=[])).accepted
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    row = {"id": "g", "kind": "chat", "messages": accepted["messages"][0].as_py()}
    prepared = prepare_examples([row], tok, 1024)
    assert prepared.stats["tool_records"] == 1 and prepared.stats["tool_calls"] == 1


def test_with_segments_refuses_a_rewrite_that_changes_the_function():
    conv = chat.normalise(_record("h", [_call("send_mail", {"to": "bob"})])["messages"], "messages", TOOLS)
    segments = conv.segments()
    index = conv.call_segments().index(True)
    segments[index] = json.dumps({"name": "other", "arguments": {}})
    assert chat.with_segments(conv, segments) is None
    assert chat.with_segments(conv, conv.segments()) == conv
