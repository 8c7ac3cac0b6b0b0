"""Shape of the record itself: a chat row must be what the reader promised, before any content rule reads it."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine import chat
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts

ROLES = frozenset({"system", "user", "assistant", "tool"})


class MalformedChatRule(Rule):
    """A chat row must be a conversation a model can learn from, checked before any content rule reads it.

    Its messages must be {role, content} objects whose joined segments (contents and tool calls) are the text
    (else redaction could miss a copy), every role must be one the chat templates know (an unknown role renders
    as garbage or not at all), only assistant turns may call tools and only tools the record declares, and at
    least one turn must be the assistant's: loss falls only on assistant tokens, so without one the record
    trains nothing. All are quarantined rather than dropped: a reviewer can fix the role or the turns.
    """

    id = "record.malformed_messages"
    version = 3

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        out: list[DocOutcomes] = []
        rows = zip(docs.column("kind").to_pylist(), docs.column("messages").to_pylist(), texts(docs), strict=True)
        for kind, messages, text in rows:
            if kind != "chat":
                out.append([] if messages is None else [Outcome("quarantine", "text document carries messages")])
                continue
            conversation = chat.parse_stored(messages)
            if conversation is None:
                out.append([Outcome("quarantine", "messages is not a chat conversation ({role, content} objects)")])
            elif conversation.text() != text:
                out.append([Outcome("quarantine", "text is not the message contents joined by blank lines")])
            else:
                out.append(_conversation_problems(conversation))
        return out


def _declared(tools: list[dict] | None) -> set[str]:
    names = set()
    for tool in tools or []:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names


def _conversation_problems(conversation: chat.Chat) -> DocOutcomes:
    declared = _declared(conversation.tools)
    for i, m in enumerate(conversation.messages):
        if m["role"] not in ROLES:
            known = ", ".join(sorted(ROLES))
            return [Outcome("quarantine", f"messages[{i}].role is '{m['role']}', not one of {known}")]
        if "tool_calls" in m and m["role"] != "assistant":
            return [Outcome("quarantine", f"messages[{i}]: only assistant turns may call tools, not '{m['role']}'")]
        undeclared = sorted({c["function"]["name"] for c in m.get("tool_calls", ())} - declared)
        if undeclared:
            return [Outcome("quarantine", f"messages[{i}] calls {undeclared}, which the record's tools do not declare")]
    if not any(m["role"] == "assistant" for m in conversation.messages):
        return [Outcome("quarantine", "no assistant turn: a chat record trains only on what the assistant says")]
    return []
