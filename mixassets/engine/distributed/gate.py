"""The gate on Ray Data with the local engine's rules: the same accepted, quarantine and decision rows and the same
counts (but the ``time_s.*`` timings) as :func:`~mixassets.engine.gating_stream.gate_stream` over the same rows in
the same order.

The local stream carries two pieces of state across batches; here each is an aggregation over the whole input:

1. **boilerplate** (``RepeatedLineRule.prepare``): each batch is shown to the rules before the boilerplate rule
   (record shape, rights, encoding: each judges a document on its own); every prose document gives its key
   (:func:`~mixassets.engine.text_norm.text_key` of the normalized text), its position and its distinct
   qualifying line hashes. A shuffle by key keeps the lines of the lowest-position copy of each key (copies
   count once and the first copy is the one counted, as locally: re-cased copies have other lines) and counts
   the keys; a shuffle by line hash sums those counts. The driver keeps the lines that clear ``min_docs`` and
   ``min_doc_fraction`` of the distinct documents and broadcasts that state.
2. **exact duplicates** (``ExactDedupeRule``): the local rule keeps the first copy in stream order of every
   document standing when it runs. Each batch is gated with the boilerplate state up to that rule, and every
   standing document gives (its dedupe key, its input position, its id); a shuffle by key finds, for each key
   with several copies, the id of the copy at the lowest position. That map is broadcast and stands in for the
   rule's seen-map (``first_ids``), so a worker knows of every document whether it is the first copy.
3. **gate** (``map_batches`` with an actor pool, so the language model and a safety classifier are loaded once
   per actor): :func:`~mixassets.engine.gating.gate_batch` per batch with both states; every rule after those
   two judges a document on its own. Each batch's three tables come back with their rows' input positions.

Order: accepted and quarantine rows in input position order (the local order); decision rows in input position
order of their documents, each document's in rule order (``gate_stream`` logs rule by rule within each of its
batches: a stable sort of its log by document position gives this order). Counts are summed over the batches
and laid out as ``gate_stream`` lays them out. Nothing depends on block order or on Python's ``hash()``: every
grouping key is a stored hash (``stable_hash64``, ``text_key``) and every order an input position.

Limits: the three tables are gathered on the driver (memory grows with the source's gated text there, unlike the
local stream); a safety classifier scores the batches Ray forms, not ``gate_stream``'s, so a model whose scores
depend on what else is in its batch (padding) could differ at the threshold (none is configured by default).

If the source's rules are not of that shape (a rule other than the boilerplate one needing a whole-source pass,
or the duplicate check before it), the gate runs on the driver with ``gate_stream``: slower, never different.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine.distributed._data import (
    POS,
    DocsInput,
    _ray,
    broadcast_get,
    collect,
    default_partitions,
    docs_dataset,
    settled,
)
from mixassets.engine.gating import _apply_rules, conform_documents, gate_batch
from mixassets.engine.gating_stream import GateSink, _finish, gate_stream, parquet_batches
from mixassets.engine.rules import GateContext, Rule, rules_for
from mixassets.engine.rules.base import texts
from mixassets.engine.rules.boilerplate import Boilerplate, RepeatedLineRule, line_key
from mixassets.engine.rules.exact_duplicates import SEEN_CACHE_KEY, ExactDedupeRule, dedupe_key, normalize_for_dedupe
from mixassets.engine.text_norm import stable_hash64, text_key
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

_BUCKET, _MARK = "__bucket", "__mark"
_KEY = np.dtype("S16")
_PAYLOADS = ("accepted", "quarantine", "decisions")


@dataclass(frozen=True)
class RayGateOutputs:
    """What :func:`gate_ray` decided: ``gate_stream``'s tables and counts (see the module docstring for order)."""

    accepted: pa.Table  # DOCUMENT_SCHEMA, input order
    quarantine: pa.Table  # QUARANTINE_SCHEMA, input order
    decisions: pa.Table  # DECISION_SCHEMA, by document position, then rule order
    counts: dict[str, int | float]
    on_ray: bool = True  # False when the rules needed the driver (see the module docstring)

    def write_to(self, sink: GateSink, batch_rows: int = 4_096) -> None:
        """Hand the tables to ``sink`` ``batch_rows`` rows of each at a time."""
        for accepted, quarantine, decisions in _chunks(self.accepted, self.quarantine, self.decisions, batch_rows):
            sink.write(accepted, quarantine, decisions)


def _chunks(a: pa.Table, q: pa.Table, d: pa.Table, rows: int) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
    longest = max(a.num_rows, q.num_rows, d.num_rows)
    for start in range(0, longest, max(1, rows)):
        yield a.slice(start, rows), q.slice(start, rows), d.slice(start, rows)


def _keys_u64(keys: list[bytes]) -> np.ndarray:
    """16-byte keys as an (n, 2) uint64 array (what travels in a table), and back with ``.view(_KEY)``."""
    if not keys:
        return np.empty((0, 2), dtype=np.uint64)
    return np.frombuffer(b"".join(keys), dtype=np.uint64).reshape(-1, 2)


def _as_keys(k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([k0, k1], axis=1).astype(np.uint64)).view(_KEY).ravel()


def _docs(batch: pa.Table) -> pa.Table:
    return conform_documents(batch.drop_columns([POS]))


# -- 1. boilerplate -----------------------------------------------------------------------------------------
def _line_rows(batch: pa.Table, spec: SourceSpec, tags: frozenset[str], upto: int, parts: int) -> pa.Table:
    """Per document as the boilerplate rule is shown it (the batch's first copy of each key only): a key row
    and one row per distinct qualifying line hash, all bucketed by the document key, with the position."""
    cfg = spec.gating.boilerplate
    ctx = GateContext(spec=spec, forbidden_tags=tags)
    run = _apply_rules(_docs(batch), rules_for(spec)[:upto], ctx)
    shown = run.work.take(pa.array(run.alive, pa.int64()))
    positions = batch.column(POS).to_numpy()[np.asarray(run.alive, dtype=np.int64)].tolist()
    firsts: dict[bytes, tuple[int, str]] = {}
    kinds = shown.column("kind").to_pylist()
    for kind, text, p in zip(kinds, texts(shown), positions, strict=True):
        if kind != "chat":
            firsts.setdefault(text_key(normalize_for_dedupe(text)), (p, text))
    keys = _keys_u64(list(firsts))
    cols: dict[str, list[np.ndarray]] = {"k0": [], "k1": [], POS: [], "hash": [], _MARK: []}
    for (a, b), (p, text) in zip(keys.tolist(), firsts.values(), strict=True):
        lines = {k for line in text.splitlines() if len(k := line_key(line)) >= cfg.min_line_chars}
        h = np.array([0, *sorted({stable_hash64(k) for k in lines})], dtype=np.uint64)
        mark = np.zeros(len(h), bool)
        mark[0] = True
        for name, value in (("k0", a), ("k1", b), (POS, p)):
            cols[name].append(np.full(len(h), value, np.int64 if name == POS else np.uint64))
        cols["hash"].append(h)
        cols[_MARK].append(mark)
    out = {n: np.concatenate(v) if v else np.empty(0, np.bool_ if n == _MARK else np.uint64) for n, v in cols.items()}
    out[POS] = out[POS].astype(np.int64)
    bucket = (out["k0"] % np.uint64(parts)).astype(np.int64)
    return pa.table({_BUCKET: bucket, **{n: pa.array(v) for n, v in out.items()}})


def _first_copy_lines(group: pa.Table, parts: int) -> pa.Table:
    """The rows of the lowest-position copy of each document key of this bucket (copies count once, the first
    counted, as locally), as partial counts per line hash bucketed by hash, with one row counting the keys."""
    k0, k1, pos, h = (group.column(c).to_numpy() for c in ("k0", "k1", POS, "hash"))
    mark = group.column(_MARK).to_numpy(zero_copy_only=False)
    order = np.lexsort((pos, k1, k0))
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k0[order][1:] != k0[order][:-1]) | (k1[order][1:] != k1[order][:-1])
    first_pos = pos[order][np.flatnonzero(new)[np.cumsum(new) - 1]]  # per sorted row: its key's lowest position
    chosen = np.zeros(len(order), dtype=bool)
    chosen[order] = pos[order] == first_pos
    lines, counts = np.unique(h[chosen & ~mark], return_counts=True)
    return pa.table(
        {
            _BUCKET: np.concatenate([np.zeros(1, np.int64), (lines % np.uint64(parts)).astype(np.int64)]),
            _MARK: np.concatenate([[True], np.zeros(len(lines), bool)]),
            "hash": pa.array(np.concatenate([np.zeros(1, np.uint64), lines]), pa.uint64()),
            "count": np.concatenate([[int(new.sum())], counts]).astype(np.int64),
        }
    )


def _line_counts(group: pa.Table, min_docs: int) -> pa.Table:
    """The partial counts of this bucket summed per line hash (only lines in at least ``min_docs`` distinct
    documents kept), and the key counts summed into one row."""
    mark = group.column(_MARK).to_numpy(zero_copy_only=False)
    h, count = group.column("hash").to_numpy(), group.column("count").to_numpy()
    lines, inverse = np.unique(h[~mark], return_inverse=True)
    sums = np.bincount(inverse, weights=count[~mark], minlength=len(lines)).astype(np.int64)
    keep = sums >= min_docs
    return pa.table(
        {
            _MARK: np.concatenate([[True], np.zeros(int(keep.sum()), bool)]),
            "hash": pa.array(np.concatenate([np.zeros(1, np.uint64), lines[keep]]), pa.uint64()),
            "count": np.concatenate([[int(count[mark].sum())], sums[keep]]).astype(np.int64),
        }
    )


def _boilerplate(ds: Any, spec: SourceSpec, tags: frozenset[str], upto: int, parts: int) -> Boilerplate:
    cfg = spec.gating.boilerplate
    if not cfg.enabled:
        return Boilerplate(0, {})
    schema = pa.schema([pa.field(_MARK, pa.bool_()), pa.field("hash", pa.uint64()), pa.field("count", pa.int64())])
    partial_schema = pa.schema([pa.field(_BUCKET, pa.int64()), *schema])
    partial = settled(
        ds.map_batches(
            _line_rows, batch_format="pyarrow", fn_kwargs={"spec": spec, "tags": tags, "upto": upto, "parts": parts}
        )
        .groupby(_BUCKET, num_partitions=parts)
        .map_groups(_first_copy_lines, batch_format="pyarrow", fn_kwargs={"parts": parts}),
        partial_schema,
    )
    counts = collect(
        partial.groupby(_BUCKET, num_partitions=parts).map_groups(
            _line_counts, batch_format="pyarrow", fn_kwargs={"min_docs": cfg.min_docs}
        ),
        schema,
    )
    mark = counts.column(_MARK).to_numpy(zero_copy_only=False)
    n_docs = int(counts.column("count").to_numpy()[mark].sum())
    lines = counts.filter(pa.array(~mark))
    chosen = zip(lines.column("hash").to_pylist(), lines.column("count").to_pylist(), strict=True)
    return Boilerplate(n_docs, {h: c for h, c in sorted(chosen) if c / n_docs >= cfg.min_doc_fraction})


# -- 2. exact duplicates -------------------------------------------------------------------------------------
class KeptFirst:
    """Stands in for the exact-duplicate rule's seen-map (``FirstSeen.first_ids``) with the whole source known:
    the id of the first copy of every key that has several; a key not in it is its document's own."""

    def __init__(self, keys: np.ndarray, ids: list[str]) -> None:
        self._keys, self._ids = keys, ids  # keys sorted

    def first_ids(self, doc_ids: list[str], keys: list[bytes]) -> list[str]:
        if not keys or not len(self._keys):
            return list(doc_ids)
        wanted = np.frombuffer(b"".join(keys), dtype=_KEY)
        at = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        hit = (self._keys[at] == wanted).tolist()
        return [self._ids[i] if h else d for d, h, i in zip(doc_ids, hit, at.tolist(), strict=True)]


def _dedupe_rows(batch: pa.Table, spec: SourceSpec, tags: frozenset[str], upto: int, parts: int, ref) -> pa.Table:
    """(key, position, id) of every document standing when the duplicate rule runs."""
    ctx = GateContext(spec=spec, forbidden_tags=tags, prepared=broadcast_get(ref))
    run = _apply_rules(_docs(batch), rules_for(spec)[:upto], ctx)
    shown = run.work.take(pa.array(run.alive, pa.int64()))
    ids = ["" if d is None else d for d in shown.column("doc_id").to_pylist()]
    sources = shown.column("source_id").to_pylist()
    keys = _keys_u64([dedupe_key(s, t) for s, t in zip(sources, texts(shown), strict=True)])
    return pa.table(
        {
            _BUCKET: (keys[:, 0] % np.uint64(parts)).astype(np.int64),
            "k0": keys[:, 0],
            "k1": keys[:, 1],
            POS: batch.column(POS).to_numpy()[np.asarray(run.alive, dtype=np.int64)],
            "doc_id": pa.array(ids, pa.string()),
        }
    )


def _first_copies(group: pa.Table) -> pa.Table:
    """The keys of this bucket with several copies, each with the id of its copy at the lowest position."""
    k0, k1, pos = (group.column(c).to_numpy() for c in ("k0", "k1", POS))
    order = np.lexsort((pos, k1, k0))
    k0, k1 = k0[order], k1[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k0[1:] != k0[:-1]) | (k1[1:] != k1[:-1])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(order)))
    firsts = order[starts[sizes > 1]]
    return pa.table(
        {"k0": k0[starts[sizes > 1]], "k1": k1[starts[sizes > 1]], "doc_id": group.column("doc_id").take(firsts)}
    )


def _kept_first(ds: Any, spec: SourceSpec, tags: frozenset[str], upto: int, parts: int, prepared_ref) -> KeptFirst:
    schema = pa.schema([pa.field("k0", pa.uint64()), pa.field("k1", pa.uint64()), pa.field("doc_id", pa.string())])
    kwargs = {"spec": spec, "tags": tags, "upto": upto, "parts": parts, "ref": prepared_ref}
    dups = collect(
        ds.map_batches(_dedupe_rows, batch_format="pyarrow", fn_kwargs=kwargs)
        .groupby(_BUCKET, num_partitions=parts)
        .map_groups(_first_copies, batch_format="pyarrow"),
        schema,
    )
    keys = _as_keys(dups.column("k0").to_numpy(), dups.column("k1").to_numpy())
    order = np.argsort(keys, kind="stable")
    ids = dups.column("doc_id").to_pylist()
    return KeptFirst(keys[order], [ids[i] for i in order.tolist()])


# -- 3. the gate ----------------------------------------------------------------------------------------------
def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class _Gater:
    """One actor of the pool: the rules and their context (a classifier is loaded once, in its cache)."""

    def __init__(self, spec: SourceSpec, tags: frozenset[str], ref) -> None:
        import ray

        prepared, kept = ray.get(ref)
        self.rules = rules_for(spec)
        self.ctx = GateContext(spec=spec, forbidden_tags=tags, prepared=prepared)
        self.ctx.cache[SEEN_CACHE_KEY] = kept

    def __call__(self, batch: pa.Table) -> pa.Table:
        pos = batch.column(POS).to_numpy()
        result = gate_batch(_docs(batch), self.rules, self.ctx)
        self.ctx.observations.clear()
        tables = (result.accepted, result.quarantine, result.decisions)
        rows = (result.accepted_rows, result.held_rows, result.decision_rows)
        payload = {
            name: [_ipc(t.append_column(POS, pa.array(pos[np.asarray(r, dtype=np.int64)], pa.int64())))]
            for name, t, r in zip(_PAYLOADS, tables, rows, strict=True)
        }
        return pa.table({**payload, "counts": [json.dumps(result.counts)]})


def _ray_shape(rules: Sequence[Rule]) -> tuple[int | None, int | None] | None:
    """``(index of the boilerplate rule, index of the duplicate rule)`` (None where absent), or None when the
    rules carry state this module does not reproduce."""
    boiler = next((i for i, r in enumerate(rules) if isinstance(r, RepeatedLineRule)), None)
    dedupe = next((i for i, r in enumerate(rules) if isinstance(r, ExactDedupeRule)), None)
    if any(r.needs_prepare and i != boiler for i, r in enumerate(rules)):
        return None
    if boiler is not None and dedupe is not None and dedupe < boiler:
        return None
    return boiler, dedupe


def gate_ray(
    paths: DocsInput,
    spec: SourceSpec,
    *,
    forbidden_tags: Collection[str] = (),
    num_partitions: int | None = None,
    concurrency: int | None = None,
) -> RayGateOutputs:
    """:func:`~mixassets.engine.gating_stream.gate_stream` of the parquet files ``paths`` (read in the order
    given) on Ray Data. ``num_partitions`` is every shuffle's partition count (default twice the cluster's
    CPUs); ``concurrency`` the number of gate actors (default the cluster's CPUs). Ray must be initialised
    (:class:`mixtrain.compute.ComputeResource`). The three tables are gathered on the driver."""
    rules = rules_for(spec)
    tags = frozenset(forbidden_tags)
    shape = _ray_shape(rules)
    if shape is None:
        return _on_driver(paths, spec, tags)
    boiler, dedupe = shape
    ray = _ray()
    parts = num_partitions or default_partitions()
    ds, rows = docs_dataset(list(paths), parts)
    if rows == 0:  # an empty source has nothing to spread (and Ray would hand its empty block on unmapped)
        return _on_driver(paths, spec, tags)
    ds = ds.materialize()
    prepared: dict[str, Any] = {}
    if boiler is not None:
        prepared[rules[boiler].id] = _boilerplate(ds, spec, tags, boiler, parts)
    prepared_ref = ray.put(prepared)
    kept = KeptFirst(np.empty(0, dtype=_KEY), [])
    if dedupe is not None:
        kept = _kept_first(ds, spec, tags, dedupe, parts, prepared_ref)
    workers = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    schema = pa.schema([pa.field(n, pa.binary()) for n in _PAYLOADS]).append(pa.field("counts", pa.string()))
    gated = collect(
        ds.map_batches(
            _Gater,
            batch_format="pyarrow",
            fn_constructor_kwargs={"spec": spec, "tags": tags, "ref": ray.put((prepared, kept))},
            compute=ray.data.ActorPoolStrategy(size=workers),
        ),
        schema,
    )
    return _assemble(gated, rules, spec)


def _assemble(gated: pa.Table, rules: Sequence[Rule], spec: SourceSpec) -> RayGateOutputs:
    """The batches' tables in position order, and their counts summed as ``gate_stream`` sums them."""
    tables = []
    for name, schema in zip(_PAYLOADS, (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA), strict=True):
        parts = [_from_ipc(b) for b in gated.column(name).to_pylist()]
        table = pa.concat_tables([schema.append(pa.field(POS, pa.int64())).empty_table(), *parts])
        table = table.take(np.argsort(table.column(POS).to_numpy(), kind="stable"))
        tables.append(table.drop_columns([POS]).cast(schema).combine_chunks())
    # The counts of an empty source have every key a batch may lack (per-rule timings, PII types at zero).
    totals = dict(gate_batch(DOCUMENT_SCHEMA.empty_table(), rules, GateContext(spec=spec)).counts)
    layout = list(totals)
    for counts in gated.column("counts").to_pylist():
        for key, value in json.loads(counts).items():
            if not key.endswith("_rate"):
                totals[key] = totals.get(key, 0) + value
    return RayGateOutputs(*tables, counts=_finish(totals, layout))


class _Collect:
    def __init__(self) -> None:
        self.parts: list[tuple[pa.Table, pa.Table, pa.Table]] = []

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        self.parts.append((accepted, quarantine, decisions))


def _on_driver(paths: DocsInput, spec: SourceSpec, tags: frozenset[str]) -> RayGateOutputs:
    """``gate_stream`` here, over the files in order: for rules whose state this module does not reproduce."""

    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            yield from parquet_batches(path[0] if isinstance(path, tuple) else path, 4_096)()

    sink = _Collect()
    counts = gate_stream(batches, spec, forbidden_tags=tags, sink=sink)
    schemas = (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA)
    tables = [pa.concat_tables([s.empty_table(), *(p[k] for p in sink.parts)]) for k, s in enumerate(schemas)]
    return RayGateOutputs(*tables, counts=counts, on_ray=False)
