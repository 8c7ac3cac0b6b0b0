"""Review sheets: the reproducible sample a reviewer is given, and the CSV round trip of the filled sheet.

Why a module: the sheet is the one file a person edits, so its layout, the sample drawn into it and every
check on what comes back live together; applying the verdicts is :mod:`mixassets.engine.review`.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from mixassets.engine.redaction import redact_view
from mixassets.engine.text_norm import stable_hash64

REVIEW_SHEET_COLUMNS = [
    "doc_id",
    "source_id",
    "locator",
    "automatic",  # "accepted" | "quarantined" | "rejected"
    "rule_id",  # blocking rule for held docs; ";"-joined non-blocking rules that fired for accepted docs
    "reason",
    "excerpt",
    "verdict",  # filled by the reviewer: "accept" | "reject" (empty: not reviewed yet)
    "reviewer",
    "note",
]
REVIEW_SHEET_SCHEMA = pa.schema([pa.field(name, pa.string(), nullable=False) for name in REVIEW_SHEET_COLUMNS])

# One reviewer verdict on one document, with the sheet and line it came from so it can be traced back.
OVERRIDE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),  # "accept" | "reject"
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("note", pa.string(), nullable=False),
        pa.field("sheet", pa.string(), nullable=False),  # file name of the sheet
        pa.field("line", pa.int64(), nullable=False),  # line of the row in that sheet (header is line 1)
    ]
)


VERDICTS = ("accept", "reject")
ACCEPTED = "accepted"
EXCERPT_CHARS = 400
REVIEW_ACCEPT_RULE = "review.accept"
REVIEW_REJECT_RULE = "review.reject"
REVIEW_RULE_VERSION = 1
_REQUIRED_SHEET_COLUMNS = ("doc_id", "source_id", "verdict", "reviewer", "note")
_FORMULA_PREFIXES = ("=", "+", "-", "@")


class ReviewSheetError(ValueError):
    """A filled review sheet has problems; ``errors`` lists each one as "<file>:<line>: column '<c>': ..."."""

    def __init__(self, path: str, errors: list[str]):
        self.path = path
        self.errors = errors
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"review sheet {path}: {len(errors)} problem(s)\n  {shown}{more}")


# -- sampling ------------------------------------------------------------------------------------------
def _excerpt(text: str | None) -> str:
    """What the reviewer sees of a document: redacted whole before it is cut, so that no value is cut in two
    before the detectors see it. The tables sampled are redacted already; this keeps a sheet drawn from a table
    written before they were (or by other code) from carrying a value into a spreadsheet."""
    if text is None:
        return "<no decoded text>"
    return " ".join((redact_view(text) or "")[:EXCERPT_CHARS].split())


def _sample_keys(keys: list[tuple[str, str]], k: int, seed: int) -> list[tuple[str, str]]:
    """The ``k`` keys with the smallest seeded hash.

    Hash order rather than a shuffled list: the choice does not depend on row order, and a larger ``n``
    with the same seed gives a superset of the smaller sample, so a second review round never re-asks
    the documents a first round already saw.
    """
    ranked = sorted(keys, key=lambda key: (stable_hash64(f"{seed}\x00{key[0]}\x00{key[1]}"), key))
    return ranked[:k]


def _split_budget(n: int, accepted_available: int, held_available: int) -> tuple[int, int]:
    """Half each; the odd one goes to the held-back side; a short side's remainder goes to the other."""
    held = min(n - n // 2, held_available)
    accepted = min(n - held, accepted_available)
    held = min(n - accepted, held_available)
    return accepted, held


def _fired_rules(decisions: pa.Table) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    fired: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for doc_id, source_id, rule_id, reason in zip(
        decisions.column("doc_id").to_pylist(),
        decisions.column("source_id").to_pylist(),
        decisions.column("rule_id").to_pylist(),
        decisions.column("reason").to_pylist(),
        strict=True,
    ):
        rules, reasons = fired.setdefault((source_id, doc_id), ([], []))
        if rule_id not in rules:
            rules.append(rule_id)
        if reason not in reasons:
            reasons.append(reason)
    return fired


def _rows(table: pa.Table, indices: list[int], columns: Iterable[str]) -> list[dict[str, Any]]:
    """The given rows of a few columns as Python values; only these rows, not the table, are converted."""
    return table.select(list(columns)).take(pa.array(indices, type=pa.int64())).to_pylist()


def sample_review_sheet(
    accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table, *, n: int, seed: int
) -> pa.Table:
    """A review sheet of ``n`` documents (fewer if there are fewer), ``REVIEW_SHEET_SCHEMA``.

    ``n // 2`` accepted documents and ``n - n // 2`` held-back (quarantined or rejected) ones; when one
    side has too few documents the other side fills the rest. Rows are sorted by (automatic, source_id,
    doc_id). Tables may hold several sources; documents are keyed by (source_id, doc_id).
    """
    if n < 0:
        raise ValueError(f"review sample size must be >= 0, got {n}")
    acc_rows = {
        (s, d): i
        for i, (s, d) in enumerate(
            zip(accepted.column("source_id").to_pylist(), accepted.column("doc_id").to_pylist(), strict=True)
        )
    }
    held_rows = {
        (s, d): i
        for i, (s, d) in enumerate(
            zip(quarantine.column("source_id").to_pylist(), quarantine.column("doc_id").to_pylist(), strict=True)
        )
    }
    both = sorted(set(acc_rows) & set(held_rows))
    if both:
        raise ValueError(f"review sample: {len(both)} document(s) are both accepted and held back, e.g. {both[:3]}")
    n_acc, n_held = _split_budget(n, len(acc_rows), len(held_rows))
    fired = _fired_rules(decisions)
    out: dict[str, list[str]] = {name: [] for name in REVIEW_SHEET_COLUMNS}

    def add(key: tuple[str, str], locator: str, automatic: str, rule_id: str, reason: str, text: str | None) -> None:
        for name, value in (
            ("source_id", key[0]),
            ("doc_id", key[1]),
            ("locator", locator),
            ("automatic", automatic),
            ("rule_id", rule_id),
            ("reason", redact_view(reason) or ""),
            ("excerpt", _excerpt(text)),
            ("verdict", ""),
            ("reviewer", ""),
            ("note", ""),
        ):
            out[name].append(value)

    acc_keys = _sample_keys(list(acc_rows), n_acc, seed)
    for key, row in zip(acc_keys, _rows(accepted, [acc_rows[k] for k in acc_keys], ("locator", "text")), strict=True):
        rules, reasons = fired.get(key, ([], []))
        add(key, row["locator"], ACCEPTED, ";".join(rules), "; ".join(reasons), row["text"])
    held_keys = _sample_keys(list(held_rows), n_held, seed)
    held_cols = ("locator", "disposition", "rule_id", "reason", "text")
    for key, row in zip(held_keys, _rows(quarantine, [held_rows[k] for k in held_keys], held_cols), strict=True):
        add(key, row["locator"], row["disposition"], row["rule_id"], row["reason"], row["text"])
    sheet = pa.table(out, schema=REVIEW_SHEET_SCHEMA)
    if sheet.num_rows == 0:
        return sheet
    return sheet.sort_by([("automatic", "ascending"), ("source_id", "ascending"), ("doc_id", "ascending")])


# -- CSV round trip ------------------------------------------------------------------------------------
def _spreadsheet_safe(value: str) -> str:
    """Keep spreadsheet programs from running document text as a formula (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def write_sheet_csv(sheet: pa.Table, path: str) -> None:
    """Write the sheet as UTF-8 CSV; written to a temp file then renamed so a reader never sees half a sheet.

    The display-only columns (excerpt, reason) are guarded against formula injection; the columns read
    back (doc_id, source_id, verdict, reviewer, note) are written as they are.
    """
    missing = [c for c in REVIEW_SHEET_COLUMNS if c not in sheet.column_names]
    if missing:
        raise ValueError(f"review sheet lacks columns {missing}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = {c: sheet.column(c).to_pylist() for c in REVIEW_SHEET_COLUMNS}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(REVIEW_SHEET_COLUMNS)
            for i in range(sheet.num_rows):
                row = ["" if columns[c][i] is None else str(columns[c][i]) for c in REVIEW_SHEET_COLUMNS]
                for c in ("excerpt", "reason"):
                    j = REVIEW_SHEET_COLUMNS.index(c)
                    row[j] = _spreadsheet_safe(row[j])
                writer.writerow(row)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class _Verdict:
    doc_id: str
    source_id: str
    verdict: str
    reviewer: str
    note: str
    line: int


def read_verdicts_csv(path: str) -> pa.Table:
    """The reviewed rows of a filled sheet as ``OVERRIDE_SCHEMA``; rows with an empty verdict are skipped.

    All problems of the sheet are collected and raised together as one ``ReviewSheetError`` so a
    reviewer fixes the sheet in one go. The same document twice with the same verdict is accepted (the
    later row is kept); with different verdicts it is an error naming both lines.
    """
    name = Path(path).name
    errors: list[str] = []
    kept: dict[str, _Verdict] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ReviewSheetError(
                    path, [f"{name}:1: empty file, expected a header with {list(REVIEW_SHEET_COLUMNS)}"]
                )
            header = [h.strip() for h in header]
            missing = [c for c in _REQUIRED_SHEET_COLUMNS if c not in header]
            if missing:
                raise ReviewSheetError(path, [f"{name}:1: column '{c}': missing from the header" for c in missing])
            index = {c: header.index(c) for c in _REQUIRED_SHEET_COLUMNS}
            start = reader.line_num + 1
            for row in reader:
                line, start = start, reader.line_num + 1
                _read_row(name, line, row, header, index, kept, errors)
    except UnicodeDecodeError as exc:
        raise ReviewSheetError(path, [f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    except csv.Error as exc:
        raise ReviewSheetError(path, [f"{name}:{reader.line_num}: malformed CSV ({exc})"]) from exc
    if errors:
        raise ReviewSheetError(path, errors)
    rows = sorted(kept.values(), key=lambda v: v.line)
    return pa.table(
        {
            "doc_id": [v.doc_id for v in rows],
            "source_id": [v.source_id for v in rows],
            "verdict": [v.verdict for v in rows],
            "reviewer": [v.reviewer for v in rows],
            "note": [v.note for v in rows],
            "sheet": [name] * len(rows),
            "line": [v.line for v in rows],
        },
        schema=OVERRIDE_SCHEMA,
    )


def _read_row(
    name: str,
    line: int,
    row: list[str],
    header: list[str],
    index: dict[str, int],
    kept: dict[str, _Verdict],
    errors: list[str],
) -> None:
    if not any(cell.strip() for cell in row):
        return  # blank line
    if len(row) != len(header):
        errors.append(
            f"{name}:{line}: row has {len(row)} fields but the header has {len(header)} (an unquoted comma in a note?)"
        )
        return
    cell = {c: row[i].strip() for c, i in index.items()}
    verdict = cell["verdict"].lower()
    if not verdict:
        return  # not reviewed yet
    problems = []
    if verdict not in VERDICTS:
        problems.append(f"column 'verdict': unknown verdict {cell['verdict']!r}, expected one of {list(VERDICTS)}")
    for c in ("doc_id", "source_id", "reviewer"):
        if not cell[c]:
            problems.append(f"column '{c}': missing (required when a verdict is given)")
    if problems:
        errors.extend(f"{name}:{line}: {p}" for p in problems)
        return
    prior = kept.get(cell["doc_id"])
    if prior is not None and prior.verdict != verdict:
        errors.append(
            f"{name}:{line}: column 'verdict': document {cell['doc_id']} is also on line {prior.line} "
            f"with the conflicting verdict {prior.verdict!r} (here {verdict!r})"
        )
        return
    if prior is not None and prior.source_id != cell["source_id"]:
        errors.append(
            f"{name}:{line}: column 'source_id': document {cell['doc_id']} is also on line {prior.line} "
            f"with source {prior.source_id!r} (here {cell['source_id']!r})"
        )
        return
    kept[cell["doc_id"]] = _Verdict(
        cell["doc_id"], cell["source_id"], verdict, cell["reviewer"], row[index["note"]].strip(), line
    )
