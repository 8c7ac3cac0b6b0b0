"""The streaming gate's state that grows with the source stays packed, and its reader does not hoard row groups."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixassets.engine import gating_stream
from mixassets.engine.gating import gate
from mixassets.engine.gating_stream import parquet_batches
from mixassets.engine.rules import GateContext
from mixassets.engine.rules.exact_duplicates import SEEN_CACHE_KEY, ExactDedupeRule, FirstSeen
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DOCUMENT_SCHEMA


def _spec() -> SourceSpec:
    return SourceSpec.model_validate({"id": "src", "path": "x", "format": "jsonl", "license": "MIT"})


def _docs(texts: list[str]) -> pa.Table:
    base = {"source_id": "src", "kind": "text", "license": "MIT", "rights_tags": [], "domain": "general"}
    rows = [{**base, "doc_id": f"id{i}", "locator": f"f:{i}", "text": t} for i, t in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def test_first_seen_matches_a_dict_over_many_batches() -> None:
    """Same answers as ``dict.setdefault`` in source order, across batches of every size (so many runs are
    built and merged), with repeats inside one batch and keys that differ only in trailing zero bytes."""
    rng = random.Random(7)
    pool = [rng.randbytes(16) for _ in range(2_000)]
    pool += [b"\x00" * 16, b"a" + b"\x00" * 15, b"a" * 16, b"a" * 15 + b"\x01"]
    seen, reference = FirstSeen(), {}
    n = 0
    for _ in range(300):
        keys = [rng.choice(pool) for _ in range(rng.choice([0, 1, 2, 9, 40, 120]))]
        ids = [f"doc-{n + i}" for i in range(len(keys))]
        n += len(keys)
        assert seen.first_ids(ids, keys) == [reference.setdefault(k, i) for k, i in zip(keys, ids, strict=True)]
    assert len(seen) == len(reference)


def test_first_seen_is_packed() -> None:
    """A kept document costs its 16-byte key, two 8-byte integers and its id's bytes, never a Python object;
    the sorted runs stay logarithmic in number, so a batch's look-up stays cheap."""
    rng = random.Random(3)
    seen = FirstSeen()
    n, batch = 60_000, 1_000
    for start in range(0, n, batch):
        seen.first_ids([f"{i:020x}" for i in range(start, start + batch)], [rng.randbytes(16) for _ in range(batch)])
    runs = seen._runs
    held = sum(k.nbytes + v.nbytes for k, v in runs) + len(seen._id_bytes) + seen._id_ends.itemsize * len(seen)
    assert len(seen) == n
    assert held == n * (16 + 8 + 8 + 20)
    assert len(runs) <= math.log2(n / batch) + 2
    assert all(len(a[0]) > 2 * len(b[0]) for a, b in itertools.pairwise(runs))


def test_exact_duplicates_across_calls_keep_the_first_id() -> None:
    """One context over several tables (as the stream keeps it): a copy names the first document, wherever it was."""
    rule, ctx = ExactDedupeRule(), GateContext(spec=_spec())

    def table(ids: list[str], texts: list[str]) -> pa.Table:
        return pa.table({"doc_id": ids, "source_id": ["src"] * len(ids), "text": texts})

    assert rule.evaluate(table(["a", "b"], ["One text.", "Two text."]), ctx) == [[], []]
    second = rule.evaluate(table(["c", "d", "e"], ["ONE   text.", "Three.", "three."]), ctx)
    assert [[o.reason for o in out] for out in second] == [
        ["same normalized text as kept doc a"],
        [],
        ["same normalized text as kept doc d"],
    ]
    assert isinstance(ctx.cache[SEEN_CACHE_KEY], FirstSeen) and len(ctx.cache[SEEN_CACHE_KEY]) == 3


def test_exact_duplicates_in_gate_name_the_kept_doc() -> None:
    text = "The harbour reopened on Monday after the storm damaged two of the old piers near the town."
    res = gate(_docs([text, text.upper()]), _spec())
    assert res.accepted.column("doc_id").to_pylist() == ["id0"]
    assert res.quarantine.column("reason").to_pylist() == ["same normalized text as kept doc id0"]


def _many_row_groups(path: Path) -> int:
    """A Parquet file of 30 row groups of incompressible text; returns one row group's bytes on disk."""
    rng = random.Random(5)
    with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as writer:
        for _ in range(30):
            writer.write_table(pa.table({"text": [rng.randbytes(500).hex() for _ in range(100)]}))
    return pq.ParquetFile(path).metadata.row_group(0).total_byte_size


@pytest.mark.parametrize("as_str", [True, False])
def test_parquet_batches_hold_one_row_group_at_a_time(tmp_path: Path, as_str: bool) -> None:
    """The default ``ParquetFile`` reader keeps every row group it read until it is closed, which grows with
    the file; ``parquet_batches`` must stay near one row group however far it has read."""
    path = tmp_path / "docs.parquet"
    group = _many_row_groups(path)
    before = pa.total_allocated_bytes()
    most, rows = 0, []
    for batch in parquet_batches(str(path) if as_str else path, batch_size=70)():
        rows += batch.column("text").to_pylist()
        most = max(most, pa.total_allocated_bytes() - before)
        del batch
    assert rows == pq.read_table(path).column("text").to_pylist()
    # A batch may straddle two row groups and holds its decoded text too; the default reader ends near 30.
    assert most < 8 * group


def test_freed_memory_is_released_between_batches_without_changing_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handing freed pages back after every row must not touch what the stream computes."""
    calls: list[int] = []
    release = gating_stream._release_freed_memory
    monkeypatch.setattr(gating_stream, "RELEASE_EVERY_ROWS", 1)
    monkeypatch.setattr(gating_stream, "_release_freed_memory", lambda: calls.append(1) or release())
    texts = [f"Report {i}: the harbour reopened on Monday after the storm damaged the old piers." for i in range(5)]
    docs = _docs([*texts, texts[1].upper(), texts[3]])
    path = tmp_path / "docs.parquet"
    pq.write_table(docs, path, row_group_size=2)
    out = [tmp_path / f"{n}.parquet" for n in ("accepted", "quarantine", "decisions")]
    with gating_stream.ParquetGateSink(*out) as sink:
        counts = gating_stream.gate_stream(parquet_batches(path, 3), _spec(), sink=sink)
    expected = gate(docs, _spec())
    assert pq.read_table(out[0]).equals(expected.accepted)
    assert pq.read_table(out[1]).equals(expected.quarantine)
    assert counts["rejected"] == expected.counts["rejected"] == 2
    assert len(calls) >= 2 * 3  # after each of the three batches, in the prepare pass and the gating pass
