"""The streaming gate gives exactly what ``gate()`` gives on the concatenated input, whatever the batch size."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mixassets.engine.gating import conform_documents, gate
from mixassets.engine.gating_stream import ParquetGateSink, gate_stream, parquet_batches
from mixassets.engine.readers import doc_id_for
from mixassets.engine.review import OVERRIDE_SCHEMA, apply_overrides, review_agreement
from mixassets.engine.review_stream import ReviewingSink
from mixassets.engine.rules import DEFAULT_RULES, GateContext, Outcome, Rule, boilerplate
from mixtrain.config.data import SourceSpec
from mixtrain.durable import is_temp_name
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA
from tests.helpers import NEWS_BODIES, T0

HEADER = "Acme Daily News  -  all rights reserved"
FOOTER = "Subscribe to our newsletter for more stories"
LEGACY = "Legacy banner carried by the restricted pages"
BODIES = NEWS_BODIES
PLAIN = [
    "Researchers measured the water temperature of the lake every morning for a year.",
    "The choir rehearses in the old church hall on Tuesday and Thursday evenings.",
    "Our neighbour repaired the fence and painted the garden shed a bright green.",
]


def _spec(**kw: Any) -> SourceSpec:
    return SourceSpec.model_validate({"id": "src", "path": "x", "format": "jsonl", "license": "MIT", **kw})


def _page(body: str) -> str:
    return f"{HEADER}\n{body}\n  {FOOTER}  \n"


def _chat(*contents: str) -> dict[str, Any]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    return {"kind": "chat", "text": "\n\n".join(contents), "messages": json.dumps(msgs)}


def _corpus() -> pa.Table:
    """Boilerplate spread over the whole source, duplicates far from their originals, every disposition."""
    rows: list[dict[str, Any]] = [{"text": _page(b)} for b in BODIES[:4]]
    rows += [
        {"text": f"{LEGACY}\n{PLAIN[0]}\n", "license": "Made-Up-1.0"},  # held before boilerplate runs
        {"text": f"{LEGACY}\n{PLAIN[1]}\n", "license": "Made-Up-1.0"},
        {"text": f"{LEGACY}\n{PLAIN[2]}\n", "license": "Made-Up-1.0"},
        {"text": f"{LEGACY}\n{BODIES[5]} Again.\n"},
        {"text": PLAIN[0] + " Contact jane.doe@example.com for details."},
        _chat("Hello! How can I help you today?", "I would like to know when the museum opens."),
        _chat("Hello! How can I help you today?", "Where can I buy a ticket for the night ferry?"),
        {"text": "only three words"},
        {"text": f"{HEADER}\n  {FOOTER}\n"},  # nothing but boilerplate: empty once stripped
        {"text": "broken \ufffd\ufffd text here with quite a few more words"},
    ]
    rows += [{"text": _page(b)} for b in BODIES[4:]]
    rows += [
        {"text": f"{LEGACY}\n{BODIES[6]} Once more.\n"},
        {"text": _page(BODIES[0].upper())},  # a re-cased copy of the first page
        {"text": BODIES[2] + "\n"},  # the third page without its banners: a duplicate once they are stripped
        {"text": "  " + PLAIN[1].upper() + "  "},
        {"text": _page(BODIES[7])},  # an exact copy of an earlier page, in the same batch for most sizes
        {"text": PLAIN[1]},  # the original of the copy above came later: this one is the duplicate
        _chat("Hello! How can I help you today?", "I would like to know when the museum opens."),
    ]
    out = []
    for i, r in enumerate(rows):
        locator = f"f.jsonl:{i + 1}"
        out.append({"doc_id": doc_id_for("src", locator), "source_id": "src", "locator": locator,
                    "kind": r.get("kind", "text"), "text": r["text"], "messages": r.get("messages"),
                    "license": r.get("license", "MIT"), "rights_tags": [], "domain": "general",
                    "language": "en", "capture_time": T0})  # fmt: skip
    return pa.Table.from_pylist(out, schema=DOCUMENT_SCHEMA)


class _ListSink:
    def __init__(self) -> None:
        self.parts: list[tuple[pa.Table, pa.Table, pa.Table]] = []

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        self.parts.append((accepted, quarantine, decisions))

    def table(self, which: int, schema: pa.Schema) -> pa.Table:
        return pa.concat_tables([p[which] for p in self.parts]) if self.parts else schema.empty_table()


def _batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def _sorted_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def _without_timings(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts.items() if not k.startswith("time_s.")}


def test_corpus_exercises_the_cross_document_rules() -> None:
    res = gate(_corpus(), _spec())
    c = res.counts
    assert c["rule.boilerplate.repeated_line"] == 11 and c["rule.dedupe.exact_in_source"] == 5
    assert c["rule.rights.unknown_license"] == 3 and c["rule.quality.empty"] == 1 and c["redacted_docs"] == 1
    # The legacy banner is in five documents, but three were held before boilerplate ran: it is not boilerplate.
    assert sum(LEGACY in t for t in res.accepted.column("text").to_pylist()) == 2
    assert not any(HEADER in t for t in res.accepted.column("text").to_pylist())


@pytest.mark.parametrize("size", [1, 2, 5, 7, 100])
def test_stream_equals_whole_table_gate(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Merge the line counts every few hashes so the bulk merge is exercised, not only the final one.
    monkeypatch.setattr(boilerplate, "_MERGE_EVERY", 3)
    monkeypatch.setattr(boilerplate, "_SEEN_MERGE_MIN", 2)
    docs, spec = _corpus(), _spec()
    expected = gate(docs, spec)
    sink = _ListSink()
    counts = gate_stream(lambda: _batches(docs, size), spec, sink=sink)

    accepted = sink.table(0, DOCUMENT_SCHEMA)
    quarantine = sink.table(1, QUARANTINE_SCHEMA)
    decisions = sink.table(2, DECISION_SCHEMA)
    assert accepted.equals(expected.accepted)
    assert quarantine.equals(expected.quarantine)
    # gate() logs rule by rule over the whole table, the stream within each batch: same rows, other order.
    assert _sorted_rows(decisions) == _sorted_rows(expected.decisions)
    assert _without_timings(counts) == _without_timings(expected.counts)
    assert list(counts) == list(expected.counts)
    assert len(sink.parts) == -(-docs.num_rows // size)


def test_stream_conserves_every_document() -> None:
    docs = _corpus()
    sink = _ListSink()
    counts = gate_stream(lambda: _batches(docs, 3), _spec(), sink=sink)
    assert counts["ingested"] == docs.num_rows == counts["accepted"] + counts["quarantined"] + counts["rejected"]
    accepted_ids = sink.table(0, DOCUMENT_SCHEMA).column("doc_id").to_pylist()
    held_ids = sink.table(1, QUARANTINE_SCHEMA).column("doc_id").to_pylist()
    assert sorted(accepted_ids + held_ids) == sorted(docs.column("doc_id").to_pylist())
    assert counts["accepted_rate"] == round(len(accepted_ids) / docs.num_rows, 6)


def test_stream_reports_the_rows_it_gated_once_per_batch() -> None:
    """The default rules include prepared ones (boilerplate, exact duplicates) that read the stream before it is
    gated; progress counts the gating pass only, so it ends at the number of documents, not a multiple."""
    docs = _corpus()
    told: list[int] = []
    gate_stream(lambda: _batches(docs, 3), _spec(), sink=_ListSink(), progress=told.append)
    assert any(rule.needs_prepare for rule in DEFAULT_RULES)
    assert sum(told) == docs.num_rows and max(told) <= 3 and len(told) == -(-docs.num_rows // 3)


class _CountBatches(Rule):
    """Records the size of every table it is shown (after the rules before it), to see what the passes see."""

    id = "test.count_batches"
    version = 1
    needs_prepare = True

    def __init__(self) -> None:
        self.prepared_on: list[int] = []
        self.evaluated_on: list[int] = []

    def prepare(self, batches: Any, ctx: GateContext) -> int:
        self.prepared_on = [b.num_rows for b in batches]
        return sum(self.prepared_on)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[list[Outcome]]:
        self.evaluated_on.append(docs.num_rows)
        total = ctx.prepared.get(self.id, docs.num_rows)
        return [[Outcome("flag", f"one of {total}")] for _ in range(docs.num_rows)]


def test_prepare_sees_each_batch_as_the_rule_will_be_shown_it() -> None:
    docs = _corpus()
    rule = _CountBatches()
    rules = [r for r in DEFAULT_RULES if r.id.startswith("rights.")] + [rule]
    sink = _ListSink()
    gate_stream(lambda: _batches(docs, 4), _spec(), rules=rules, sink=sink)
    assert rule.prepared_on == rule.evaluated_on[: len(rule.prepared_on)]
    assert sum(rule.prepared_on) == docs.num_rows - 3  # the three unknown-license pages never reach it
    reasons = set(sink.table(2, DECISION_SCHEMA).column("reason").to_pylist()) - {None}
    assert f"one of {docs.num_rows - 3}" in reasons


def test_parquet_sink_is_atomic(tmp_path: Path) -> None:
    docs = _corpus()
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(docs, corpus)
    out = tmp_path / "out"
    paths = [out / "accepted.parquet", out / "quarantine.parquet", out / "decisions.parquet"]
    seen_while_running: list[bool] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in parquet_batches(corpus, batch_size=6)():
            seen_while_running.append(any(p.exists() for p in paths))
            yield batch

    with ParquetGateSink(*paths) as sink:
        counts = gate_stream(batches, _spec(), sink=sink)
        assert not any(p.exists() for p in paths)
        assert len([p for p in out.iterdir() if is_temp_name(p.name)]) == 3
    assert seen_while_running and not any(seen_while_running)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    expected = gate(docs, _spec())
    assert pq.read_table(paths[0]).equals(expected.accepted)
    assert pq.read_table(paths[1]).equals(expected.quarantine)
    assert pq.read_table(paths[2]).num_rows == expected.decisions.num_rows
    assert counts["accepted"] == expected.counts["accepted"]


def test_parquet_sink_failure_leaves_previous_outputs(tmp_path: Path) -> None:
    paths = [tmp_path / "a.parquet", tmp_path / "q.parquet", tmp_path / "d.parquet"]
    paths[0].write_bytes(b"previous run")
    docs = _corpus()

    def failing() -> Iterator[pa.Table]:
        yield docs.slice(0, 5)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"), ParquetGateSink(*paths) as sink:
        gate_stream(failing, _spec(), sink=sink)
    assert paths[0].read_bytes() == b"previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_empty_stream(tmp_path: Path) -> None:
    paths = [tmp_path / "a.parquet", tmp_path / "q.parquet", tmp_path / "d.parquet"]
    with ParquetGateSink(*paths) as sink:
        counts = gate_stream(lambda: iter(()), _spec(), sink=sink)
    expected = gate(DOCUMENT_SCHEMA.empty_table(), _spec()).counts
    assert counts == expected
    for path, schema in zip(paths, (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA), strict=True):
        table = pq.read_table(path)
        assert table.num_rows == 0 and table.schema.equals(schema)


def test_bad_batch_is_named() -> None:
    with pytest.raises(ValueError, match=r"document batch 1: .*lacks columns"):
        gate_stream(lambda: iter([_corpus().slice(0, 2), pa.table({"text": ["x"]})]), _spec(), sink=_ListSink())


@pytest.mark.parametrize("size", [1, 3, 100])
def test_review_verdicts_on_a_stream_equal_the_whole_table_path(size: int) -> None:
    docs, spec = _corpus(), _spec()
    whole = gate(docs, spec)
    accepted_ids = whole.accepted.column("doc_id").to_pylist()
    held = whole.quarantine.to_pylist()
    # Overturn one accepted and one held document, confirm one of each, and name one the source does not hold.
    held_ok = next(r["doc_id"] for r in held if r["text"] is not None)
    verdicts = [
        (accepted_ids[0], "reject"),
        (accepted_ids[1], "accept"),
        (held_ok, "accept"),
        (held[-1]["doc_id"], "reject"),
        ("no-such-doc", "accept"),
    ]
    overrides = pa.Table.from_pylist(
        [
            {"doc_id": d, "source_id": "src", "verdict": v, "reviewer": "ann", "note": "", "sheet": "s.csv", "line": i}
            for i, (d, v) in enumerate(verdicts, start=2)
        ],
        schema=OVERRIDE_SCHEMA,
    )
    exp_acc, exp_held, exp_dec, exp_stats = apply_overrides(
        whole.accepted, whole.quarantine, whole.decisions, overrides, raw=docs
    )
    exp_agreement = review_agreement(overrides, whole.accepted, whole.quarantine)

    inner = _ListSink()
    sink = ReviewingSink(inner, overrides)
    gate_stream(lambda: _batches(docs, size), spec, sink=sink)
    raw_reviewed = docs.filter(pc.is_in(docs.column("doc_id"), value_set=sink.reviewed_ids))
    stats, agreement = sink.finish(raw_reviewed)

    assert stats == exp_stats and stats["accepted_by_review"] == 1 and stats["rejected_by_review"] == 1
    assert agreement.equals(exp_agreement)
    assert _sorted_rows(inner.table(0, DOCUMENT_SCHEMA)) == _sorted_rows(exp_acc)
    assert _sorted_rows(inner.table(1, QUARANTINE_SCHEMA)) == _sorted_rows(exp_held)
    assert _sorted_rows(inner.table(2, DECISION_SCHEMA)) == _sorted_rows(exp_dec)
    with pytest.raises(RuntimeError, match="after finish"):
        sink.write(*inner.parts[0])


def test_seen_keys_is_exact_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys that differ only in trailing zero bytes must stay distinct in the fixed-width array.
    monkeypatch.setattr(boilerplate, "_SEEN_MERGE_MIN", 2)
    keys = [bytes(16), bytes(15) + b"\x01", b"\x01" + bytes(15), b"\xff" * 16, bytes(14) + b"\x01\x00"]
    seen = boilerplate._SeenKeys()
    added: list[bool] = []
    for batch in ([keys[0], keys[1], keys[0]], [keys[2], keys[1], keys[3]], [keys[4], keys[3], keys[0], keys[4]]):
        merged = seen.in_sorted(batch)
        added += [seen.add_if_new(k, m) for k, m in zip(batch, merged, strict=True)]
        seen.merge_if_full()
    assert added == [True, True, False, True, False, True, True, False, False, False]
    assert len(seen) == len(keys)


def test_reviewing_sink_holds_nothing_for_batches_without_reviewed_documents() -> None:
    docs = conform_documents(_corpus())
    reviewed = docs.column("doc_id")[0].as_py()
    overrides = pa.Table.from_pylist(
        [
            {
                "doc_id": reviewed,
                "source_id": docs.column("source_id")[0].as_py(),
                "verdict": "accept",
                "reviewer": "r",
                "note": "",
                "sheet": "s.csv",
                "line": 2,
            }
        ],
        schema=OVERRIDE_SCHEMA,
    )
    sink = ReviewingSink(_ListSink(), overrides)
    for start in range(0, docs.num_rows, 2):
        sink.write(docs.slice(start, 2), QUARANTINE_SCHEMA.empty_table(), DECISION_SCHEMA.empty_table())
    assert [t.num_rows for t in sink._accepted] == [1]
    assert sink._held == []
