"""Personal data: redacted in place, or the document goes to review, per the source's ``pii_policy``."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine.pii import find_pii
from mixassets.engine.readers import CHAT_JOINER
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, chat_contents, texts


def pii_rule_id(pii_type: str) -> str:
    """The decision-log id of one kind of hit, derived from the detector's type so new detectors need no edit."""
    return f"pii.{pii_type.lower()}"


class PiiRule(Rule):
    """Personal data never reaches training in clear.

    Chat documents are scanned message by message so every hit falls inside one message and can be
    redacted in ``messages`` as well as in ``text``; spans are always offsets into ``text``.
    """

    id = "pii"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        policy = ctx.spec.pii_policy
        out: list[DocOutcomes] = []
        rows = zip(docs.column("kind").to_pylist(), docs.column("messages").to_pylist(), texts(docs), strict=True)
        for kind, messages, text in rows:
            outcomes = []
            for start, end, pii_type in self._hits(kind, messages, text):
                sub_id = pii_rule_id(pii_type)
                if policy == "redact":
                    outcomes.append(Outcome("redact", pii_type, (start, end), f"<{pii_type}>", sub_id))
                else:
                    reason = f"{pii_type} (pii_policy=quarantine)"
                    outcomes.append(Outcome("quarantine", reason, (start, end), rule_id=sub_id))
            out.append(outcomes)
        return out

    @staticmethod
    def _hits(kind: str, messages: str | None, text: str) -> list[tuple[int, int, str]]:
        contents = chat_contents(messages) if kind == "chat" else None
        if contents is None:
            return [(h.start, h.end, h.type) for h in find_pii(text)]
        hits = []
        offset = 0
        for content in contents:
            hits.extend((offset + h.start, offset + h.end, h.type) for h in find_pii(content))
            offset += len(content) + len(CHAT_JOINER)
        return hits
