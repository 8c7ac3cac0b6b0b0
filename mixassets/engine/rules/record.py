"""Shape of the record itself: a chat row must be what the reader promised, before any content rule reads it."""

from __future__ import annotations

import json

import pyarrow as pa

from mixassets.engine.readers import CHAT_JOINER
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, chat_contents, texts

ROLES = frozenset({"system", "user", "assistant", "tool"})


class MalformedChatRule(Rule):
    """A chat row must be a conversation a model can learn from, checked before any content rule reads it.

    Its messages must be {role, content} objects whose joined contents are the text (else redaction could miss a
    copy), every role must be one the chat templates know (an unknown role renders as garbage or not at all), and
    at least one turn must be the assistant's: loss falls only on assistant tokens, so without one the record
    trains nothing. All three are quarantined rather than dropped: a reviewer can fix the role or the turns.
    """

    id = "record.malformed_messages"
    version = 2

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        out: list[DocOutcomes] = []
        rows = zip(docs.column("kind").to_pylist(), docs.column("messages").to_pylist(), texts(docs), strict=True)
        for kind, messages, text in rows:
            if kind != "chat":
                out.append([] if messages is None else [Outcome("quarantine", "text document carries messages")])
                continue
            contents = chat_contents(messages)
            if contents is None:
                out.append([Outcome("quarantine", "messages is not a JSON list of {role, content} objects")])
            elif CHAT_JOINER.join(contents) != text:
                out.append([Outcome("quarantine", "text is not the message contents joined by blank lines")])
            else:
                out.append(_conversation_problems(json.loads(messages)))
        return out


def _conversation_problems(messages: list[dict[str, str]]) -> DocOutcomes:
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            known = ", ".join(sorted(ROLES))
            return [Outcome("quarantine", f"messages[{i}].role is '{m['role']}', not one of {known}")]
    if not any(m["role"] == "assistant" for m in messages):
        return [Outcome("quarantine", "no assistant turn: a chat record trains only on what the assistant says")]
    return []
