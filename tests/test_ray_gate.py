"""The gate on Ray gives exactly the local streaming gate's outputs (``gate_stream`` over the same rows in the
same order): accepted and quarantine rows in order, the decision log (by document position, each document's
decisions in rule order) and the counts but their timings; also with the rows shuffled, split over more files and
another partition count, and through ``gate_source`` (review, tally, conservation). Marked ``ray``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.gate_corpus import realistic_corpus, realistic_spec
from mixassets.engine.gating_source import gate_source
from mixassets.engine.gating_stream import gate_stream, parquet_batches
from mixassets.engine.review import OVERRIDE_SCHEMA
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from mixassets.engine.distributed import gate_ray  # noqa: E402
from mixtrain.compute import ComputeResource  # noqa: E402

DOCS = 3000
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    compute = ComputeResource(backend="ray", num_cpus=2, shuffle_partitions=4)
    compute.ensure_ray()
    yield compute
    compute.shutdown()
    assert not ray.is_initialized()


def _chat(i: int, *contents: str) -> dict:
    msgs = [{"role": "user" if k % 2 == 0 else "assistant", "content": c} for k, c in enumerate(contents)]
    base = {"doc_id": f"chat-{i}", "source_id": "web", "locator": f"chat:{i}", "license": "CC-BY-4.0"}
    return {**base, "kind": "chat", "text": "\n\n".join(contents), "messages": json.dumps(msgs), "rights_tags": [],
            "domain": "general", "language": "en"}  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    """The benchmark's realistic source (boilerplate banners, re-cased exact copies far from their originals,
    PII, other languages, empty and too-short pages) with chat documents, a copy of a chat, a restricted page
    and a short one mixed in."""
    docs = realistic_corpus(DOCS, seed=1)
    hello = "Hello! How can I help you with your garden today? I can answer questions about soil and seeds."
    extra = [
        _chat(0, hello, "Which tomatoes grow well in a cold and windy climate near the northern coast?"),
        _chat(1, hello, "Which tomatoes grow well in a cold and windy climate near the northern coast?"),
        {**docs.slice(5, 1).to_pylist()[0], "doc_id": "restricted", "rights_tags": ["nc"]},
        {**docs.slice(6, 1).to_pylist()[0], "doc_id": "short", "text": "Too short."},
    ]
    rows = docs.to_pylist()
    for k, row in enumerate(extra):  # spread over the source, so they land in different files
        rows.insert((k + 1) * DOCS // 5, row)
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def as_files(table: pa.Table, tmp_path, parts: int) -> list[str]:
    step = -(-table.num_rows // parts)
    paths = []
    for k, start in enumerate(range(0, table.num_rows, step)):
        path = tmp_path / f"part-{k:05d}.parquet"
        pq.write_table(table.slice(start, step), path, row_group_size=500)
        paths.append(str(path))
    return paths


class Collect:
    def __init__(self) -> None:
        self.parts: list[tuple[pa.Table, pa.Table, pa.Table]] = []

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        self.parts.append((accepted, quarantine, decisions))

    def tables(self) -> list[pa.Table]:
        schemas = (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA)
        return [pa.concat_tables([s.empty_table(), *(p[k] for p in self.parts)]) for k, s in enumerate(schemas)]


def untimed(counts) -> dict:
    return {k: v for k, v in counts.items() if not k.startswith("time_s.")}


def assert_same_gate(docs: pa.Table, paths: list[str], parts: int, tags=("nc",)) -> None:
    spec = realistic_spec()
    sink = Collect()
    t0 = time.perf_counter()
    batches = lambda: (b for p in paths for b in parquet_batches(p, 512)())  # noqa: E731
    local_counts = gate_stream(batches, spec, forbidden_tags=tags, sink=sink)
    t1 = time.perf_counter()
    got = gate_ray(paths, spec, forbidden_tags=tags, num_partitions=parts)
    TIMINGS.setdefault("gate local s", t1 - t0)
    TIMINGS.setdefault("gate ray s", time.perf_counter() - t1)
    assert got.on_ray
    accepted, quarantine, decisions = sink.tables()
    # gate_stream logs rule by rule within each batch: its log stably sorted by document position.
    position = {d: i for i, d in enumerate(docs.column("doc_id").to_pylist())}
    at = np.array([position[d] for d in decisions.column("doc_id").to_pylist()], dtype=np.int64)
    decisions = decisions.take(np.argsort(at, kind="stable"))
    assert got.accepted.equals(accepted)
    assert got.quarantine.equals(quarantine)
    assert got.decisions.equals(decisions)
    assert list(untimed(got.counts).items()) == list(untimed(local_counts).items())
    assert set(got.counts) == set(local_counts)
    # The corpus exercises every piece of cross-document state and the rules after it.
    fired = got.counts
    assert fired["stripped_lines"] > 500 and fired["rule.dedupe.exact_in_source"] > 50
    assert fired["rule.language.mismatch"] > 20 and fired["redacted_docs"] > 50
    assert fired["rule.rights.forbidden_tag"] == 1 and fired["rule.quality.too_short"] >= 1
    chats = got.quarantine.filter(pc.is_in(got.quarantine.column("doc_id"), pa.array(["chat-0", "chat-1"])))
    assert chats.column("rule_id").to_pylist() == ["dedupe.exact_in_source"]  # the later copy, by position


def test_ray_gate_equals_the_stream(corpus, tmp_path):
    assert_same_gate(corpus, as_files(corpus, tmp_path, 3), parts=4)


def test_ray_gate_shuffled_many_files_other_partitions(corpus, tmp_path):
    docs = corpus.take(np.random.default_rng(7).permutation(corpus.num_rows))
    assert_same_gate(docs, as_files(docs, tmp_path, 7), parts=3)


def test_gate_source_with_the_ray_gate(corpus, tmp_path):
    """The asset's path: the same review, tally and conservation over the Ray gate's outputs."""
    raw = tmp_path / "raw.parquet"
    pq.write_table(corpus, raw, row_group_size=500)
    spec = realistic_spec()
    # A reviewer rejects one document and accepts the chat copy the gate rejected.
    row = {"source_id": "web", "reviewer": "r", "note": "", "sheet": "s.csv"}
    rows = [{**row, "doc_id": corpus.column("doc_id")[0].as_py(), "verdict": "reject", "line": 2},
            {**row, "doc_id": "chat-1", "verdict": "accept", "line": 3}]  # fmt: skip
    overrides = pa.Table.from_pylist(rows, schema=OVERRIDE_SCHEMA)
    rejects = QUARANTINE_SCHEMA.empty_table()

    def ray_gate(sink):
        out = gate_ray([str(raw)], spec, forbidden_tags=("nc",), num_partitions=4)
        out.write_to(sink, 1000)
        return out.counts

    results = {}
    for name, gate in (("local", None), ("ray", ray_gate)):
        outs = [tmp_path / f"{name}-{k}.parquet" for k in ("accepted", "quarantine", "decisions")]
        results[name] = gate_source(
            str(raw), rejects, spec, overrides, outputs=outs, forbidden_tags=("nc",), batch_rows=512, gate=gate
        )
        results[name + "_tables"] = [pq.read_table(p) for p in outs]
    local, got = results["local"], results["ray"]
    assert got.conservation.passed and got.conservation == local.conservation
    assert got.summary.metrics["accepted_by_review"] == 1  # the chat copy
    assert got.summary.agreement == local.summary.agreement
    assert untimed(got.summary.metrics) == untimed(local.summary.metrics)
    for a, b in zip(results["ray_tables"][:2], results["local_tables"][:2], strict=True):
        assert a.equals(b)
    keys = [(c, "ascending") for c in DECISION_SCHEMA.names]
    assert results["ray_tables"][2].sort_by(keys).equals(results["local_tables"][2].sort_by(keys))


def test_report_timings():
    print(
        "\nRay vs local gate, same run, 2 CPUs,", DOCS + 4, "documents:", {k: round(v, 2) for k, v in TIMINGS.items()}
    )
