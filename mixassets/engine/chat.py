"""What a chat document is on the data side: its stored ``messages`` JSON and the text every rule reads.

A chat document's ``text`` is the join, by :data:`CHAT_JOINER`, of its *segments*: each message's content, and
after an assistant's content one segment per tool call, its canonical JSON ``{"name": ..., "arguments": {...}}``.
Rules see the call arguments as text (an e-mail passed to ``send_mail`` is PII like any other), a redaction
edits segments, and :func:`with_segments` writes them back, so the stored messages never keep a clear-text copy.

Stored shapes, the ones the training examples read:

* plain conversations: a JSON list of ``{"role", "content"}``;
* with tools: ``{"tools": [...], "messages": [...]}``; an assistant message may carry ``tool_calls``
  (``[{"type": "function", "function": {"name", "arguments"}}]``, arguments a JSON object) and ``content`` may
  then be empty; a ``tool`` message may carry ``name`` / ``tool_call_id``.

Only the shape is checked here (this module reads, it does not judge): whether the roles make a conversation a
model can learn from is ``record.malformed_messages``'s call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CHAT_JOINER = "\n\n"
_TOOL_KEYS = ("name", "tool_call_id")


class ChatShapeError(ValueError):
    """The messages are not a chat conversation; the message names the field path."""


@dataclass(frozen=True)
class Chat:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None

    def to_json(self) -> str:
        if self.tools is None and not any("tool_calls" in m for m in self.messages):
            return json.dumps(self.messages, ensure_ascii=False)
        return json.dumps({"tools": self.tools or [], "messages": self.messages}, ensure_ascii=False)

    def segments(self) -> list[str]:
        out: list[str] = []
        for m in self.messages:
            out.append(m["content"])
            out.extend(call_text(c) for c in m.get("tool_calls", ()))
        return out

    def call_segments(self) -> list[bool]:
        """Parallel to :meth:`segments`: True where the segment is a tool call's JSON."""
        out: list[bool] = []
        for m in self.messages:
            out.append(False)
            out.extend(True for _ in m.get("tool_calls", ()))
        return out

    def text(self) -> str:
        return CHAT_JOINER.join(self.segments())


def call_text(call: dict[str, Any]) -> str:
    fn = call["function"]
    return json.dumps({"name": fn["name"], "arguments": fn["arguments"]}, ensure_ascii=False, sort_keys=True)


def _calls(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ChatShapeError(f"field '{where}' must be a non-empty list of tool calls")
    out = []
    for k, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ChatShapeError(f"field '{where}[{k}].function.name' must be a non-empty string")
        args = _arguments(fn.get("arguments", {}), f"{where}[{k}].function.arguments")
        out.append({"type": "function", "function": {"name": fn["name"], "arguments": args}})
    return out


def _arguments(value: Any, where: str) -> dict[str, Any]:
    """A tool call's arguments as an object; OpenAI exports them as a JSON string, which is decoded."""
    decoded = _decoded(value, where) if isinstance(value, str) else value
    if not isinstance(decoded, dict):
        raise ChatShapeError(f"field '{where}' must be a JSON object")
    return decoded


def _decoded(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ChatShapeError(f"field '{where}' is not JSON: {e.msg}") from None


def _message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise ChatShapeError(f"field '{where}' must be an object, got {type(m).__name__}")
    if not isinstance(m.get("role"), str):
        raise ChatShapeError(f"field '{where}.role' must be a string")
    calls = m.get("tool_calls")
    content = m.get("content")
    if content is None and calls:
        content = ""
    if not isinstance(content, str):
        raise ChatShapeError(f"field '{where}.content' must be a string")
    out: dict[str, Any] = {"role": m["role"], "content": content}
    if calls:
        out["tool_calls"] = _calls(calls, f"{where}.tool_calls")
    for key in _TOOL_KEYS:
        if m["role"] == "tool" and isinstance(m.get(key), str):
            out[key] = m[key]
    return out


def normalise(value: Any, field_name: str, tools: Any = None) -> Chat:
    """A record's messages (a list, or a JSON string of one, or of ``{"tools", "messages"}``) as a :class:`Chat`.

    ``tools`` comes from the record's own tools field when the source keeps them apart from the messages.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ChatShapeError(f"field '{field_name}' is a string but not JSON: {e.msg}") from None
        except RecursionError:
            raise ChatShapeError(f"field '{field_name}' is JSON nested too deeply to parse") from None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"tools", "messages"})
        if unknown:
            raise ChatShapeError(f"field '{field_name}': unknown keys {unknown}; expected tools and messages")
        tools = value.get("tools", tools)
        value = value.get("messages")
    if value is None:
        raise ChatShapeError(f"field '{field_name}' is missing or null")
    if not isinstance(value, list) or not value:
        raise ChatShapeError(f"field '{field_name}' must be a non-empty list of {{role, content}} objects")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise ChatShapeError("field 'tools' must be a list of function definitions")
    messages = [_message(m, f"{field_name}[{i}]") for i, m in enumerate(value)]
    return Chat(messages, tools)


def parse_stored(messages: str | None) -> Chat | None:
    """The stored messages JSON as a :class:`Chat`; None when it is not one (a rule then says why)."""
    if messages is None:
        return None
    try:
        return normalise(messages, "messages")
    except (ChatShapeError, RecursionError):
        return None


def with_segments(chat: Chat, segments: list[str]) -> Chat | None:
    """``chat`` with each segment replaced (a redaction, a review edit); None when a rewritten call is no longer
    the same function with a JSON object of arguments, which the caller must treat as unmappable."""
    if len(segments) != len(chat.segments()):
        return None
    it = iter(segments)
    messages: list[dict[str, Any]] = []
    for m in chat.messages:
        new = {**m, "content": next(it)}
        if "tool_calls" in m:
            calls = []
            for call in m["tool_calls"]:
                try:
                    value = json.loads(next(it))
                except json.JSONDecodeError:
                    return None
                if not isinstance(value, dict) or value.get("name") != call["function"]["name"]:
                    return None
                if not isinstance(value.get("arguments"), dict):
                    return None
                calls.append({"type": "function", "function": {"name": value["name"], "arguments": value["arguments"]}})
            new["tool_calls"] = calls
        messages.append(new)
    return Chat(messages, chat.tools)
