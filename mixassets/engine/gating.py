"""The gate: runs the rules over one source's documents and accounts for every document exactly once.

Rules run in order over the documents still standing, so a document is held by the first rule that blocks
it and later rules never see it (a duplicate is always a duplicate of a document that passed the earlier
rules). Everything that fired goes to the decision log; the counts come out of the same pass, so the log
and the counts cannot disagree and ``ingested == accepted + quarantined + rejected`` holds by
construction.

Personal data never leaves the gate in clear: accepted documents are redacted per the source policy, and
the text kept for review in the quarantine table is redacted too (the locator still points at the
original for whoever is allowed to look).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mixassets.engine.pii import PII_TYPES, find_pii, redact
from mixassets.engine.rules import BLOCKING_ACTIONS, CHAT_JOINER, DEFAULT_RULES, GateContext, Outcome, Rule
from mixassets.project import SourceSpec
from mixassets.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

DISPOSITION = {"reject": "rejected", "quarantine": "quarantined"}


@dataclass
class GateResult:
    accepted: pa.Table  # DOCUMENT_SCHEMA
    quarantine: pa.Table  # QUARANTINE_SCHEMA, disposition "quarantined" or "rejected"
    decisions: pa.Table  # DECISION_SCHEMA
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Held:
    disposition: str
    rule_id: str
    reason: str


def _conform(docs: pa.Table) -> pa.Table:
    missing = [n for n in DOCUMENT_SCHEMA.names if n not in docs.column_names]
    if missing:
        raise ValueError(f"documents table lacks columns {missing} of DOCUMENT_SCHEMA")
    return docs.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA).combine_chunks()


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    return table.take(pa.array(rows, type=pa.int64()))


def _apply_spans(text: str, edits: list[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    pos = 0
    for start, end, replacement in sorted(edits):
        if start < pos:
            continue  # a rule returned overlapping spans; the first one already covers this text
        parts += [text[pos:start], replacement]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _redact_messages(messages: str, edits: list[tuple[int, int, str]]) -> str:
    """Carry text-offset edits into each message; spans map into messages because text is their join."""
    value: list[dict[str, Any]] = json.loads(messages)
    offset = 0
    for m in value:
        content: str = m["content"]
        end = offset + len(content)
        local = [(s - offset, e - offset, r) for s, e, r in edits if s >= offset and e <= end]
        m["content"] = _apply_spans(content, local)
        offset = end + len(CHAT_JOINER)
    return json.dumps(value, ensure_ascii=False)


def _reason(blocking: list[tuple[str, Outcome]]) -> str:
    reasons = Counter(o.reason for _, o in blocking)
    return "; ".join(r if n == 1 else f"{r} (x{n})" for r, n in reasons.items())


def gate(
    docs: pa.Table,
    spec: SourceSpec,
    *,
    forbidden_tags: Collection[str] = (),
    rules: Sequence[Rule] = DEFAULT_RULES,
) -> GateResult:
    """Apply ``rules`` to one source's documents and split them into accepted and held back."""
    docs = _conform(docs)
    ctx = GateContext(spec=spec, forbidden_tags=frozenset(forbidden_tags))
    doc_ids: list[str] = docs.column("doc_id").to_pylist()
    source_ids: list[str] = docs.column("source_id").to_pylist()

    decisions: dict[str, list[Any]] = {n: [] for n in DECISION_SCHEMA.names}
    fired: Counter[str] = Counter()
    pii_hits: Counter[str] = Counter()
    held: dict[int, _Held] = {}
    edits: dict[int, list[tuple[int, int, str]]] = {}
    alive = list(range(docs.num_rows))

    for rule in rules:
        if not alive:
            break
        results = rule.evaluate(_take(docs, alive), ctx)
        if len(results) != len(alive):
            raise RuntimeError(f"rule {rule.id} returned {len(results)} outcomes for {len(alive)} documents")
        still: list[int] = []
        for idx, outcomes in zip(alive, results, strict=True):
            tagged = [(o.rule_id or rule.id, o) for o in outcomes]
            for rule_id, o in tagged:
                decisions["doc_id"].append(doc_ids[idx])
                decisions["source_id"].append(source_ids[idx])
                decisions["rule_id"].append(rule_id)
                decisions["rule_version"].append(rule.version)
                decisions["action"].append(o.action)
                decisions["reason"].append(o.reason)
                decisions["span_start"].append(o.span[0] if o.span else None)
                decisions["span_end"].append(o.span[1] if o.span else None)
                if rule_id.startswith("pii."):
                    pii_hits[rule_id.removeprefix("pii.")] += 1
            for rule_id in dict.fromkeys(r for r, _ in tagged):
                fired[rule_id] += 1
            blocking = [(r, o) for r, o in tagged if o.action in BLOCKING_ACTIONS]
            if blocking:
                first_rule, first = blocking[0]
                held[idx] = _Held(DISPOSITION[first.action], first_rule, _reason(blocking))
                continue
            for _, o in tagged:
                if o.action == "redact" and o.span is not None:
                    edits.setdefault(idx, []).append((o.span[0], o.span[1], o.replacement or "<REDACTED>"))
            still.append(idx)
        alive = still

    accepted = _accepted_table(docs, alive, edits)
    quarantine = _quarantine_table(docs, held)
    counts = {
        "ingested": docs.num_rows,
        "accepted": len(alive),
        "quarantined": sum(h.disposition == "quarantined" for h in held.values()),
        "rejected": sum(h.disposition == "rejected" for h in held.values()),
        "redacted_docs": sum(1 for i in alive if i in edits),
    }
    for t in PII_TYPES:
        counts[f"pii_hits_{t.lower()}"] = pii_hits[t.lower()]
    for rule_id, n in sorted(fired.items()):
        counts[f"rule.{rule_id}"] = n
    return GateResult(accepted, quarantine, pa.table(decisions, schema=DECISION_SCHEMA), counts)


def _accepted_table(docs: pa.Table, alive: list[int], edits: dict[int, list[tuple[int, int, str]]]) -> pa.Table:
    table = _take(docs, alive)
    if not any(i in edits for i in alive):
        return table
    texts = table.column("text").to_pylist()
    messages = table.column("messages").to_pylist()
    for row, idx in enumerate(alive):
        if idx in edits:
            texts[row] = _apply_spans(texts[row], edits[idx])
            if messages[row] is not None:
                messages[row] = _redact_messages(messages[row], edits[idx])
    for name, values in (("text", texts), ("messages", messages)):
        field_ = DOCUMENT_SCHEMA.field(name)
        table = table.set_column(table.schema.get_field_index(name), field_, pa.array(values, type=field_.type))
    return table


def _quarantine_table(docs: pa.Table, held: dict[int, _Held]) -> pa.Table:
    order = sorted(held)
    sub = _take(docs, order)
    texts = sub.column("text").to_pylist()
    rows: dict[str, list[Any]] = {
        "doc_id": sub.column("doc_id").to_pylist(),
        "source_id": sub.column("source_id").to_pylist(),
        "locator": sub.column("locator").to_pylist(),
        "disposition": [held[i].disposition for i in order],
        "rule_id": [held[i].rule_id for i in order],
        "reason": [held[i].reason for i in order],
        "text": [None if t is None else redact(t, find_pii(t)) for t in texts],
        "raw": [None] * len(order),
    }
    return pa.table(rows, schema=QUARANTINE_SCHEMA)
