"""Boilerplate stripping: repeated lines leave each document, with their spans logged in original offsets."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from mixassets.engine.gating import _apply_edits, _span_to_original, gate
from mixassets.engine.readers import doc_id_for
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DOCUMENT_SCHEMA
from tests.helpers import NEWS_BODIES, T0

HEADER = "Acme Daily News   -   all rights reserved"
FOOTER = "Subscribe to our newsletter for more stories"
BODIES = NEWS_BODIES[:6]


def _spec(**kw: Any) -> SourceSpec:
    return SourceSpec.model_validate({"id": "src", "path": "x", "format": "jsonl", "license": "MIT", **kw})


def _docs(texts: list[str], kind: str = "text") -> pa.Table:
    rows = []
    for i, t in enumerate(texts):
        messages = (
            json.dumps(
                [{"role": "user" if i % 2 == 0 else "assistant", "content": p} for i, p in enumerate(t.split("\n\n"))]
            )
            if kind == "chat"
            else None
        )
        rows.append({"doc_id": doc_id_for("src", f"f:{i}"), "source_id": "src", "locator": f"f:{i}", "kind": kind,
                     "text": t, "messages": messages, "license": "MIT", "rights_tags": [], "domain": "general",
                     "language": "en", "capture_time": T0})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def _page(body: str, header: str = HEADER) -> str:
    return f"{header}\n{body}\n  {FOOTER}  \n"  # the footer is indented: matching is whitespace-normalised


def test_repeated_lines_are_stripped_and_logged_with_original_spans() -> None:
    texts = [_page(b) for b in BODIES]
    res = gate(_docs(texts), _spec())
    assert res.counts["accepted"] == 6 and res.counts["stripped_lines"] == 12 and res.counts["stripped_docs"] == 6
    assert res.accepted.column("text").to_pylist() == [b + "\n" for b in BODIES]
    strips = [d for d in res.decisions.to_pylist() if d["action"] == "strip"]
    assert len(strips) == 12 and {d["rule_id"] for d in strips} == {"boilerplate.repeated_line"}
    by_doc = {doc_id_for("src", f"f:{i}"): t for i, t in enumerate(texts)}
    sliced = [by_doc[d["doc_id"]][d["span_start"] : d["span_end"]] for d in strips]
    assert sliced == [HEADER + "\n", f"  {FOOTER}  \n"] * 6
    assert all(d["reason"].startswith("line in 6 of 6 distinct documents") for d in strips)
    assert res.counts["rule.boilerplate.repeated_line"] == 6


def test_thresholds_come_from_config() -> None:
    texts = [_page(b) for b in BODIES]
    assert gate(_docs(texts), _spec(gating={"boilerplate": {"min_docs": 7}})).counts["stripped_lines"] == 0
    assert gate(_docs(texts), _spec(gating={"boilerplate": {"enabled": False}})).counts["stripped_lines"] == 0
    assert gate(_docs(texts), _spec(gating={"boilerplate": {"min_line_chars": 100}})).counts["stripped_lines"] == 0
    # the header in 6 of 8 docs (0.75) and the footer in all 8: a fraction of 0.8 strips only the footer
    extra = [_page(b.upper(), header="A different header line for this page") for b in BODIES[:2]]
    res = gate(_docs(texts + extra), _spec(gating={"boilerplate": {"min_doc_fraction": 0.8}}))
    assert res.counts["stripped_lines"] == 8
    assert all(HEADER in t for t in res.accepted.column("text").to_pylist()[:6])


def test_short_lines_are_never_boilerplate() -> None:
    texts = [f"}}\n{b}\n--" for b in BODIES]
    res = gate(_docs(texts), _spec())
    assert res.counts["stripped_lines"] == 0


def test_a_page_of_only_boilerplate_is_judged_by_length_rules_after_stripping() -> None:
    texts = [_page(b) for b in BODIES] + [f"{HEADER}\n{FOOTER}\n"]
    res = gate(_docs(texts), _spec())
    q = res.quarantine.to_pylist()
    assert [(r["rule_id"], r["disposition"]) for r in q] == [("quality.empty", "rejected")]
    assert q[0]["text"] == f"{HEADER}\n{FOOTER}\n"  # review sees the original text
    short = [_page(b) for b in BODIES] + [f"{HEADER}\nbrief note\n{FOOTER}"]
    assert gate(_docs(short), _spec()).quarantine.column("rule_id").to_pylist() == ["quality.too_short"]


def test_pii_after_stripping_is_logged_and_redacted_in_original_offsets() -> None:
    texts = [_page(b) for b in BODIES]
    texts[2] = _page(BODIES[2] + " Write to editor@acme.example for tips.")
    res = gate(_docs(texts), _spec())
    pii = [d for d in res.decisions.to_pylist() if d["rule_id"] == "pii.email"]
    assert len(pii) == 1 and texts[2][pii[0]["span_start"] : pii[0]["span_end"]] == "editor@acme.example"
    assert res.accepted.column("text")[2].as_py() == BODIES[2] + " Write to <EMAIL> for tips.\n"


def test_exact_duplicates_are_found_after_stripping() -> None:
    texts = [_page(b) for b in BODIES] + [f"{HEADER}\n{BODIES[0]}\n"]
    res = gate(_docs(texts), _spec())
    assert res.quarantine.column("rule_id").to_pylist() == ["dedupe.exact_in_source"]


def test_copies_of_one_document_are_duplicates_not_boilerplate() -> None:
    res = gate(_docs([_page(BODIES[0])] * 6), _spec())
    assert res.counts["stripped_lines"] == 0 and res.counts["accepted"] == 1
    assert set(res.quarantine.column("rule_id").to_pylist()) == {"dedupe.exact_in_source"}


def test_chat_documents_are_left_alone() -> None:
    chats = [f"{HEADER}\n\n{b}" for b in BODIES]
    res = gate(_docs(chats, kind="chat"), _spec())
    assert res.counts["stripped_lines"] == 0 and res.accepted.column("text").to_pylist() == chats


def test_overlapping_edits_merge_and_a_placeholder_beats_a_strip() -> None:
    text = "aaa\nbbb\nccc"
    assert _apply_edits(text, [(4, 8, ""), (2, 6, "<EMAIL>")]) == "aa<EMAIL>ccc"
    assert _apply_edits(text, [(0, 4, ""), (8, 11, "<X>")]) == "bbb\n<X>"
    removed = [(0, 4), (8, 12)]  # stripped "aaa\n" and "ccc\n" from "aaa\nbbb\nccc\nddd"
    assert _span_to_original((0, 3), removed) == (4, 7)
    assert _span_to_original((4, 7), removed) == (12, 15)
    assert _span_to_original((2, 5), removed) == (6, 13)  # straddles the second strip: the union is covered
