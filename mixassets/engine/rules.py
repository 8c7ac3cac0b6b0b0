"""The gating rules: each a small object with an id, a version and one function over a batch of documents.

A rule only says what it saw (an action and a reason per document, with a span when it points at text);
it never removes, counts or logs anything. Keeping that in the runner means a document is dropped once,
counted once and logged once however many rules would have objected, and a rule's version in the decision
log tells a later reader which logic produced a decision.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine import licenses
from mixassets.engine.pii import find_pii
from mixassets.project import GatingConfig, SourceSpec

Action = Literal["reject", "quarantine", "redact", "flag"]
BLOCKING_ACTIONS = frozenset({"reject", "quarantine"})
CHAT_JOINER = "\n\n"

# C0 controls other than tab/newline/carriage return, DEL, and C1 controls (a sign of mis-decoded cp1252).
_CONTROL_PATTERN = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL_RE = re.compile(_CONTROL_PATTERN)


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str
    span: tuple[int, int] | None = None  # character offsets into the document's original text
    replacement: str | None = None  # for redact: what replaces the span
    rule_id: str | None = None  # a finer id inside the rule's family (e.g. "pii.email"); default: the rule's id


@dataclass(frozen=True)
class GateContext:
    spec: SourceSpec
    forbidden_tags: frozenset[str] = frozenset()

    @property
    def gating(self) -> GatingConfig:
        return self.spec.gating


DocOutcomes = list[Outcome]


class Rule(ABC):
    id: ClassVar[str]
    version: ClassVar[int]

    @abstractmethod
    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        """One list of outcomes per row of ``docs`` (empty when the rule has nothing to say)."""


def _texts(docs: pa.Table) -> list[str]:
    return [t or "" for t in docs.column("text").to_pylist()]


def chat_contents(messages: str | None) -> list[str] | None:
    """Message contents of a chat document's ``messages`` JSON; None when it is not the expected shape."""
    if messages is None:
        return None
    try:
        value = json.loads(messages)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        return None
    return [m["content"] for m in value]


class MalformedChatRule(Rule):
    """Chat rows must carry messages whose joined contents are the text, or redaction could miss a copy."""

    id = "record.malformed_messages"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        out: list[DocOutcomes] = []
        rows = zip(docs.column("kind").to_pylist(), docs.column("messages").to_pylist(), _texts(docs), strict=True)
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


class UnknownLicenseRule(Rule):
    id = "rights.unknown_license"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        verdicts: dict[str | None, DocOutcomes] = {}
        out = []
        for expr in docs.column("license").to_pylist():
            if expr not in verdicts:
                verdicts[expr] = self._check(expr)
            out.append(verdicts[expr])
        return out

    @staticmethod
    def _check(expr: str | None) -> DocOutcomes:
        if expr is None or not expr.strip():
            return [Outcome("quarantine", "no license declared")]
        try:
            alternatives = licenses.license_alternatives(expr)
        except licenses.LicenseError as e:
            return [Outcome("quarantine", f"unparsable license: {e}")]
        if alternatives is None:
            return [Outcome("quarantine", f"license {expr!r} is not in the license table")]
        return []


class ForbiddenTagRule(Rule):
    """Keeps out data whose license or declared rights carry a tag the project bans from the corpus."""

    id = "rights.forbidden_tag"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        forbidden = ctx.forbidden_tags
        if not forbidden:
            return [[] for _ in range(docs.num_rows)]
        out = []
        rows = zip(docs.column("license").to_pylist(), docs.column("rights_tags").to_pylist(), strict=True)
        for expr, rights in rows:
            declared = sorted(set(rights or ()) & forbidden)
            if declared:
                out.append([Outcome("quarantine", f"rights tags {declared} are forbidden")])
                continue
            try:
                unavoidable = licenses.forbidden_by(expr, forbidden)
            except licenses.LicenseError:
                unavoidable = None  # the unknown-license rule reports it
            if unavoidable:
                out.append([Outcome("quarantine", f"license {expr!r} carries forbidden tags {sorted(unavoidable)}")])
            else:
                out.append([])
        return out


class UndecodableRule(Rule):
    id = "encoding.undecodable"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        text = docs.column("text")
        lengths = pc.fill_null(pc.utf8_length(text), 0).to_pylist()
        replacements = pc.fill_null(pc.count_substring(text, "\ufffd"), 0).to_pylist()
        has_control = pc.fill_null(pc.match_substring_regex(text, _CONTROL_PATTERN), False).to_pylist()
        limit = ctx.gating.max_replacement_ratio
        out: list[DocOutcomes] = []
        for i, (n, bad, control) in enumerate(zip(lengths, replacements, has_control, strict=True)):
            outcomes = []
            if n and bad / n > limit:
                outcomes.append(
                    Outcome("quarantine", f"{bad} of {n} characters are U+FFFD (ratio {bad / n:.4f} > {limit})")
                )
            if control:
                s = text[i].as_py()
                hits = _CONTROL_RE.findall(s)
                first = _CONTROL_RE.search(s)
                assert first is not None
                outcomes.append(
                    Outcome(
                        "quarantine",
                        f"{len(hits)} control characters (first U+{ord(first.group()):04X} at {first.start()})",
                        span=(first.start(), first.end()),
                    )
                )
            out.append(outcomes)
        return out


class EmptyRule(Rule):
    id = "quality.empty"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        return [[] if t.strip() else [Outcome("reject", "no text after stripping whitespace")] for t in _texts(docs)]


class TooShortRule(Rule):
    id = "quality.too_short"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        minimum = ctx.gating.min_words
        out: list[DocOutcomes] = []
        for t in _texts(docs):
            words = len(t.split())
            out.append([Outcome("reject", f"{words} words < min_words {minimum}")] if words < minimum else [])
        return out


class TooLongRule(Rule):
    """Long documents go to review rather than being cut: a truncated file is a different, unreviewed text."""

    id = "quality.too_long"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        limit = ctx.gating.max_chars
        lengths = pc.fill_null(pc.utf8_length(docs.column("text")), 0).to_pylist()
        return [[Outcome("quarantine", f"{n} characters > max_chars {limit}")] if n > limit else [] for n in lengths]


def normalize_for_dedupe(text: str) -> str:
    """Case, Unicode compatibility forms and whitespace runs do not make two documents different."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ExactDedupeRule(Rule):
    id = "dedupe.exact_in_source"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        first_seen: dict[tuple[str, bytes], str] = {}
        out: list[DocOutcomes] = []
        rows = zip(docs.column("doc_id").to_pylist(), docs.column("source_id").to_pylist(), _texts(docs), strict=True)
        for doc_id, source_id, text in rows:
            key = (source_id, hashlib.sha256(normalize_for_dedupe(text).encode()).digest())
            kept = first_seen.setdefault(key, doc_id)
            out.append([] if kept == doc_id else [Outcome("reject", f"same normalized text as kept doc {kept}")])
        return out


class PiiRule(Rule):
    """Personal data is redacted or sends the document to review, per the source's ``pii_policy``.

    Chat documents are scanned message by message so every hit falls inside one message and can be
    redacted in ``messages`` as well as in ``text``; spans are always offsets into ``text``.
    """

    id = "pii"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        policy = ctx.spec.pii_policy
        out: list[DocOutcomes] = []
        rows = zip(docs.column("kind").to_pylist(), docs.column("messages").to_pylist(), _texts(docs), strict=True)
        for kind, messages, text in rows:
            outcomes = []
            for start, end, pii_type in self._hits(kind, messages, text):
                sub_id = f"pii.{pii_type.lower()}"
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


DEFAULT_RULES: Sequence[Rule] = (
    MalformedChatRule(),
    UnknownLicenseRule(),
    ForbiddenTagRule(),
    UndecodableRule(),
    EmptyRule(),
    TooShortRule(),
    TooLongRule(),
    ExactDedupeRule(),
    PiiRule(),
)
