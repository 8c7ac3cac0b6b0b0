"""The review loop: sampling, the CSV round trip, verdict validation, applying overrides, agreement."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mixassets.engine.review import (
    OVERRIDE_SCHEMA,
    REVIEW_SHEET_COLUMNS,
    ReviewSheetError,
    apply_overrides,
    merge_overrides,
    read_verdicts_csv,
    review_agreement,
    sample_review_sheet,
    write_sheet_csv,
)
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)
SRC = "src"


def _doc(doc_id: str, text: str, *, kind: str = "text", messages: str | None = None) -> dict:
    return {
        "doc_id": doc_id,
        "source_id": SRC,
        "locator": f"f.jsonl:{doc_id}",
        "kind": kind,
        "text": text,
        "messages": messages,
        "license": "CC-BY-4.0",
        "rights_tags": ["x"],
        "attribution": "Jane Doe",
        "domain": "web",
        "language": "en",
        "capture_time": NOW,
    }


def _held(doc_id: str, rule_id: str, text: str | None, disposition: str = "quarantined") -> dict:
    return {
        "doc_id": doc_id,
        "source_id": SRC,
        "locator": f"f.jsonl:{doc_id}",
        "disposition": disposition,
        "rule_id": rule_id,
        "reason": f"held by {rule_id}",
        "text": text,
        "raw_bytes": None,
        "raw_sha256": None,
    }


def _decision(doc_id: str, rule_id: str, action: str, reason: str = "r") -> dict:
    return {
        "doc_id": doc_id,
        "source_id": SRC,
        "rule_id": rule_id,
        "rule_version": 1,
        "action": action,
        "reason": reason,
        "span_start": None,
        "span_end": None,
    }


def _overrides(*rows: tuple[str, str, str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "doc_id": d,
                "source_id": SRC,
                "verdict": v,
                "reviewer": who,
                "note": note,
                "sheet": "s.csv",
                "line": i + 2,
            }
            for i, (d, v, who, note) in enumerate(rows)
        ],
        schema=OVERRIDE_SCHEMA,
    )


@pytest.fixture
def gate_out() -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """A small source after the gate: a0..a9 accepted (a1 redacted), q0..q5 quarantined, r0..r3 rejected."""
    messages = json.dumps([{"role": "user", "content": "mail me at <EMAIL>"}, {"role": "assistant", "content": "ok"}])
    accepted = [_doc(f"a{i}", f"accepted text {i} " + "word " * 200) for i in range(10)]
    accepted[1]["text"] = "call <PHONE> now"
    held = [_held(f"q{i}", "quality.short" if i < 4 else "safety.toxic", f"held text {i}") for i in range(6)]
    held += [_held(f"r{i}", "license.forbidden", f"rejected text {i}", "rejected") for i in range(4)]
    held.append(_held("chat1", "quality.short", "mail me at <EMAIL>\n\nok"))
    held.append(_held("bad1", "reader.malformed", None))
    raw = [_doc(f"a{i}", f"accepted text {i}") for i in range(10)]
    raw += [_doc(h["doc_id"], h["text"] or "") for h in held if h["doc_id"] not in ("chat1", "bad1")]
    raw_messages = json.dumps(
        [{"role": "user", "content": "mail me at bob@example.com"}, {"role": "assistant", "content": "ok"}]
    )
    raw.append(_doc("chat1", "mail me at bob@example.com\n\nok", kind="chat", messages=raw_messages))
    accepted.append(_doc("chat0", "mail me at <EMAIL>\n\nok", kind="chat", messages=messages))
    raw.append(_doc("chat0", "mail me at x@y.org\n\nok", kind="chat", messages=messages))
    decisions = [_decision("a1", "pii.phone", "redact", "phone number"), _decision("a1", "pii.email", "redact", "e")]
    decisions += [_decision(h["doc_id"], h["rule_id"], "quarantine") for h in held]
    return (
        pa.Table.from_pylist(accepted, schema=DOCUMENT_SCHEMA),
        pa.Table.from_pylist(held, schema=QUARANTINE_SCHEMA),
        pa.Table.from_pylist(decisions, schema=DECISION_SCHEMA),
        pa.Table.from_pylist(raw, schema=DOCUMENT_SCHEMA),
    )


# -- sampling ------------------------------------------------------------------------------------------
def test_sample_is_reproducible_and_stratified(gate_out):
    accepted, quarantine, decisions, _ = gate_out
    sheet = sample_review_sheet(accepted, quarantine, decisions, n=7, seed=3)
    assert sheet.column_names == REVIEW_SHEET_COLUMNS
    again = sample_review_sheet(
        accepted.take(list(reversed(range(accepted.num_rows)))), quarantine, decisions, n=7, seed=3
    )
    assert sheet.equals(again)  # row order of the inputs does not matter
    automatic = sheet.column("automatic").to_pylist()
    assert sum(a == "accepted" for a in automatic) == 3  # n // 2
    assert sum(a != "accepted" for a in automatic) == 4  # the odd one goes to the held-back side
    keys = list(zip(automatic, sheet.column("source_id").to_pylist(), sheet.column("doc_id").to_pylist(), strict=True))
    assert keys == sorted(keys)
    other_seed = sample_review_sheet(accepted, quarantine, decisions, n=7, seed=4)
    assert other_seed.column("doc_id").to_pylist() != sheet.column("doc_id").to_pylist()
    bigger = sample_review_sheet(accepted, quarantine, decisions, n=11, seed=3)
    assert set(sheet.column("doc_id").to_pylist()) <= set(bigger.column("doc_id").to_pylist())


def test_sample_fills_from_the_other_side_and_describes_rows(gate_out):
    accepted, quarantine, decisions, _ = gate_out
    few_held = quarantine.slice(0, 2)
    sheet = sample_review_sheet(accepted, few_held, decisions, n=8, seed=0)
    automatic = sheet.column("automatic").to_pylist()
    assert automatic.count("quarantined") == 2 and automatic.count("accepted") == 6
    everything = sample_review_sheet(accepted, quarantine, decisions, n=1000, seed=0)
    assert everything.num_rows == accepted.num_rows + quarantine.num_rows
    rows = {r["doc_id"]: r for r in everything.to_pylist()}
    assert rows["a1"]["rule_id"] == "pii.phone;pii.email" and rows["a1"]["automatic"] == "accepted"
    assert rows["a0"]["rule_id"] == "" and rows["a0"]["reason"] == ""
    assert rows["r2"] | {"excerpt": ""} == {
        "doc_id": "r2",
        "source_id": SRC,
        "locator": "f.jsonl:r2",
        "automatic": "rejected",
        "rule_id": "license.forbidden",
        "reason": "held by license.forbidden",
        "excerpt": "",
        "verdict": "",
        "reviewer": "",
        "note": "",
    }
    assert rows["chat1"]["excerpt"] == "mail me at <EMAIL> ok"  # one line
    assert len(rows["a0"]["excerpt"]) <= 400
    assert rows["bad1"]["excerpt"] == "<no decoded text>"
    assert sample_review_sheet(accepted, quarantine, decisions, n=0, seed=0).num_rows == 0


# -- CSV -----------------------------------------------------------------------------------------------
def _fill(sheet: pa.Table, verdicts: dict[str, tuple[str, str, str]]) -> pa.Table:
    rows = sheet.to_pylist()
    for r in rows:
        if r["doc_id"] in verdicts:
            r["verdict"], r["reviewer"], r["note"] = verdicts[r["doc_id"]]
    return pa.Table.from_pylist(rows, schema=sheet.schema)


def test_csv_round_trip(gate_out, tmp_path: Path):
    accepted, quarantine, decisions, _ = gate_out
    sheet = sample_review_sheet(accepted, quarantine, decisions, n=1000, seed=0)
    filled = _fill(sheet, {"a2": ("reject", "ann", 'spam, "clearly"\nsecond line'), "q1": ("ACCEPT ", "bo", "")})
    path = tmp_path / "sheets" / "round1.csv"
    write_sheet_csv(filled, str(path))
    assert not [p for p in path.parent.iterdir() if p.name != "round1.csv"]  # no temp file left behind
    overrides = read_verdicts_csv(str(path))
    assert overrides.schema == OVERRIDE_SCHEMA
    rows = sorted(overrides.to_pylist(), key=lambda r: r["doc_id"])
    header_and_lines = path.read_text(encoding="utf-8").splitlines()
    a2_line = next(i + 1 for i, line in enumerate(header_and_lines) if line.startswith("a2,"))
    assert rows == [
        {
            "doc_id": "a2",
            "source_id": SRC,
            "verdict": "reject",
            "reviewer": "ann",
            "note": 'spam, "clearly"\nsecond line',
            "sheet": "round1.csv",
            "line": a2_line,
        },
        {
            "doc_id": "q1",
            "source_id": SRC,
            "verdict": "accept",
            "reviewer": "bo",
            "note": "",
            "sheet": "round1.csv",
            "line": rows[1]["line"],
        },
    ]
    q1_line = next(i + 1 for i, line in enumerate(header_and_lines) if line.startswith("q1,"))
    assert rows[1]["line"] == q1_line


def test_excerpt_cannot_become_a_spreadsheet_formula(tmp_path: Path):
    held = pa.Table.from_pylist([_held("q0", "quality.short", "=HYPERLINK(1)")], schema=QUARANTINE_SCHEMA)
    sheet = sample_review_sheet(DOCUMENT_SCHEMA.empty_table(), held, DECISION_SCHEMA.empty_table(), n=2, seed=0)
    path = tmp_path / "s.csv"
    write_sheet_csv(sheet, str(path))
    assert "'=HYPERLINK(1)" in path.read_text()


HEADER = "doc_id,source_id,locator,automatic,rule_id,reason,excerpt,verdict,reviewer,note\n"


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        ("a1,src,l,accepted,,,x,maybe,ann,\n", 2, "verdict", "unknown verdict 'maybe'"),
        ("a1,src,l,accepted,,,x,accept,,\n", 2, "reviewer", "missing"),
        ("a0,src,l,accepted,,,x,,,\n,src,l,accepted,,,x,reject,ann,\n", 3, "doc_id", "missing"),
        ("a1,,l,accepted,,,x,reject,ann,\n", 2, "source_id", "missing"),
        (
            "a1,src,l,accepted,,,x,reject,ann,\na2,src,l,accepted,,,x,,,\na1,src,l,accepted,,,x,accept,bo,\n",
            4,
            "verdict",
            "line 2",
        ),
    ],
)
def test_every_validation_error_names_file_line_and_column(tmp_path: Path, body, line, column, words):
    path = tmp_path / "filled.csv"
    path.write_text(HEADER + body)
    with pytest.raises(ReviewSheetError) as err:
        read_verdicts_csv(str(path))
    assert len(err.value.errors) == 1
    message = err.value.errors[0]
    assert message.startswith(f"filled.csv:{line}: column '{column}'")
    assert words in message
    assert str(path) in str(err.value)


def test_missing_header_columns_and_all_errors_reported_together(tmp_path: Path):
    path = tmp_path / "bad_header.csv"
    path.write_text("doc_id,verdict,note\na1,accept,\n")
    with pytest.raises(ReviewSheetError) as err:
        read_verdicts_csv(str(path))
    assert err.value.errors == [
        "bad_header.csv:1: column 'source_id': missing from the header",
        "bad_header.csv:1: column 'reviewer': missing from the header",
    ]
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "a1,src,l,accepted,,,x,nope,ann,\na2,src,l,accepted,,,x,accept,,\n")
    with pytest.raises(ReviewSheetError) as err:
        read_verdicts_csv(str(path))
    assert [e.split(": column")[0] for e in err.value.errors] == ["many.csv:2", "many.csv:3"]


def test_unreviewed_rows_are_skipped_and_consistent_duplicates_kept_once(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text(
        "\ufeff" + HEADER + "a1,src,l,accepted,,,x,,,\n\na2,src,l,accepted,,,x,reject,ann,first\n"
        "a2,src,l,accepted,,,x,Reject,ann,second\n"
    )
    rows = read_verdicts_csv(str(path)).to_pylist()
    assert [(r["doc_id"], r["verdict"], r["note"], r["line"]) for r in rows] == [("a2", "reject", "second", 5)]


def test_misaligned_row_is_reported(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "a1,src,l,accepted,,,x,reject,ann,too,many\n")
    with pytest.raises(ReviewSheetError, match=r"s\.csv:2: row has 11 fields but the header has 10"):
        read_verdicts_csv(str(path))


# -- merging -------------------------------------------------------------------------------------------
def test_merge_latest_verdict_wins_in_doc_order():
    old = _overrides(("q1", "reject", "ann", "old"), ("a2", "accept", "ann", ""))
    new = _overrides(("q1", "accept", "bo", "new"), ("a0", "reject", "bo", ""), ("a0", "accept", "cy", "later"))
    merged = merge_overrides(old, new)
    assert [(r["doc_id"], r["verdict"], r["reviewer"]) for r in merged.to_pylist()] == [
        ("a0", "accept", "cy"),
        ("a2", "accept", "ann"),
        ("q1", "accept", "bo"),
    ]
    assert merge_overrides(OVERRIDE_SCHEMA.empty_table(), OVERRIDE_SCHEMA.empty_table()).num_rows == 0


# -- applying ------------------------------------------------------------------------------------------
def _ids(table: pa.Table) -> set[str]:
    return set(table.column("doc_id").to_pylist())


def test_apply_overrides_moves_logs_and_conserves(gate_out):
    accepted, quarantine, decisions, raw = gate_out
    overrides = _overrides(
        ("q1", "accept", "ann", "fine text"),  # held -> accepted
        ("a2", "reject", "bo", "spam"),  # accepted -> rejected
        ("a3", "accept", "ann", ""),  # agrees
        ("r0", "reject", "ann", ""),  # agrees
        ("zz", "accept", "ann", ""),  # not in this source
        ("bad1", "accept", "ann", ""),  # no decoded text: cannot be accepted
        ("chat1", "accept", "cy", ""),  # chat: messages rebuilt from the redacted text
    )
    new_acc, new_q, new_dec, stats = apply_overrides(accepted, quarantine, decisions, overrides, raw=raw)
    before = _ids(accepted) | _ids(quarantine)
    assert _ids(new_acc) | _ids(new_q) == before and not _ids(new_acc) & _ids(new_q)
    assert new_acc.num_rows + new_q.num_rows == len(before)
    assert new_acc.schema == DOCUMENT_SCHEMA and new_q.schema == QUARANTINE_SCHEMA
    assert {"q1", "chat1"} <= _ids(new_acc) and "a2" in _ids(new_q) and "bad1" in _ids(new_q)
    assert stats["overrides"] == 7
    assert stats["accepted_by_review"] == 2 and stats["rejected_by_review"] == 1 and stats["agreed"] == 2
    assert stats["unmatched"] == ["zz"]
    assert [n["doc_id"] for n in stats["not_applied"]] == ["bad1"]

    q1 = next(r for r in new_acc.to_pylist() if r["doc_id"] == "q1")
    assert q1["text"] == "held text 1" and q1["license"] == "CC-BY-4.0" and q1["attribution"] == "Jane Doe"
    chat = next(r for r in new_acc.to_pylist() if r["doc_id"] == "chat1")
    assert chat["text"] == "mail me at <EMAIL>\n\nok"
    assert [m["content"] for m in json.loads(chat["messages"])] == ["mail me at <EMAIL>", "ok"]
    assert "bob@example.com" not in chat["messages"]
    a2 = next(r for r in new_q.to_pylist() if r["doc_id"] == "a2")
    assert (a2["disposition"], a2["rule_id"], a2["reason"]) == ("rejected", "review.reject", "review by bo: spam")
    assert a2["text"].startswith("accepted text 2")

    added = new_dec.slice(decisions.num_rows).to_pylist()
    assert [(d["doc_id"], d["rule_id"], d["rule_version"], d["action"], d["reason"]) for d in added] == [
        ("a2", "review.reject", 1, "reject", "review by bo: spam"),
        ("chat1", "review.accept", 1, "flag", "review by cy"),
        ("q1", "review.accept", 1, "flag", "review by ann: fine text"),
    ]
    assert new_dec.slice(0, decisions.num_rows).equals(decisions)


def test_apply_without_overrides_changes_nothing(gate_out):
    accepted, quarantine, decisions, raw = gate_out
    new_acc, new_q, new_dec, stats = apply_overrides(
        accepted, quarantine, decisions, OVERRIDE_SCHEMA.empty_table(), raw=raw
    )
    assert new_acc.equals(accepted) and new_q.equals(quarantine) and new_dec.equals(decisions)
    assert stats == {
        "overrides": 0,
        "accepted_by_review": 0,
        "rejected_by_review": 0,
        "agreed": 0,
        "unmatched": [],
        "not_applied": [],
    }


def test_accept_without_raw_row_is_not_applied(gate_out):
    accepted, quarantine, decisions, raw = gate_out
    no_raw = raw.filter(pc.not_equal(raw.column("doc_id"), "q2"))
    new_acc, new_q, _, stats = apply_overrides(
        accepted, quarantine, decisions, _overrides(("q2", "accept", "ann", "")), raw=no_raw
    )
    assert "q2" in _ids(new_q) and "q2" not in _ids(new_acc)
    assert stats["not_applied"][0]["doc_id"] == "q2" and "raw documents" in stats["not_applied"][0]["reason"]


# -- agreement -----------------------------------------------------------------------------------------
def test_review_agreement_numbers(gate_out):
    accepted, quarantine, _, _ = gate_out
    overrides = _overrides(
        ("a0", "accept", "ann", ""),
        ("a1", "accept", "ann", ""),
        ("a2", "accept", "ann", ""),
        ("a3", "reject", "ann", ""),  # gate missed one of 4
        ("q0", "accept", "ann", ""),  # quality.short wrong on 2 of 3
        ("q1", "accept", "ann", ""),
        ("q2", "reject", "ann", ""),
        ("q4", "reject", "ann", ""),  # safety.toxic right on 1 of 1
        ("r1", "accept", "ann", ""),  # license.forbidden wrong on 1 of 2
        ("r2", "reject", "ann", ""),
        ("elsewhere", "accept", "ann", ""),  # ignored
    )
    table = review_agreement(overrides, accepted, quarantine).to_pylist()
    got = {
        r["rule_id"]: (
            r["reviewed"],
            r["agreed"],
            r["overturned"],
            r["estimated_false_positive_rate"],
            r["estimated_false_negative_rate"],
        )
        for r in table
    }
    assert [r["rule_id"] for r in table] == ["accepted", "license.forbidden", "quality.short", "safety.toxic"]
    assert got == {
        "accepted": (4, 3, 1, None, 0.25),
        "license.forbidden": (2, 1, 1, 0.5, None),
        "quality.short": (3, 1, 2, pytest.approx(2 / 3), None),
        "safety.toxic": (1, 1, 0, 0.0, None),
    }
    for r in table:
        rate = r["estimated_false_positive_rate"] if r["rule_id"] != "accepted" else r["estimated_false_negative_rate"]
        assert 0.0 <= r["rate_ci_low"] <= rate <= r["rate_ci_high"] <= 1.0
    toxic = next(r for r in table if r["rule_id"] == "safety.toxic")
    assert toxic["rate_ci_low"] == 0.0 and toxic["rate_ci_high"] == pytest.approx(0.7934, abs=1e-3)


def test_chat_redaction_across_a_message_boundary_cannot_be_aligned():
    from mixassets.engine.review import _redacted_messages

    messages = json.dumps([{"role": "user", "content": "my card 4111"}, {"role": "assistant", "content": "1111 ok"}])
    assert _redacted_messages(messages, "my card 4111\n\n1111 ok", "my card <CARD> ok") is None


def test_accept_takes_the_text_from_the_raw_row_not_the_quarantine_view(gate_out):
    """The quarantine holds a view (tagged hashes, or a preview of bytes); an accepted document is rebuilt from its
    clear raw row and redacted as the gate redacts accepted text."""
    accepted, quarantine, decisions, raw = gate_out
    clear = "write to carol@example.com about the harbour"
    raw = pa.concat_tables([raw, pa.Table.from_pylist([_doc("q9", clear)], schema=DOCUMENT_SCHEMA)])
    view = pa.Table.from_pylist(
        [_held("q9", "quality.short", "[EMAIL:sha256:0123456789ab] ...")], schema=QUARANTINE_SCHEMA
    )
    new_acc, _, _, stats = apply_overrides(
        accepted, pa.concat_tables([quarantine, view]), decisions, _overrides(("q9", "accept", "ann", "")), raw=raw
    )
    assert stats["accepted_by_review"] == 1
    q9 = next(r for r in new_acc.to_pylist() if r["doc_id"] == "q9")
    assert q9["text"] == "write to <EMAIL> about the harbour"


def test_agreement_table_from_summed_counts():
    from mixassets.engine.review import agreement_table

    rows = agreement_table({"quality.short": (4, 3), "accepted": (10, 9), "never": (0, 0)}).to_pylist()
    assert [r["rule_id"] for r in rows] == ["accepted", "quality.short"]
    accepted, rule = rows
    assert accepted["estimated_false_negative_rate"] == 0.1 and accepted["estimated_false_positive_rate"] is None
    assert rule["estimated_false_positive_rate"] == 0.25 and rule["overturned"] == 1
    assert rule["rate_ci_low"] < 0.25 < rule["rate_ci_high"]
