"""Shape of the record itself: a chat row must be what the reader promised, before any content rule reads it."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine.readers import CHAT_JOINER
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, chat_contents, texts


class MalformedChatRule(Rule):
    """Chat rows must carry messages whose joined contents are the text, or redaction could miss a copy."""

    id = "record.malformed_messages"
    version = 1

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
                out.append([])
        return out
