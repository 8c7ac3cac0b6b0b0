"""Human review of the gate: sample a sheet, read the verdicts back, apply them, measure the rules.

A gate nobody checks cannot be defended, and a gate that can only be tuned by editing rules cannot be
corrected one document at a time. This module closes that loop without Dagster:

* ``sample_review_sheet`` draws a reproducible sample that is half documents the gate accepted and half
  documents it held back, because the two halves answer different questions (what did we let through
  that we should not have, what did we throw away for nothing).
* ``read_verdicts_csv`` turns a filled sheet into override rows; every problem names the file, the line
  and the column, so a reviewer can fix the sheet rather than guess.
* ``merge_overrides`` keeps one verdict per document across sheets, the latest winning.
* ``apply_overrides`` moves documents between accepted and quarantine and logs each move as a decision,
  keeping the invariant that every document is in exactly one of the two tables.
* ``review_agreement`` turns verdicts into per-rule agreement and error-rate estimates.

The automatic decision a verdict is compared with is always the gate's output *before* any override, so
the lead must pass the pre-override tables to ``sample_review_sheet``, ``apply_overrides`` and
``review_agreement``; comparing with post-override tables would make every applied verdict "agree".
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from mixassets.engine import chat
from mixassets.engine.redaction import corpus_redact, redact_view
from mixassets.engine.review_sheet import (
    ACCEPTED,
    EXCERPT_CHARS,
    OVERRIDE_SCHEMA,
    REVIEW_ACCEPT_RULE,
    REVIEW_REJECT_RULE,
    REVIEW_RULE_VERSION,
    REVIEW_SHEET_COLUMNS,
    REVIEW_SHEET_SCHEMA,
    VERDICTS,
    ReviewSheetError,
    _rows,
    read_verdicts_csv,
    sample_review_sheet,
    write_sheet_csv,
)
from mixassets.engine.rules import CHAT_JOINER
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

__all__ = [
    "ACCEPTED",
    "AGREEMENT_SCHEMA",
    "EXCERPT_CHARS",
    "OVERRIDE_SCHEMA",
    "REVIEW_ACCEPT_RULE",
    "REVIEW_REJECT_RULE",
    "REVIEW_RULE_VERSION",
    "REVIEW_SHEET_COLUMNS",
    "REVIEW_SHEET_SCHEMA",
    "VERDICTS",
    "ReviewSheetError",
    "agreement_table",
    "apply_overrides",
    "merge_overrides",
    "read_verdicts_csv",
    "review_agreement",
    "sample_review_sheet",
    "write_sheet_csv",
]


AGREEMENT_SCHEMA = pa.schema(
    [
        pa.field("rule_id", pa.string(), nullable=False),  # the rule that held the doc, or "accepted"
        pa.field("reviewed", pa.int64(), nullable=False),
        pa.field("agreed", pa.int64(), nullable=False),
        pa.field("overturned", pa.int64(), nullable=False),
        pa.field("estimated_false_positive_rate", pa.float64()),  # holding rules only
        pa.field("estimated_false_negative_rate", pa.float64()),  # the "accepted" row only
        pa.field("rate_ci_low", pa.float64(), nullable=False),  # 95% Wilson interval of whichever rate is set
        pa.field("rate_ci_high", pa.float64(), nullable=False),
    ]
)


# -- overrides -----------------------------------------------------------------------------------------
def _conform_overrides(overrides: pa.Table) -> pa.Table:
    missing = [c for c in OVERRIDE_SCHEMA.names if c not in overrides.column_names]
    if missing:
        raise ValueError(f"overrides table lacks columns {missing} of OVERRIDE_SCHEMA")
    table = overrides.select(OVERRIDE_SCHEMA.names).cast(OVERRIDE_SCHEMA)
    bad = sorted(set(table.column("verdict").to_pylist()) - set(VERDICTS))
    if bad:
        raise ValueError(f"overrides table has unknown verdicts {bad}, expected one of {list(VERDICTS)}")
    return table


def merge_overrides(existing: pa.Table, new: pa.Table) -> pa.Table:
    """The overrides of a source after a new sheet: one row per doc_id, ``new`` over ``existing``.

    Within one table a later row wins over an earlier one. Rows are sorted by doc_id so the same verdicts
    always give the same table (and the same asset version).
    """
    latest = _latest_per_doc(existing, new)
    return pa.Table.from_pylist([latest[d] for d in sorted(latest)], schema=OVERRIDE_SCHEMA)


def _latest_per_doc(*overrides: pa.Table) -> dict[str, dict[str, Any]]:
    """The last row per doc_id over the tables in order; every table is checked before any row is read."""
    latest: dict[str, dict[str, Any]] = {}
    for table in [_conform_overrides(t) for t in overrides]:
        for row in table.to_pylist():
            latest[row["doc_id"]] = row
    return latest


def _review_reason(row: dict[str, Any]) -> str:
    """The logged reason of a verdict; a note that quotes the document is redacted like every other reason."""
    note = row["note"].strip()
    reason = f"review by {row['reviewer']}: {note}" if note else f"review by {row['reviewer']}"
    return redact_view(reason) or reason


def _offset_map(raw_text: str, stored_text: str) -> list[tuple[int, int, int, int]]:
    """The unchanged stretches (raw start, raw end, stored start, stored end) between the two texts."""
    matcher = difflib.SequenceMatcher(None, raw_text, stored_text, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag == "equal"]


def _map_offset(pos: int, equal: list[tuple[int, int, int, int]]) -> int | None:
    for i1, i2, j1, _ in equal:
        if i1 <= pos <= i2:
            return j1 + (pos - i1)
    return None


def _redacted_messages(raw_messages: str, raw_text: str, stored_text: str) -> str | None:
    """The raw messages with the stored (redacted) text carried into each one; None if that is ambiguous.

    The text is redacted as a whole but the messages are stored apart, and a chat document must not
    come back with redacted text and clear-text messages. Message boundaries are mapped from the raw
    text onto the stored text through their unchanged stretches; a redaction that crossed a boundary
    leaves it unmappable and the document is not moved.
    """
    conversation = chat.parse_stored(raw_messages)
    if conversation is None:
        return None
    contents = conversation.segments()  # message contents and tool calls, see mixassets.engine.chat
    if CHAT_JOINER.join(contents) != raw_text:
        return None
    if stored_text == raw_text:
        return raw_messages
    equal = _offset_map(raw_text, stored_text)
    offset = 0
    new_contents: list[str] = []
    for content in contents:
        start, end = _map_offset(offset, equal), _map_offset(offset + len(content), equal)
        if start is None or end is None or end < start:
            return None
        new_contents.append(stored_text[start:end])
        offset += len(content) + len(CHAT_JOINER)
    if CHAT_JOINER.join(new_contents) != stored_text:
        return None
    redacted = chat.with_segments(conversation, new_contents)
    return None if redacted is None else redacted.to_json()


def _accepted_row(held: dict[str, Any], raw_row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """The DOCUMENT_SCHEMA row a held document becomes when a reviewer accepts it, or None and why not.

    The text comes from the clear raw row, redacted as the gate redacts what it accepts (``<TYPE>``), never from
    the quarantine, whose text is a view (tagged hashes) and may be a preview of bytes that were never a document.
    """
    if raw_row is None:
        if str(held["rule_id"]).startswith("read."):
            return None, "could not be read (malformed or undecodable record): fix the source (bytes in the vault)"
        return None, "not in the raw documents passed in, so its kind, license and metadata are unknown"
    row = dict(raw_row)
    row["text"] = corpus_redact(raw_row["text"])
    if row["kind"] == "chat" and row["messages"] is not None:
        messages = _redacted_messages(row["messages"], raw_row["text"], row["text"])
        if messages is None:
            return None, "chat messages could not be aligned with the redacted text"
        row["messages"] = messages
    return row, ""


def apply_overrides(
    accepted: pa.Table,
    quarantine: pa.Table,
    decisions: pa.Table,
    overrides: pa.Table,
    *,
    raw: pa.Table,
) -> tuple[pa.Table, pa.Table, pa.Table, dict[str, Any]]:
    """Apply one source's reviewer verdicts to that source's pre-override gate outputs.

    ``raw`` is the source's raw documents (DOCUMENT_SCHEMA). The quarantine table keeps only a redacted
    view, so an accepted document is rebuilt from its raw row — kind, messages, license, rights tags,
    attribution, domain, language, capture time — with its text redacted as the gate redacts accepted text
    (``<TYPE>``); for chat documents the messages are rebuilt from that redacted text, never copied in clear.

    * ``accept`` on a held document moves it to ``accepted`` (appended, sorted by doc_id) and logs a
      ``review.accept`` decision with action "flag".
    * ``reject`` on an accepted document moves it to ``quarantine`` as "rejected" with rule
      ``review.reject`` and logs a ``review.reject`` decision with action "reject".
    * A verdict that agrees with the gate changes nothing and is counted in ``agreed``.
    * A verdict on a document this source's outputs do not hold is listed in ``unmatched``.
    * An ``accept`` that cannot be carried out safely (a record that could not be read, no raw row, chat
      messages that do not align with the redacted text) leaves the document held and is listed in
      ``not_applied``.

    When ``overrides`` holds several rows for a document, the last one counts.
    """
    latest = _latest_per_doc(overrides)
    acc_ids: list[str] = accepted.column("doc_id").to_pylist()
    q_ids: list[str] = quarantine.column("doc_id").to_pylist()
    acc_index = {d: i for i, d in enumerate(acc_ids)}
    q_index = {d: i for i, d in enumerate(q_ids)}
    overlap = sorted(acc_index.keys() & q_index.keys())
    if overlap:
        raise ValueError(f"apply_overrides: {len(overlap)} document(s) both accepted and held back, e.g. {overlap[:3]}")
    raw_index = {d: i for i, d in enumerate(raw.column("doc_id").to_pylist())}

    to_accept: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (doc_id, override, document row)
    to_reject: list[tuple[str, dict[str, Any]]] = []
    unmatched: list[str] = []
    not_applied: list[dict[str, str]] = []
    agreed = 0
    for doc_id in sorted(latest):
        row = latest[doc_id]
        if doc_id in acc_index:
            if row["verdict"] == "accept":
                agreed += 1
            else:
                to_reject.append((doc_id, row))
        elif doc_id in q_index:
            if row["verdict"] == "reject":
                agreed += 1
                continue
            held = quarantine.slice(q_index[doc_id], 1).to_pylist()[0]
            raw_row = raw.slice(raw_index[doc_id], 1).to_pylist()[0] if doc_id in raw_index else None
            doc, why = _accepted_row(held, raw_row)
            if doc is None:
                not_applied.append({"doc_id": doc_id, "reason": why})
            else:
                to_accept.append((doc_id, row, doc))
        else:
            unmatched.append(doc_id)

    moved_out = {d for d, _ in to_reject}
    moved_in = {d for d, _, _ in to_accept}
    keep_acc = [i for i, d in enumerate(acc_ids) if d not in moved_out]
    keep_q = [i for i, d in enumerate(q_ids) if d not in moved_in]
    new_accepted = pa.concat_tables(
        [
            accepted.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA).take(pa.array(keep_acc, type=pa.int64())),
            pa.Table.from_pylist([doc for _, _, doc in to_accept], schema=DOCUMENT_SCHEMA),
        ]
    )
    leaving = _rows(accepted, [acc_index[d] for d, _ in to_reject], ("source_id", "locator", "text"))
    rejected_rows = [
        {
            "doc_id": d,
            "source_id": doc["source_id"],
            "locator": doc["locator"],
            "disposition": "rejected",
            "rule_id": REVIEW_REJECT_RULE,
            "reason": _review_reason(row),
            "text": redact_view(doc["text"]),
            "raw_bytes": None,
            "raw_sha256": None,
        }
        for (d, row), doc in zip(to_reject, leaving, strict=True)
    ]
    new_quarantine = pa.concat_tables(
        [
            quarantine.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA).take(pa.array(keep_q, type=pa.int64())),
            pa.Table.from_pylist(rejected_rows, schema=QUARANTINE_SCHEMA),
        ]
    )
    review_decisions = [
        _decision(doc["doc_id"], doc["source_id"], REVIEW_ACCEPT_RULE, "flag", row) for _, row, doc in to_accept
    ] + [
        _decision(r["doc_id"], r["source_id"], REVIEW_REJECT_RULE, "reject", row)
        for r, (_, row) in zip(rejected_rows, to_reject, strict=True)
    ]
    new_decisions = pa.concat_tables(
        [
            decisions.select(DECISION_SCHEMA.names).cast(DECISION_SCHEMA),
            pa.Table.from_pylist(sorted(review_decisions, key=lambda r: r["doc_id"]), schema=DECISION_SCHEMA),
        ]
    )
    _check_conservation(acc_ids + q_ids, new_accepted, new_quarantine)
    stats: dict[str, Any] = {
        "overrides": len(latest),
        "accepted_by_review": len(to_accept),
        "rejected_by_review": len(to_reject),
        "agreed": agreed,
        "unmatched": unmatched,
        "not_applied": not_applied,
    }
    return new_accepted, new_quarantine, new_decisions, stats


def _decision(doc_id: str, source_id: str, rule_id: str, action: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "source_id": source_id,
        "rule_id": rule_id,
        "rule_version": REVIEW_RULE_VERSION,
        "action": action,
        "reason": _review_reason(row),
        "span_start": None,
        "span_end": None,
        "score": None,
    }


def _check_conservation(before: Iterable[str], accepted: pa.Table, quarantine: pa.Table) -> None:
    acc = accepted.column("doc_id").to_pylist()
    held = quarantine.column("doc_id").to_pylist()
    if (
        len(set(acc)) + len(set(held)) != len(acc) + len(held)
        or set(acc) & set(held)
        or set(acc) | set(held) != set(before)
    ):
        raise RuntimeError("apply_overrides lost or duplicated a document; this is a bug in mixassets.engine.review")


# -- agreement -----------------------------------------------------------------------------------------
def _wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval: honest at the small counts a review sample has, never outside [0, 1]."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def review_agreement(overrides: pa.Table, accepted: pa.Table, quarantine: pa.Table) -> pa.Table:
    """Per rule, how often reviewers agreed with the gate (``AGREEMENT_SCHEMA``), from pre-override tables.

    For a holding rule, an overturn is a reviewer accepting what the rule held, so overturned/reviewed
    estimates the rule's false-positive rate among the documents it holds. For the "accepted" row, an
    overturn is a reviewer rejecting what the gate let through, so overturned/reviewed estimates the
    share of accepted documents the gate should have held (its miss rate). Each estimate only describes
    the sampled side it comes from; verdicts on documents in neither table are ignored. Sorted by
    rule_id with "accepted" first.
    """
    latest = _latest_per_doc(overrides)
    accepted_ids = set(accepted.column("doc_id").to_pylist())
    holding = dict(zip(quarantine.column("doc_id").to_pylist(), quarantine.column("rule_id").to_pylist(), strict=True))
    counts: dict[str, list[int]] = {}  # rule -> [reviewed, agreed]
    for doc_id, row in latest.items():
        if doc_id in accepted_ids:
            rule, agrees = ACCEPTED, row["verdict"] == "accept"
        elif doc_id in holding:
            rule, agrees = holding[doc_id], row["verdict"] == "reject"
        else:
            continue
        c = counts.setdefault(rule, [0, 0])
        c[0] += 1
        c[1] += int(agrees)
    return agreement_table({rule: (reviewed, agreed) for rule, (reviewed, agreed) in counts.items()})


def agreement_table(counts: Mapping[str, tuple[int, int]]) -> pa.Table:
    """``AGREEMENT_SCHEMA`` rows from ``{rule: (reviewed, agreed)}``, e.g. counts summed over sources: for a
    holding rule the overturn rate estimates its false-positive rate, for "accepted" the gate's miss rate,
    each with a 95% Wilson interval. Sorted by rule_id with "accepted" first; rules never reviewed are left out."""
    rows = []
    for rule in sorted((r for r, c in counts.items() if c[0]), key=lambda r: (r != ACCEPTED, r)):
        reviewed, agreed = counts[rule]
        overturned = reviewed - agreed
        rate = overturned / reviewed
        low, high = _wilson(overturned, reviewed)
        rows.append(
            {
                "rule_id": rule,
                "reviewed": reviewed,
                "agreed": agreed,
                "overturned": overturned,
                "estimated_false_positive_rate": None if rule == ACCEPTED else rate,
                "estimated_false_negative_rate": rate if rule == ACCEPTED else None,
                "rate_ci_low": low,
                "rate_ci_high": high,
            }
        )
    return pa.Table.from_pylist(rows, schema=AGREEMENT_SCHEMA)
