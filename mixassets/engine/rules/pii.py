"""Personal data: redacted in place, or the document goes to review, per the source's ``pii_policy``."""

from __future__ import annotations

import json
from collections.abc import Collection

import pyarrow as pa

from mixassets.engine import chat
from mixassets.engine.pii import DETECTORS, find_pii, possible_detectors
from mixassets.engine.readers import CHAT_JOINER
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts


def pii_rule_id(pii_type: str) -> str:
    """The decision-log id of one kind of hit, derived from the detector's type so new detectors need no edit."""
    return f"pii.{pii_type.lower()}"


class PiiRule(Rule):
    """Personal data never reaches training in clear.

    Chat documents are scanned segment by segment (each message's content, each tool call's JSON) so every hit
    falls inside one segment and can be redacted in ``messages`` as well as in ``text``; spans are always offsets
    into ``text``. A hit whose redaction would break a tool call's JSON (a phone number written as a JSON number)
    quarantines the document instead: a call cannot be half-redacted.
    """

    id = "pii"
    version = 2

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        policy = ctx.spec.pii_policy
        out: list[DocOutcomes] = []
        possible = possible_detectors(docs.column("text"))
        kinds, all_messages = docs.column("kind").to_pylist(), docs.column("messages").to_pylist()
        for kind, messages, text, detectors in zip(kinds, all_messages, texts(docs), possible, strict=True):
            outcomes = []
            if not detectors:
                out.append(outcomes)
                continue
            for start, end, pii_type, call in self._hits(kind, messages, text, detectors):
                sub_id = pii_rule_id(pii_type)
                if policy == "redact" and call is not None and not _redactable(call, start, end, f"<{pii_type}>"):
                    reason = f"{pii_type} in a tool call's arguments: redacting it would break the call's JSON"
                    outcomes.append(Outcome("quarantine", reason, (start, end), rule_id=sub_id))
                elif policy == "redact":
                    outcomes.append(Outcome("redact", pii_type, (start, end), f"<{pii_type}>", sub_id))
                else:
                    reason = f"{pii_type} (pii_policy=quarantine)"
                    outcomes.append(Outcome("quarantine", reason, (start, end), rule_id=sub_id))
            out.append(outcomes)
        return out

    @staticmethod
    def _hits(
        kind: str, messages: str | None, text: str, detectors: Collection[str]
    ) -> list[tuple[int, int, str, tuple[str, int] | None]]:
        """``(start, end, type, call)`` per hit; ``call`` is (the tool call's JSON, its offset in text) for a hit
        inside a tool call, whose redaction must leave valid JSON."""
        conversation = chat.parse_stored(messages) if kind == "chat" else None
        if conversation is None:
            return [(h.start, h.end, h.type, None) for h in find_pii(text, detectors=detectors)]
        if conversation.text() != text:  # only with record.malformed_messages disabled: scan with every detector
            detectors = DETECTORS
        # Otherwise the segments are parts of the text, so what the text rules out they cannot hold either.
        hits = []
        offset = 0
        for segment, is_call in zip(conversation.segments(), conversation.call_segments(), strict=True):
            where = (segment, offset) if is_call else None
            hits.extend(
                (offset + h.start, offset + h.end, h.type, where) for h in find_pii(segment, detectors=detectors)
            )
            offset += len(segment) + len(CHAT_JOINER)
        return hits


def _redactable(call: tuple[str, int], start: int, end: int, placeholder: str) -> bool:
    segment, offset = call
    edited = segment[: start - offset] + placeholder + segment[end - offset :]
    try:
        value = json.loads(edited)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and isinstance(value.get("arguments"), dict)
