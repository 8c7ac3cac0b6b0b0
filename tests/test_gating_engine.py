from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixassets.engine.gating import GateResult, gate
from mixassets.engine.pii import EMAIL, IP_ADDRESS, PHONE, Hit, find_pii, redact
from mixassets.engine.readers import doc_id_for
from mixassets.engine.redaction import value_tag
from mixassets.engine.rules import DEFAULT_RULES, GateContext, Outcome, Rule
from mixassets.engine.vault import seal_read_failures
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CLEAN = "The quick brown fox jumps over the lazy dog near the river bank."


def _spec(**kw: Any) -> SourceSpec:
    return SourceSpec.model_validate({"id": "src", "path": "x", "format": "jsonl", "license": "MIT", **kw})


def _docs(rows: list[dict[str, Any]], source_id: str = "src") -> pa.Table:
    out = []
    for i, r in enumerate(rows):
        locator = r.get("locator", f"f.jsonl:{i + 1}")
        out.append(
            {
                "doc_id": doc_id_for(source_id, locator),
                "source_id": source_id,
                "locator": locator,
                "kind": r.get("kind", "text"),
                "text": r["text"],
                "messages": r.get("messages"),
                "license": r.get("license", "MIT"),
                "rights_tags": r.get("rights_tags", []),
                "domain": "general",
                "language": "en",
                "capture_time": T0,
            }
        )
    return pa.Table.from_pylist(out, schema=DOCUMENT_SCHEMA)


def _chat(*contents: str) -> dict[str, Any]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    return {"kind": "chat", "text": "\n\n".join(contents), "messages": json.dumps(msgs)}


def _check_invariants(res: GateResult, n: int) -> None:
    c = res.counts
    assert c["ingested"] == n == c["accepted"] + c["quarantined"] + c["rejected"]
    assert res.accepted.num_rows == c["accepted"]
    assert res.quarantine.num_rows == c["quarantined"] + c["rejected"]
    dispositions = res.quarantine.column("disposition").to_pylist()
    assert dispositions.count("rejected") == c["rejected"]
    assert res.accepted.schema.equals(DOCUMENT_SCHEMA)
    assert res.quarantine.schema.equals(QUARANTINE_SCHEMA)
    assert res.decisions.schema.equals(DECISION_SCHEMA)


# -- each rule fires on a crafted document and not on a clean one -----------------------------------
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("encoding.undecodable", {"text": "broken \ufffd\ufffd text here with a few words"}, {}, "quarantined"),
    ("encoding.undecodable", {"text": "a bell \x07 rings in this sentence of words"}, {}, "quarantined"),
    ("quality.empty", {"text": "   \n\t "}, {}, "rejected"),
    ("quality.too_short", {"text": "only three words"}, {}, "rejected"),
    ("quality.too_long", {"text": "word " * 40}, {"gating": {"max_chars": 100}}, "quarantined"),
    ("rights.unknown_license", {"text": CLEAN, "license": "Made-Up-1.0"}, {}, "quarantined"),
    ("rights.unknown_license", {"text": CLEAN, "license": None}, {}, "quarantined"),
    ("rights.unknown_license", {"text": CLEAN, "license": "MIT AND ("}, {}, "quarantined"),
    (
        "pii.email",
        {"text": CLEAN + " Write to jane.doe@example.com today."},
        {"pii_policy": "quarantine"},
        "quarantined",
    ),
    ("record.malformed_messages", {"kind": "chat", "text": "hi", "messages": "[{"}, {}, "quarantined"),
    (  # nothing to train on: no assistant turn
        "record.malformed_messages",
        {"kind": "chat", "text": CLEAN, "messages": json.dumps([{"role": "user", "content": CLEAN}])},
        {},
        "quarantined",
    ),
    (  # a role no chat template renders
        "record.malformed_messages",
        {
            "kind": "chat",
            "text": CLEAN + "\n\nok",
            "messages": json.dumps([{"role": "narrator", "content": CLEAN}, {"role": "assistant", "content": "ok"}]),
        },
        {},
        "quarantined",
    ),
]


@pytest.mark.parametrize(("rule_id", "doc", "spec_kw", "disposition"), CASES)
def test_rule_fires_on_crafted_doc_and_not_on_clean(
    rule_id: str, doc: dict[str, Any], spec_kw: dict[str, Any], disposition: str
) -> None:
    res = gate(_docs([{"text": CLEAN}, doc]), _spec(**spec_kw))
    _check_invariants(res, 2)
    assert res.accepted.column("text").to_pylist() == [CLEAN]
    q = res.quarantine.to_pylist()
    assert [(r["rule_id"], r["disposition"]) for r in q] == [(rule_id, disposition)]
    assert q[0]["doc_id"] == doc_id_for("src", "f.jsonl:2")
    fired_on = set(
        zip(res.decisions.column("doc_id").to_pylist(), res.decisions.column("rule_id").to_pylist(), strict=True)
    )
    assert (doc_id_for("src", "f.jsonl:2"), rule_id) in fired_on
    assert not any(d == doc_id_for("src", "f.jsonl:1") for d, _ in fired_on)
    assert res.counts[f"rule.{rule_id}"] == 1


def test_too_long_is_quarantined_not_truncated() -> None:
    long_text = "word " * 40
    res = gate(_docs([{"text": long_text}]), _spec(gating={"max_chars": 100}))
    assert res.quarantine.column("text").to_pylist() == [long_text]
    assert "200 characters > max_chars 100" in res.quarantine.column("reason")[0].as_py()


def test_empty_doc_is_counted_once_by_the_first_blocking_rule() -> None:
    res = gate(_docs([{"text": ""}]), _spec())
    assert res.counts["rejected"] == 1 and res.counts["rule.quality.empty"] == 1
    assert "rule.quality.too_short" not in res.counts
    assert res.decisions.column("rule_id").to_pylist() == ["quality.empty"]


def test_exact_dedupe_keeps_first_and_names_it() -> None:
    rows = [{"text": CLEAN}, {"text": "  THE quick   brown fox jumps over the lazy dog near the river bank.\n"}]
    res = gate(_docs(rows), _spec())
    _check_invariants(res, 2)
    kept = doc_id_for("src", "f.jsonl:1")
    assert res.accepted.column("doc_id").to_pylist() == [kept]
    q = res.quarantine.to_pylist()[0]
    assert q["rule_id"] == "dedupe.exact_in_source" and q["disposition"] == "rejected" and kept in q["reason"]


def test_duplicate_of_a_blocked_doc_is_not_a_duplicate() -> None:
    rows = [{"text": CLEAN, "license": "Nope-1.0"}, {"text": CLEAN}]
    res = gate(_docs(rows), _spec())
    assert res.accepted.column("doc_id").to_pylist() == [doc_id_for("src", "f.jsonl:2")]


def test_forbidden_license_tags_and_rights_tags() -> None:
    rows = [
        {"text": CLEAN + " one", "license": "CC-BY-NC-4.0"},
        {"text": CLEAN + " two", "license": "CC-BY-NC-4.0 OR MIT"},  # the licensee may pick MIT
        {"text": CLEAN + " three", "rights_tags": ["scraped-no-consent"]},
        {"text": CLEAN + " four", "license": "CC-BY-NC-4.0 AND MIT"},
    ]
    res = gate(_docs(rows), _spec(), forbidden_tags={"NON_COMMERCIAL", "scraped-no-consent"})
    _check_invariants(res, 4)
    assert res.accepted.column("text").to_pylist() == [CLEAN + " two"]
    assert set(res.quarantine.column("rule_id").to_pylist()) == {"rights.forbidden_tag"}
    assert res.counts["rule.rights.forbidden_tag"] == 3

    assert gate(_docs(rows), _spec()).counts["accepted"] == 4  # nothing forbidden, nothing held


# -- PII ---------------------------------------------------------------------------------------------
PII_TEXT = (
    "Contact jane.doe@example.com or call (415) 555-2671 from host 192.168.10.20, "
    "or +44 20 7946 0958; python 3.11.7 is fine."
)
PII_VALUES = ["jane.doe@example.com", "(415) 555-2671", "192.168.10.20", "+44 20 7946 0958"]


def test_redaction_replaces_values_and_logs_spans_without_values() -> None:
    res = gate(_docs([{"text": PII_TEXT}]), _spec())
    _check_invariants(res, 1)
    out = res.accepted.column("text")[0].as_py()
    assert out == ("Contact <EMAIL> or call <PHONE> from host <IP_ADDRESS>, or <PHONE>; python 3.11.7 is fine.")
    dec = res.decisions.to_pylist()
    assert [d["reason"] for d in dec] == [EMAIL, PHONE, IP_ADDRESS, PHONE]
    assert [PII_TEXT[d["span_start"] : d["span_end"]] for d in dec] == PII_VALUES
    assert {d["action"] for d in dec} == {"redact"}
    assert {d["rule_id"] for d in dec} == {"pii.email", "pii.phone", "pii.ip_address"}
    logged = json.dumps(dec, default=str)
    assert not any(v in logged for v in PII_VALUES)
    c = res.counts
    assert (c["redacted_docs"], c["pii_hits_email"], c["pii_hits_phone"], c["pii_hits_ip_address"]) == (1, 1, 2, 1)


def test_pii_quarantine_policy_keeps_a_redacted_copy_for_review() -> None:
    res = gate(_docs([{"text": PII_TEXT}, {"text": CLEAN}]), _spec(pii_policy="quarantine"))
    _check_invariants(res, 2)
    assert res.accepted.column("text").to_pylist() == [CLEAN]
    q = res.quarantine.to_pylist()[0]
    assert q["disposition"] == "quarantined" and q["rule_id"] == "pii.email"
    assert "PHONE" in q["reason"] and not any(v in q["text"] for v in PII_VALUES)
    assert res.counts["redacted_docs"] == 0


def test_quarantine_text_never_holds_pii_even_when_held_for_another_reason() -> None:
    res = gate(_docs([{"text": "mail me: a.b@example.org"}]), _spec())
    q = res.quarantine.to_pylist()[0]
    assert q["rule_id"] == "quality.too_short" and q["text"] == f"mail me: {value_tag('EMAIL', 'a.b@example.org')}"


def test_chat_messages_are_redacted_too() -> None:
    doc = _chat("My email is bob@example.net, reach me there please.", "Noted, I will call 415-555-2671 then.")
    res = gate(_docs([doc]), _spec())
    _check_invariants(res, 1)
    row = res.accepted.to_pylist()[0]
    msgs = json.loads(row["messages"])
    assert [m["content"] for m in msgs] == [
        "My email is <EMAIL>, reach me there please.",
        "Noted, I will call <PHONE> then.",
    ]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert row["text"] == "\n\n".join(m["content"] for m in msgs)
    spans = [(d["span_start"], d["span_end"]) for d in res.decisions.to_pylist()]
    assert [doc["text"][s:e] for s, e in spans] == ["bob@example.net", "415-555-2671"]


def test_chat_whose_text_disagrees_with_messages_is_quarantined() -> None:
    doc = _chat("one message with enough words here", "and another one with words")
    doc["text"] = "something else entirely with enough words"
    res = gate(_docs([doc]), _spec())
    assert res.quarantine.column("rule_id").to_pylist() == ["record.malformed_messages"]


# -- conservation ------------------------------------------------------------------------------------
DOC_KINDS = st.sampled_from(
    ["clean", "short", "empty", "fffd", "control", "long", "pii", "unknown_license", "nc", "dup", "chat", "bad_chat"]
)


def _make(kind: str, i: int) -> dict[str, Any]:
    body = f"document number {i} has a handful of ordinary words in it"
    return {
        "clean": {"text": body},
        "short": {"text": f"tiny {i}"},
        "empty": {"text": " "},
        "fffd": {"text": body + "\ufffd" * 5},
        "control": {"text": body + "\x00"},
        "long": {"text": body + " padding" * 40},
        "pii": {"text": body + f" mail user{i}@example.com"},
        "unknown_license": {"text": body, "license": "Whatever-2.0"},
        "nc": {"text": body, "license": "CC-BY-NC-4.0"},
        "dup": {"text": "a shared duplicated body of text that repeats"},
        "chat": _chat(body, f"reply {i} from 10.0.0.{i % 250} ok"),
        "bad_chat": {"kind": "chat", "text": body, "messages": json.dumps([{"role": "user"}])},
    }[kind]


@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(DOC_KINDS, max_size=30), policy=st.sampled_from(["redact", "quarantine"]))
def test_conservation_on_random_mixes(kinds: list[str], policy: str) -> None:
    docs = _docs([_make(k, i) for i, k in enumerate(kinds)])
    res = gate(docs, _spec(pii_policy=policy, gating={"max_chars": 200}), forbidden_tags={"NON_COMMERCIAL"})
    _check_invariants(res, len(kinds))
    out_ids = res.accepted.column("doc_id").to_pylist() + res.quarantine.column("doc_id").to_pylist()
    assert sorted(out_ids) == sorted(docs.column("doc_id").to_pylist())  # each document exactly once
    for q in res.quarantine.to_pylist():  # the holding rule is in the decision log for that doc
        assert any(
            d["doc_id"] == q["doc_id"] and d["rule_id"] == q["rule_id"] and d["action"] in ("reject", "quarantine")
            for d in res.decisions.to_pylist()
        )
    expected_clean = kinds.count("clean")
    accepted_texts = res.accepted.column("text").to_pylist()
    assert sum(t.startswith("document number") and "<" not in t for t in accepted_texts) == expected_clean
    assert min(kinds.count("dup"), 1) == sum(t.startswith("a shared duplicated") for t in accepted_texts)


# -- runner contract ---------------------------------------------------------------------------------
class _Broken(Rule):
    id = "test.broken"
    version = 3

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        return []


class _FlagAll(Rule):
    id = "test.flag"
    version = 7

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        return [[Outcome("flag", "looked at it")] for _ in range(docs.num_rows)]


def test_rule_returning_wrong_number_of_outcomes_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"rule test\.broken returned 0 outcomes for 1 documents"):
        gate(_docs([{"text": CLEAN}]), _spec(), rules=[_Broken()])


class _IdleBroken(_Broken):
    """Broken if it were run, but idle: the runner must skip it."""

    id = "test.idle"

    def idle(self, ctx: GateContext) -> bool:
        return True


def test_an_idle_rule_is_not_run() -> None:
    res = gate(_docs([{"text": CLEAN}]), _spec(), rules=[_IdleBroken(), *DEFAULT_RULES])
    assert res.counts["accepted"] == 1 and "rule.test.idle" not in res.counts
    classifier = next(r for r in DEFAULT_RULES if r.id == "safety.classifier")
    assert classifier.idle(GateContext(_spec()))  # no classifier configured (tests/test_safety.py runs one)


def test_flags_are_logged_with_rule_version_but_do_not_block() -> None:
    res = gate(_docs([{"text": CLEAN}, {"text": "x"}]), _spec(), rules=[_FlagAll(), *DEFAULT_RULES])
    assert res.counts["accepted"] == 1 and res.counts["rule.test.flag"] == 2
    flags = [d for d in res.decisions.to_pylist() if d["rule_id"] == "test.flag"]
    assert [d["rule_version"] for d in flags] == [7, 7]


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        gate(pa.table({"text": ["x"]}), _spec())


def test_empty_input() -> None:
    res = gate(DOCUMENT_SCHEMA.empty_table(), _spec())
    _check_invariants(res, 0)


# -- detectors ---------------------------------------------------------------------------------------
def _found(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start : h.end]) for h in find_pii(text)]


def test_ip_detector_skips_versions_and_longer_dotted_runs() -> None:
    assert _found("python 3.11.7 and oid 1.3.6.1.4.1 and 999.1.1.1") == []
    assert _found("ping 1.2.3.4.") == [(IP_ADDRESS, "1.2.3.4")]
    assert _found("v6 2001:db8::8a2e:370:7334 here") == [(IP_ADDRESS, "2001:db8::8a2e:370:7334")]
    assert _found("slice a[1::2] and std::vector and 12:30:45") == []


def test_phone_and_email_detectors() -> None:
    assert _found("call +33 1 42 68 53 00 now") == [(PHONE, "+33 1 42 68 53 00")]
    assert _found("call 415.555.2671") == [(PHONE, "415.555.2671")]
    assert _found("x.y+tag@sub.example.co.uk wrote") == [(EMAIL, "x.y+tag@sub.example.co.uk")]
    assert _found("id 1234567890 on 2024-01-02, user@localhost") == []


def test_overlapping_hits_resolved_and_redacted() -> None:
    text = "at 2001:db8::ffff:10.0.0.1 ok"
    assert _found(text) == [(IP_ADDRESS, "2001:db8::ffff:10.0.0.1")]
    assert redact(text, find_pii(text)) == "at <IP_ADDRESS> ok"
    with pytest.raises(ValueError, match="overlapping"):
        redact("abcdef", [Hit(EMAIL, 0, 4), Hit(PHONE, 2, 5)])


def test_reader_output_flows_through_the_gate(tmp_path: Any) -> None:
    from mixassets.engine.readers import read_source

    f = tmp_path / "data" / "c.jsonl"
    f.parent.mkdir()
    good = {
        "messages": [
            {"role": "user", "content": "reach me at ann@example.org about the plan"},
            {"role": "assistant", "content": "Noted."},
        ]
    }
    f.write_bytes(json.dumps(good).encode() + b"\n{broken\n" + json.dumps({"messages": [{"role": "x"}]}).encode())
    docs, unread = read_source(_spec(kind="chat"), [str(f)], base=str(tmp_path), capture_time=T0)
    res = gate(docs, _spec(kind="chat"))
    _check_invariants(res, docs.num_rows)
    assert (docs.num_rows, unread.num_rows) == (1, 2)
    assert json.loads(res.accepted.column("messages")[0].as_py())[0]["content"] == "reach me at <EMAIL> about the plan"
    # The reader's rejects are sealed first (clear bytes to the vault); the view stacks with the gate's quarantine.
    combined = pa.concat_tables([seal_read_failures(unread)[0], res.quarantine])
    assert combined.schema.equals(QUARANTINE_SCHEMA) and combined.num_rows == 2


def test_scored_rules_log_the_measure_they_compared() -> None:
    """A threshold rule's decision row carries the number it compared, so a threshold can be re-tuned from the
    decision log; a rule without a measure (PII) leaves the score null."""
    long_text = "word " * 400
    docs = _docs(
        [
            {"text": "tiny text"},
            {"text": long_text},
            {"text": "Write to ana@example.org about the quick brown fox and the lazy dog by the river."},
            # "click here" covers 30 x 9 of the 549 characters of the words (the share the rule compared).
            {"text": "Buy cheap widgets today and save. " + "click here to buy now " * 30 + "Sold by the sea."},
        ]
    )
    res = gate(docs, _spec(gating={"min_words": 5, "max_chars": 1000}))
    rows = {r["rule_id"]: r for r in res.decisions.to_pylist()}
    assert rows["quality.too_short"]["score"] == 2
    assert rows["quality.too_long"]["score"] == len(long_text)
    assert rows["pii.email"]["score"] is None
    assert rows["quality.top_ngram"]["reason"].startswith("top 2-gram 'click here' x30")
    assert rows["quality.top_ngram"]["score"] == 30 * 9 / 549


class _SeesCollector(Rule):
    id = "test.sees_collector"
    version = 1
    seen: list[bool] = []

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        import gc

        self.seen.append(gc.isenabled())
        return [[] for _ in range(docs.num_rows)]


def test_the_cycle_collector_is_paused_during_the_gate_and_left_as_it_was() -> None:
    import gc

    rule = _SeesCollector()
    assert gc.isenabled()
    gate(_docs([{"text": CLEAN}]), _spec(), rules=[rule])
    with pytest.raises(RuntimeError):
        gate(_docs([{"text": CLEAN}]), _spec(), rules=[rule, _Broken()])
    assert gc.isenabled() and rule.seen == [False, False]
    gc.disable()
    try:
        gate(_docs([{"text": CLEAN}]), _spec(), rules=[rule])
        assert not gc.isenabled()  # a caller that paused it keeps it paused
    finally:
        gc.enable()


class _HoldMarked(Rule):
    id = "test.hold_marked"
    version = 1
    per_document = True

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        return [[Outcome("quarantine", "marked")] if "HOLD" in t else [] for t in docs.column("text").to_pylist()]


class _Counts(Rule):
    version = 1

    def __init__(self, rule_id: str, per_document: bool) -> None:
        self.id, self.per_document, self.shown = rule_id, per_document, []  # type: ignore[misc]

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        self.shown.append(docs.num_rows)
        return [[Outcome("flag", "seen")] for _ in range(docs.num_rows)]


@pytest.mark.parametrize("held", [1, 3])
def test_held_rows_are_shown_only_to_per_document_rules_and_only_while_few(held: int) -> None:
    """A per-document rule may be shown the last batch with a few rows held since it was built (at most one in
    16): its outcomes for them are dropped. Any other rule, or more held rows, gets a batch without them."""
    docs = _docs([{"text": f"{'HOLD ' if i < held else ''}{CLEAN} {i}"} for i in range(40)])
    per_doc, whole = _Counts("test.per_doc", True), _Counts("test.whole", False)
    res = gate(docs, _spec(), rules=[_HoldMarked(), per_doc, whole])
    assert per_doc.shown == [40 if held == 1 else 40 - held] and whole.shown == [40 - held]
    assert res.counts["rule.test.per_doc"] == res.counts["rule.test.whole"] == 40 - held
    assert res.counts["quarantined"] == held
    logged = [d["doc_id"] for d in res.decisions.to_pylist() if d["rule_id"] == "test.per_doc"]
    assert logged == res.accepted.column("doc_id").to_pylist()
