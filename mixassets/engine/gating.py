"""The gate: runs the rules over one source's documents and accounts for every document exactly once.

Rules run in order over the documents still standing, so a document is held by the first rule that blocks
it and later rules never see it (a duplicate is always a duplicate of a document that passed the earlier
rules). Everything that fired goes to the decision log; the counts come out of the same pass, so the log
and the counts cannot disagree and ``ingested == accepted + quarantined + rejected`` holds by
construction.

Edits. A "strip" outcome (boilerplate) takes effect at once: the rules after it are shown the stripped text,
and the spans they report are mapped back to offsets into the original text before they are logged, so
every span in the decision log points into the text as it was read. A "redact" outcome (PII) only changes
the accepted copy. At the end all edits of a document are applied to its original text in one pass, sorted
by start; where two overlap they merge into one edit over their union, and a redaction's placeholder wins
over a strip's empty replacement, so personal data can never survive by straddling a stripped line.

Personal data never leaves the gate in clear: accepted documents are redacted per the source policy; the text
kept for review in the quarantine table, and every reason in it and in the decision log (a rule may quote what it
matched), show each detected value as a tagged hash (:mod:`~mixassets.engine.redaction`). The clear text stays in
raw_documents, which the doc_id and locator point at for whoever is allowed to look.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine import chat
from mixassets.engine.pii import PII_TYPES
from mixassets.engine.redaction import redact_views
from mixassets.engine.rules import BLOCKING_ACTIONS, CHAT_JOINER, GateContext, Outcome, Rule, pii_rule_id, rules_for
from mixassets.engine.rules.base import remember_texts
from mixassets.engine.rules.language import OBSERVATION as LANGUAGE_OBSERVATION
from mixassets.engine.rules.language import UNDETERMINED
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, with_row_ids

DISPOSITION = {"reject": "rejected", "quarantine": "quarantined"}

Edit = tuple[int, int, str]  # (start, end, replacement) in original-text offsets


@dataclass
class GateResult:
    accepted: pa.Table  # DOCUMENT_SCHEMA
    quarantine: pa.Table  # QUARANTINE_SCHEMA, disposition "quarantined" or "rejected"
    decisions: pa.Table  # DECISION_SCHEMA
    # Flat str -> number, so the asset layer can publish every entry as numeric metadata.
    counts: dict[str, int | float] = field(default_factory=dict)
    # Row of the input table of each accepted, quarantine and decision row (a distributed runner orders by them).
    accepted_rows: list[int] = field(default_factory=list)
    held_rows: list[int] = field(default_factory=list)
    decision_rows: list[int] = field(default_factory=list)


@dataclass
class _Held:
    disposition: str
    rule_id: str
    reason: str


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    """The ``rows`` of ``table``, which are increasing (the runner's standing and held rows always are), picked
    by a mask: Arrow's filter copies the runs of kept rows, nearly twice as fast as ``take`` when most are kept,
    as they are after most rules."""
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    return table.filter(pa.array(mask))


def _merge_edits(edits: list[Edit]) -> list[Edit]:
    """Sorted, non-overlapping edits; overlapping ones become one over their union (a placeholder beats "")."""
    merged: list[Edit] = []
    for start, end, replacement in sorted(edits):
        if merged and start < merged[-1][1]:
            s, e, r = merged[-1]
            merged[-1] = (s, max(e, end), r or replacement)
        else:
            merged.append((start, end, replacement))
    return merged


def _apply_edits(text: str, edits: list[Edit]) -> str:
    parts: list[str] = []
    pos = 0
    for start, end, replacement in _merge_edits(edits):
        parts += [text[pos:start], replacement]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _to_original(pos: int, removed: list[tuple[int, int]]) -> int:
    """An offset into the stripped text as an offset into the original; ``removed`` is sorted and disjoint."""
    for start, end in removed:
        if start > pos:
            break
        pos += end - start
    return pos


def _span_to_original(span: tuple[int, int], removed: list[tuple[int, int]] | None) -> tuple[int, int]:
    if not removed:
        return span
    start, end = span
    if end <= start:
        p = _to_original(start, removed)
        return p, p
    # The end is exclusive: map the last character inside the span, then step past it.
    return _to_original(start, removed), _to_original(end - 1, removed) + 1


def _add_removed(removed: list[tuple[int, int]], span: tuple[int, int]) -> None:
    bisect.insort(removed, span)
    merged: list[tuple[int, int]] = []
    for s, e in removed:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    removed[:] = merged


def _redact_messages(messages: str, edits: list[Edit]) -> str:
    """Carry text-offset edits into each segment (contents, tool calls); spans map into segments because the text
    is their join. The PII rule quarantines any hit whose redaction would break a call, so the rewrite holds."""
    conversation = chat.parse_stored(messages)
    if conversation is None:  # record.malformed_messages quarantines these before any edit is made
        raise ValueError("redaction of a chat document whose messages are not a conversation")
    offset = 0
    segments = []
    for segment in conversation.segments():
        end = offset + len(segment)
        local = [(s - offset, e - offset, r) for s, e, r in edits if s >= offset and e <= end]
        segments.append(_apply_edits(segment, local))
        offset = end + len(CHAT_JOINER)
    redacted = chat.with_segments(conversation, segments)
    if redacted is None:
        raise ValueError("a redaction broke a tool call's JSON, which the PII rule should have quarantined")
    return redacted.to_json()


def _reason(blocking: list[tuple[str, Outcome]]) -> str:
    reasons = Counter(o.reason for _, o in blocking)
    return "; ".join(r if n == 1 else f"{r} (x{n})" for r, n in reasons.items())


def _with_text(table: pa.Table, values: list[str | None]) -> pa.Table:
    field_ = DOCUMENT_SCHEMA.field("text")
    return table.set_column(table.schema.get_field_index("text"), field_, pa.array(values, type=field_.type))


def gate(
    docs: pa.Table,
    spec: SourceSpec,
    *,
    forbidden_tags: Collection[str] = (),
    rules: Sequence[Rule] | None = None,
) -> GateResult:
    """Apply ``rules`` (default: ``rules_for(spec)``) to one source's documents and split them into accepted
    and held back. Outcomes whose rule id is in ``gating.disabled_rules`` are ignored, so a finer id such as
    ``pii.ip_address`` can be switched off on its own."""
    docs = conform_documents(docs)
    rules = rules_for(spec) if rules is None else list(rules)
    ctx = GateContext(spec=spec, forbidden_tags=frozenset(forbidden_tags))
    return gate_batch(docs, rules, ctx)


def conform_documents(docs: pa.Table | pa.RecordBatch) -> pa.Table:
    """``docs`` with exactly DOCUMENT_SCHEMA's columns, in its order and types, as one chunk."""
    if isinstance(docs, pa.RecordBatch):
        docs = pa.Table.from_batches([docs])
    missing = [n for n in DOCUMENT_SCHEMA.names if n not in docs.column_names and n != "row_id"]
    if missing:
        raise ValueError(f"documents table lacks columns {missing} of DOCUMENT_SCHEMA")
    if "row_id" not in docs.column_names:
        docs = with_row_ids(docs)
    return with_row_ids(docs.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA).combine_chunks())


@dataclass
class _Run:
    """Where the rules left one table: who is still standing, who is held and why, and every edit."""

    work: pa.Table  # the documents as the next rule would see them (text with strips applied)
    alive: list[int]
    held: dict[int, _Held] = field(default_factory=dict)
    edits: dict[int, list[Edit]] = field(default_factory=dict)
    removed: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # stripped spans, original offsets
    original: list[str | None] = field(default_factory=list)  # the input texts, as ``to_pylist`` gives them
    decisions: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in DECISION_SCHEMA.names})
    decision_rows: list[int] = field(default_factory=list)  # the input row of each decision
    fired: Counter[str] = field(default_factory=Counter)
    pii_hits: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    stripped_lines: int = 0


def standing_after(docs: pa.Table, rules: Sequence[Rule], ctx: GateContext) -> pa.Table:
    """The documents of a conformed table that survive ``rules``, with their text as the next rule would be
    shown it: what a rule's ``prepare`` pass must see to agree with what it is shown when gating."""
    with _cyclic_gc_paused():
        run = _apply_rules(docs, rules, ctx)
    return run.work if len(run.alive) == run.work.num_rows else _take(run.work, run.alive)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """CPython's cycle collector paused while the gate runs, and resumed (if it was running) afterwards.

    Gating a table allocates hundreds of thousands of small containers (an outcome list per document per rule,
    the decision columns, the per-document counts) and keeps most of them until the tables are built. Each
    allocation burst triggers collections, and a full one walks every tracked object of the process: on the
    realistic corpus a 10,000-document gate() spent 0.25-0.3 CPU s (7%) in four of them while finding nothing to
    free, for the gate makes no reference cycles of its own; any a rule makes are collected once it is resumed.
    Reference counting frees everything else as before, so memory use is unchanged. Only the caller that found it
    enabled enables it again, so a caller that paused it keeps it paused; of two threads gating at once, the
    first to finish resumes it while the other still gates (slower for that one, not wrong)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def gate_batch(docs: pa.Table, rules: Sequence[Rule], ctx: GateContext) -> GateResult:
    """``gate()`` on a conformed table with the caller's context. A streaming runner passes one context to
    every batch, so state rules keep in ``ctx.cache`` and whole-source state in ``ctx.prepared`` apply across
    batches; the language observations accumulate in the context and are the caller's to clear."""
    with _cyclic_gc_paused():
        return _gate_batch(docs, rules, ctx)


def _gate_batch(docs: pa.Table, rules: Sequence[Rule], ctx: GateContext) -> GateResult:
    run = _apply_rules(docs, rules, ctx)
    accepted = _accepted_table(docs, run.alive, run.edits, run.original)
    # The quarantine's reasons are mostly the decision log's reasons again: redacted in one pass, each distinct
    # reason is scanned once instead of once per table (a rule may quote the text it matched).
    held_reasons = [run.held[i].reason for i in sorted(run.held)]
    shown = redact_views(held_reasons + run.decisions["reason"])
    run.decisions["reason"] = shown[len(held_reasons) :]
    quarantine = _quarantine_table(docs, run.held, run.original, shown[: len(held_reasons)])
    counts = _counts(docs, run.alive, run.held, run.edits, run.removed, ctx)
    counts["stripped_lines"] = run.stripped_lines
    for t in PII_TYPES:
        counts[f"pii_hits_{t.lower()}"] = run.pii_hits[pii_rule_id(t)]
    for rule_id, n in sorted(run.fired.items()):
        counts[f"rule.{rule_id}"] = n
    for rule_id, s in run.seconds.items():
        counts[f"time_s.{rule_id}"] = round(s, 6)
    decisions = pa.table(run.decisions, schema=DECISION_SCHEMA)
    return GateResult(accepted, quarantine, decisions, counts, run.alive, sorted(run.held), run.decision_rows)


def _apply_rules(docs: pa.Table, rules: Sequence[Rule], ctx: GateContext) -> _Run:
    disabled = frozenset(ctx.spec.gating.disabled_rules)
    doc_ids: list[str] = docs.column("doc_id").to_pylist()
    source_ids: list[str] = docs.column("source_id").to_pylist()
    original: list[str | None] = docs.column("text").to_pylist()
    work_texts = original  # the texts of ``run.work``, as ``to_pylist`` gives them
    run = _Run(work=docs, alive=list(range(docs.num_rows)), seconds=dict.fromkeys((r.id for r in rules), 0.0))
    run.original = original
    decisions, held, edits, removed = run.decisions, run.held, run.edits, run.removed
    batch: pa.Table | None = None  # the rows of ``run.work`` at ``batch_rows``; rebuilt only when either changes
    batch_rows: list[int] = []

    for rule in rules:
        alive = run.alive
        if not alive:
            break
        if rule.idle(ctx):  # no outcomes to collect, and no table to build for it
            continue
        if batch is not None and len(batch_rows) != len(alive) and not _may_show_held(rule, batch_rows, alive):
            batch = None
        if batch is None:
            if len(alive) == run.work.num_rows:
                batch, shown = run.work, work_texts
            else:
                batch, shown = _take(run.work, alive), [work_texts[i] for i in alive]
            batch_rows = alive
            remember_texts(batch, [t or "" for t in shown])  # the rules' ``texts(batch)``, without a conversion
        started = time.perf_counter()
        results = rule.evaluate(batch, ctx)
        run.seconds[rule.id] += time.perf_counter() - started
        if len(results) != len(batch_rows):
            raise RuntimeError(f"rule {rule.id} returned {len(results)} outcomes for {len(batch_rows)} documents")
        if len(batch_rows) != len(alive):  # the outcomes of the rows held since the batch was built are dropped
            standing = set(alive)
            results = [r for row, r in zip(batch_rows, results, strict=True) if row in standing]
        still: list[int] = []
        restripped: list[int] = []
        for idx, outcomes in zip(alive, results, strict=True):
            if not outcomes:  # nothing to log, count, hold or edit
                still.append(idx)
                continue
            tagged = [(rid, o) for o in outcomes if (rid := o.rule_id or rule.id) not in disabled]
            spans = [_span_to_original(o.span, removed.get(idx)) if o.span else None for _, o in tagged]
            for (rule_id, o), span in zip(tagged, spans, strict=True):
                run.decision_rows.append(idx)
                decisions["doc_id"].append(doc_ids[idx])
                decisions["source_id"].append(source_ids[idx])
                decisions["rule_id"].append(rule_id)
                decisions["rule_version"].append(rule.version)
                decisions["action"].append(o.action)
                decisions["reason"].append(o.reason)
                decisions["span_start"].append(span[0] if span else None)
                decisions["span_end"].append(span[1] if span else None)
                decisions["score"].append(o.score)
                if rule_id.startswith("pii."):
                    run.pii_hits[rule_id] += 1
            for rule_id in dict.fromkeys(r for r, _ in tagged):
                run.fired[rule_id] += 1
            blocking = [(r, o) for r, o in tagged if o.action in BLOCKING_ACTIONS]
            if blocking:
                first_rule, first = blocking[0]
                held[idx] = _Held(DISPOSITION[first.action], first_rule, _reason(blocking))
                continue
            for (_, o), span in zip(tagged, spans, strict=True):
                if span is None:
                    continue
                if o.action == "redact":
                    edits.setdefault(idx, []).append((span[0], span[1], o.replacement or "<REDACTED>"))
                elif o.action == "strip":
                    edits.setdefault(idx, []).append((span[0], span[1], ""))
                    _add_removed(removed.setdefault(idx, []), span)
                    run.stripped_lines += 1
                    restripped.append(idx)
            still.append(idx)
        run.alive = still
        if restripped:
            batch = None
            current = list(work_texts)
            for idx in dict.fromkeys(restripped):
                text = original[idx] or ""
                current[idx] = _apply_edits(text, [(s, e, "") for s, e in removed[idx]])
            run.work, work_texts = _with_text(run.work, current), current
    return run


def _may_show_held(rule: Rule, batch_rows: list[int], alive: list[int]) -> bool:
    """Whether ``rule`` may be shown the last batch although rows of it have been held since it was built.

    Building a batch copies every text still standing; a ``per_document`` rule judges each row on its own, so
    showing it a few held rows more (whose outcomes the runner drops) changes nothing but its work on them.
    While the rows held are few (a quality rule holds about one in a hundred), that work is the smaller cost."""
    return rule.per_document and len(batch_rows) - len(alive) <= len(batch_rows) // _MAX_HELD_SHOWN


# At most one in this many rows of a batch shown to a ``per_document`` rule may be rows held since it was built.
_MAX_HELD_SHOWN = 16


def _counts(
    docs: pa.Table,
    alive: list[int],
    held: dict[int, _Held],
    edits: dict[int, list[Edit]],
    removed: dict[int, list[tuple[int, int]]],
    ctx: GateContext,
) -> dict[str, int | float]:
    n = docs.num_rows
    quarantined = sum(h.disposition == "quarantined" for h in held.values())
    rejected = sum(h.disposition == "rejected" for h in held.values())
    counts: dict[str, int | float] = {
        "ingested": n,
        "accepted": len(alive),
        "quarantined": quarantined,
        "rejected": rejected,
        "accepted_rate": round(len(alive) / n, 6) if n else 0.0,
        "quarantined_rate": round(quarantined / n, 6) if n else 0.0,
        "rejected_rate": round(rejected / n, 6) if n else 0.0,
        "redacted_docs": sum(1 for i in alive if any(r for _, _, r in edits.get(i, ()))),
        "stripped_docs": sum(1 for i in alive if i in removed),
    }
    detected = ctx.observations.get(LANGUAGE_OBSERVATION, {})
    doc_ids = docs.column("doc_id").to_pylist()
    declared = docs.column("language").to_pylist()
    domains = docs.column("domain").to_pylist()
    langs = Counter(detected.get(doc_ids[i]) or declared[i] or UNDETERMINED for i in alive)
    for code, k in sorted(langs.items()):
        counts[f"lang.{code}"] = k
    for domain, k in sorted(Counter(domains[i] or "unknown" for i in alive).items()):
        counts[f"domain.{domain}"] = k
    return counts


def _accepted_table(
    docs: pa.Table, alive: list[int], edits: dict[int, list[Edit]], original: list[str | None]
) -> pa.Table:
    table = _take(docs, alive)
    if not any(i in edits for i in alive):
        return table
    texts = [original[i] for i in alive]  # the taken texts, without converting them again
    messages = table.column("messages").to_pylist()
    for row, idx in enumerate(alive):
        if idx in edits:
            texts[row] = _apply_edits(texts[row], edits[idx])
            if messages[row] is not None:
                messages[row] = _redact_messages(messages[row], edits[idx])
    for name, values in (("text", texts), ("messages", messages)):
        field_ = DOCUMENT_SCHEMA.field(name)
        table = table.set_column(table.schema.get_field_index(name), field_, pa.array(values, type=field_.type))
    return table


def _quarantine_table(
    docs: pa.Table, held: dict[int, _Held], original: list[str | None], reasons: list[str | None]
) -> pa.Table:
    """The held documents as the quarantine shows them: text and reason (``reasons``, already redacted, in row
    order) with every detected value a tagged hash (:mod:`~mixassets.engine.redaction`), whichever rule held the
    document; the clear text stays in raw_documents, where a reviewer's accept takes it from."""
    order = sorted(held)
    sub = _take(docs.select(["doc_id", "source_id", "locator"]), order)  # the texts are ``original``'s
    rows: dict[str, list[Any]] = {
        "doc_id": sub.column("doc_id").to_pylist(),
        "source_id": sub.column("source_id").to_pylist(),
        "locator": sub.column("locator").to_pylist(),
        "disposition": [held[i].disposition for i in order],
        "rule_id": [held[i].rule_id for i in order],
        "reason": reasons,
        "text": redact_views([original[i] for i in order]),
        "raw_bytes": [None] * len(order),
        "raw_sha256": [None] * len(order),
    }
    return pa.table(rows, schema=QUARANTINE_SCHEMA)
