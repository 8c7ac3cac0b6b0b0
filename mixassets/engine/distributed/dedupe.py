"""Dedupe on Ray Data with the local engine's own functions: the same kept rows, clusters and verified pairs as
:func:`mixassets.engine.dedupe.dedupe_incremental` (a full build) of the same input.

The stages, each a function of the local engine applied to a part of the data:

1. **sketch** (``map_batches``): :func:`~mixassets.engine.dedupe.sketch` per batch; a sketch depends on its
   document alone. Each row keeps its input position (``__pos``) and its pair threshold.
2. **bands** (shuffle by band hash): one row per (document, band); rows with equal hashes meet in one group,
   where :func:`~mixassets.engine.dedupe.pairs_in_runs` proposes pairs; a second shuffle by the pair's low end
   makes them distinct (a pair sharing several bands is proposed in several groups).
3. **verify** (two joins with the texts, then ``map_batches``): the exact shingle Jaccard of each pair from
   :func:`~mixassets.engine.dedupe.shingle_set`, and the MinHash estimate from the signatures of those sets
   (the values the stored signatures hold).
4. **components** (driver): exact-key twins (grouped by a shuffle on the key) and verified pairs at or above
   threshold are edges; their connected components are found on the driver from those few integer edges.
5. **resolve** (shuffle by component): :func:`~mixassets.engine.dedupe.resolution.resolve_walk` per group of
   whole components. The walk's decisions read only a document's component, so this equals the global walk.
6. **kept rows** (``map_batches``): the dropped positions are broadcast and filtered out.

Order: kept rows and sketches come in input position order (the local engine's input order), clusters in
keeper order of their members (the local walk order), pairs sorted by ids as the local table is. Nothing
depends on block order or on Python's per-process ``hash()``: every grouping key is a stored hash or id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.bands import pairs_in_runs
from mixassets.engine.dedupe.config import _META_BANDING, _META_FINGERPRINT, _META_SKETCH_SET, DedupeConfig
from mixassets.engine.dedupe.content import ContentView, chat_line_hashes
from mixassets.engine.dedupe.corpus import Corpus, check_row_ids
from mixassets.engine.dedupe.digest import _with_sketch_set
from mixassets.engine.dedupe.incremental import DedupeResult, DedupeStats, with_templates
from mixassets.engine.dedupe.keepers import _keeper_positions
from mixassets.engine.dedupe.resolution import _cluster_rows, _thresholds, resolve_walk
from mixassets.engine.dedupe.sketching import shingle_set, signatures, sketch_streamed
from mixassets.engine.dedupe.tables import VERIFIED_PAIR_SCHEMA, _check_columns, _fixed_list_numpy, sketch_schema
from mixassets.engine.dedupe.verification import VerifiedPairs, _jaccard
from mixassets.engine.distributed._data import (
    POS,
    DocsInput,
    _ray,
    broadcast_get,
    collect,
    conform,
    default_partitions,
    docs_dataset,
    input_schema,
    settled,
)
from mixassets.engine.text_norm import TokenHasher
from mixtrain.schema import DEDUPE_CLUSTER_SCHEMA

_THRESHOLD, _BUCKET = "__threshold", "__bucket"
_TEXT_COLUMNS = ("source_id", "doc_id", "content_hash", "code", _THRESHOLD, "text")
_META_COLUMNS = ("doc_id", "source_id", "domain", "license", "capture_time", "content_hash", "exact_key")
_MEMBER_META = ("license", "capture_time", "content_hash")


@dataclass(frozen=True)
class RayDedupeResult:
    """What :func:`dedupe_ray` decided; each table equals the local engine's (see the module docstring)."""

    kept: pa.Table | None  # input schema, input order; None when the caller streams the kept rows itself
    dropped: np.ndarray  # input positions of the dropped rows, ascending: what a streaming writer filters out
    clusters: pa.Table  # DEDUPE_CLUSTER_SCHEMA, keeper order
    verified_pairs: pa.Table  # VERIFIED_PAIR_SCHEMA with the local metadata
    sketches: pa.Table  # sketch_schema(config), input order
    candidate_pairs: int


# -- 0. templates ---------------------------------------------------------------------------------------------
_LINE_SCHEMA = pa.schema([("source_id", pa.string()), ("hash", pa.uint64()), ("record", pa.int64())])


def _template_lines(batch: pa.Table, cfg: DedupeConfig) -> pa.Table:
    """Per chat record with a content view: one ``record`` = 1 row, and one row per distinct line hash."""
    plain = ContentView(cfg.content_fields)
    sources, hashes, records = [], [], []
    for source, lines in chat_line_hashes(batch, plain):
        distinct = sorted(set(lines))
        sources += [source] * (len(distinct) + 1)
        hashes += [0, *distinct]
        records += [1] + [0] * len(distinct)
    return pa.table({"source_id": sources, "hash": pa.array(hashes, pa.uint64()), "record": records}, _LINE_SCHEMA)


def _source_template(group: pa.Table, cfg: DedupeConfig) -> pa.Table:
    """One source's template lines from its records' line rows (the bars of :func:`find_templates`)."""
    record = group.column("record").to_numpy()
    n = int(record.sum())
    lines, counts = np.unique(group.column("hash").to_numpy()[record == 0], return_counts=True)
    chosen = lines[counts >= max(cfg.template_min_records, cfg.template_min_share * n)]
    return pa.table({"source_id": [group.column("source_id")[0].as_py()] * len(chosen), "hash": chosen})


def _templates_ray(docs_ds, cfg: DedupeConfig, parts: int) -> dict[str, frozenset[int]]:
    """:func:`~mixassets.engine.dedupe.content.find_templates` on Ray: records' line hashes are grouped by source
    and counted there; only the template lines come back."""
    if "kind" not in docs_ds.schema().names:
        return {}
    lines = settled(docs_ds.map_batches(_template_lines, batch_format="pyarrow", fn_kwargs={"cfg": cfg}), _LINE_SCHEMA)
    chosen = collect(
        lines.groupby("source_id", num_partitions=parts).map_groups(
            _source_template, batch_format="pyarrow", fn_kwargs={"cfg": cfg}
        ),
        pa.schema([("source_id", pa.string()), ("hash", pa.uint64())]),
    )
    out: dict[str, set[int]] = {}
    for source, h in zip(chosen.column("source_id").to_pylist(), chosen.column("hash").to_pylist(), strict=True):
        out.setdefault(source, set()).add(int(h))
    return {source: frozenset(t) for source, t in out.items()}


# -- 1. sketch ------------------------------------------------------------------------------------------------
def _sketch_batch(
    batch: pa.Table, cfg: DedupeConfig, code_sources: frozenset[str], parts: int, view: ContentView
) -> pa.Table:
    texts = view.texts(batch)  # what is compared: a chat record's content without its source's template
    meta = batch.drop_columns(["text"])
    sk = sketch_streamed(meta, [texts], cfg, code_sources=code_sources).replace_schema_metadata(None)
    keys = sk.column("exact_key").combine_chunks()
    # A bucket from the key's first 8 bytes (the key is a hash): twins share it; -1 where there is no key.
    first = np.frombuffer(pc.fill_null(keys, b"\0" * 16).buffers()[1], dtype=np.uint64)[
        keys.offset : keys.offset + len(keys)
    ]
    bucket = np.where(keys.is_valid().to_numpy(zero_copy_only=False), (first % np.uint64(parts)).astype(np.int64), -1)
    return (
        sk.append_column(POS, batch.column(POS))
        .append_column(_THRESHOLD, pa.array(_thresholds(sk, cfg), pa.float64()))
        .append_column(_BUCKET, pa.array(bucket, pa.int64()))
        .append_column("text", texts)
    )


# -- 2. candidate pairs -----------------------------------------------------------------------------------
def _band_rows(batch: pa.Table, bands: int, parts: int) -> pa.Table:
    active = batch.column("n_shingles").to_numpy() > 0
    matrix = _fixed_list_numpy(batch.column("bands"), bands, np.uint64)[active]
    hashes = matrix.reshape(-1)
    return pa.table(
        {
            _BUCKET: pa.array((hashes % np.uint64(parts)).astype(np.int64)),
            "band": pa.array(np.tile(np.arange(bands, dtype=np.int32), len(matrix))),
            "hash": pa.array(hashes, pa.uint64()),
            POS: pa.array(np.repeat(batch.column(POS).to_numpy()[active], bands)),
        }
    )


def _pair_table(lo: np.ndarray, hi: np.ndarray, parts: int) -> pa.Table:
    if len(lo):
        codes = np.unique(np.stack([lo, hi], axis=1), axis=0)
        lo, hi = codes[:, 0], codes[:, 1]
    return pa.table({"lo": pa.array(lo, pa.int64()), "hi": pa.array(hi, pa.int64()), _BUCKET: pa.array(lo % parts)})


def _pairs_of_group(group: pa.Table, parts: int) -> pa.Table:
    """Pairs sharing a band within one bucket of band hashes."""
    band, h, pos = (group.column(c).to_numpy() for c in ("band", "hash", POS))
    order = np.lexsort((pos, h, band))
    band, h, pos = band[order], h[order], pos[order]
    new = np.ones(len(h), dtype=bool)
    new[1:] = (band[1:] != band[:-1]) | (h[1:] != h[:-1])
    lo, hi = pairs_in_runs(np.cumsum(new), pos)
    return _pair_table(lo, hi, parts)


def _distinct_pairs(group: pa.Table, parts: int) -> pa.Table:
    return _pair_table(group.column("lo").to_numpy(), group.column("hi").to_numpy(), parts)


# -- 3. verification ---------------------------------------------------------------------------------------
def _verify_batch(batch: pa.Table, cfg: DedupeConfig) -> pa.Table:
    lo, hi = batch.column("lo").to_numpy(), batch.column("hi").to_numpy()
    hasher = TokenHasher()
    sets: dict[int, np.ndarray] = {}
    for end in ("lo", "hi"):
        texts, codes = batch.column(f"{end}_text").to_pylist(), batch.column(f"{end}_code").to_pylist()
        for p, text, code in zip(batch.column(end).to_numpy().tolist(), texts, codes, strict=True):
            if p not in sets:
                sets[p] = shingle_set(text, code=code, config=cfg, hasher=hasher)
    at = {p: k for k, p in enumerate(sets)}
    sig = signatures(list(sets.values()), cfg)
    a_rows = np.array([at[p] for p in lo.tolist()], dtype=np.int64)
    b_rows = np.array([at[p] for p in hi.tolist()], dtype=np.int64)
    exact = np.array([_jaccard(sets[a], sets[b]) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
    estimated = (sig[a_rows] == sig[b_rows]).mean(axis=1) if len(lo) else np.empty(0)
    # a is the end with the smaller (source_id, doc_id); a tie keeps the lower position first (as locally).
    s_lo, s_hi = batch.column("lo_source_id"), batch.column("hi_source_id")
    d_lo, d_hi = batch.column("lo_doc_id"), batch.column("hi_doc_id")
    swap = pc.or_(pc.greater(s_lo, s_hi), pc.and_(pc.equal(s_lo, s_hi), pc.greater(d_lo, d_hi)))
    swap = swap.to_numpy(zero_copy_only=False).astype(bool)
    threshold = np.maximum(batch.column(f"lo_{_THRESHOLD}").to_numpy(), batch.column(f"hi_{_THRESHOLD}").to_numpy())
    columns = {}
    for name in ("source_id", "doc_id", "content_hash"):
        first, second = batch.column(f"lo_{name}"), batch.column(f"hi_{name}")
        columns[f"a_{name}"] = pc.if_else(pa.array(swap), second, first)
        columns[f"b_{name}"] = pc.if_else(pa.array(swap), first, second)
    columns["exact_jaccard"] = pa.array(exact, pa.float64())
    columns["estimated_jaccard"] = pa.array(estimated, pa.float64())
    out = pa.table({f.name: columns[f.name] for f in VERIFIED_PAIR_SCHEMA})
    return (
        out.append_column("lo", pa.array(lo))
        .append_column("hi", pa.array(hi))
        .append_column("near", pa.array(exact >= threshold - 1e-12))
    )


def _text_view(sk, end: str):
    cols = [POS, *_TEXT_COLUMNS]
    return sk.select_columns(cols).rename_columns({POS: end, **{c: f"{end}_{c}" for c in _TEXT_COLUMNS}})


# -- 4. components -----------------------------------------------------------------------------------------
def _exact_edges(group: pa.Table) -> pa.Table:
    """(first, other) position pairs linking the documents of each exact key in this bucket."""
    keys = pc.dictionary_encode(group.column("exact_key").combine_chunks()).indices.to_numpy(zero_copy_only=False)
    pos = group.column(POS).to_numpy()
    order = np.lexsort((pos, keys))
    keys, pos = keys[order], pos[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    head = pos[np.flatnonzero(first)[np.cumsum(first) - 1]]
    return pa.table({"a": pa.array(head[~first], pa.int64()), "b": pa.array(pos[~first], pa.int64())})


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, component)`` of the graph with edges ``a[i]-b[i]``: sorted node ids and, per node, the smallest
    node id of its component (min-label propagation with pointer jumping; independent of edge order)."""
    nodes = np.unique(np.concatenate([a, b]))
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[ia], label[ib])
        new = label.copy()
        np.minimum.at(new, ia, low)
        np.minimum.at(new, ib, low)
        new = new[new]
        if np.array_equal(new, label):
            return nodes, nodes[label]
        label = new


# -- 5. resolution -----------------------------------------------------------------------------------------
def _tag_components(batch: pa.Table, ref, parts: int) -> pa.Table:
    nodes, comp = broadcast_get(ref)
    pos = batch.column(POS).to_numpy()
    at = np.clip(np.searchsorted(nodes, pos), 0, max(0, len(nodes) - 1))
    hit = (nodes[at] == pos) if len(nodes) else np.zeros(len(pos), dtype=bool)
    out = batch.filter(pa.array(hit))
    return out.append_column(_BUCKET, pa.array(comp[at[hit]] % parts, pa.int64()))


def _resolve_group(group: pa.Table, ref, meta_schema: pa.Schema, cfg: DedupeConfig, trust) -> pa.Table:
    group = group.take(np.argsort(group.column(POS).to_numpy(), kind="stable"))
    pos = group.column(POS).to_numpy()
    lo, hi, exact, estimated, bucket = broadcast_get(ref)
    mine = bucket == group.column(_BUCKET)[0].as_py()
    pairs = np.stack([np.searchsorted(pos, lo[mine]), np.searchsorted(pos, hi[mine])], axis=1)
    verified = VerifiedPairs(pairs, exact[mine], estimated[mine])
    sub = conform(group, meta_schema)
    walk = resolve_walk(sub, verified, cfg, trust=trust)
    rows = _cluster_rows(sub, walk, verified)
    member = pa.array(np.asarray(walk.member, dtype=np.int64), pa.int64())
    rows = rows.append_column(POS, pa.array(pos[np.asarray(walk.member, dtype=np.int64)], pa.int64()))
    for name in _MEMBER_META:
        rows = rows.append_column(f"m_{name}", sub.column(name).take(member))
    return rows


# -- the driver -------------------------------------------------------------------------------------------
def dedupe_ray(
    docs: DocsInput,
    *,
    config: DedupeConfig | None = None,
    trust: Mapping[str, int] | None = None,
    code_sources: Collection[str] = frozenset(),
    num_partitions: int | None = None,
    collect_kept: bool = True,
) -> RayDedupeResult:
    """:func:`~mixassets.engine.dedupe.dedupe_incremental` (a full build) of ``docs`` on Ray Data.

    ``docs`` is a table or a list of parquet files (read in the order given). ``num_partitions`` is every
    shuffle's partition count (default twice the cluster's CPUs). Ray must be initialised
    (:class:`mixtrain.compute.ComputeResource`). With ``collect_kept=False`` the kept rows (the text of most of
    the corpus) are not gathered on the driver: ``dropped`` says which input positions to leave out.
    """
    cfg = config or DedupeConfig()
    parts = num_partitions or default_partitions()
    schema = input_schema(docs)
    _check_columns(schema.empty_table())
    ray = _ray()
    from ray.data.expressions import col

    docs_ds, n = docs_dataset(docs, parts)
    sk_schema = sketch_schema(cfg)
    templates = _templates_ray(docs_ds, cfg, parts)
    view = ContentView(cfg.content_fields, templates)
    sk = docs_ds.map_batches(
        _sketch_batch,
        batch_format="pyarrow",
        fn_kwargs={"cfg": cfg, "code_sources": frozenset(code_sources), "parts": parts, "view": view},
    ).materialize()

    bands = cfg.banding[0]
    proposed = settled(
        sk.select_columns([POS, "n_shingles", "bands"])
        .map_batches(_band_rows, batch_format="pyarrow", fn_kwargs={"bands": bands, "parts": parts})
        .groupby(_BUCKET, num_partitions=parts)
        .map_groups(_pairs_of_group, batch_format="pyarrow", fn_kwargs={"parts": parts}),
        _pair_table(np.zeros(0, np.int64), np.zeros(0, np.int64), parts).schema,
    )
    candidates = (
        proposed.groupby(_BUCKET, num_partitions=parts)
        .map_groups(_distinct_pairs, batch_format="pyarrow", fn_kwargs={"parts": parts})
        .select_columns(["lo", "hi"])
        .materialize()
    )
    n_candidates = candidates.count()
    pair_schema = VERIFIED_PAIR_SCHEMA.append(pa.field("lo", pa.int64())).append(pa.field("hi", pa.int64()))
    pair_schema = pair_schema.append(pa.field("near", pa.bool_()))
    if n_candidates:
        joined = candidates.join(_text_view(sk, "lo"), "inner", num_partitions=parts, on=("lo",))
        joined = joined.join(_text_view(sk, "hi"), "inner", num_partitions=parts, on=("hi",))
        pairs = collect(joined.map_batches(_verify_batch, batch_format="pyarrow", fn_kwargs={"cfg": cfg}), pair_schema)
    else:
        pairs = pair_schema.empty_table()
    # The local table's row order before its (stable) sort by ids: pairs by position.
    pairs = pairs.take(np.lexsort((pairs.column("hi").to_numpy(), pairs.column("lo").to_numpy())))

    exact_edges = collect(
        sk.select_columns([POS, "exact_key", _BUCKET])
        .filter(expr=col(_BUCKET) >= 0)
        .groupby(_BUCKET, num_partitions=parts)
        .map_groups(_exact_edges, batch_format="pyarrow"),
        pa.schema([pa.field("a", pa.int64()), pa.field("b", pa.int64())]),
    )
    near = pairs.filter(pairs.column("near"))
    lo, hi = near.column("lo").to_numpy(), near.column("hi").to_numpy()
    nodes, comp = components(
        np.concatenate([lo, exact_edges.column("a").to_numpy()]),
        np.concatenate([hi, exact_edges.column("b").to_numpy()]),
    )
    meta_schema = pa.schema([sk_schema.field(c) for c in _META_COLUMNS])
    member_schema = DEDUPE_CLUSTER_SCHEMA.append(pa.field(POS, pa.int64()))
    for name in _MEMBER_META:
        member_schema = member_schema.append(pa.field(f"m_{name}", sk_schema.field(name).type))
    if len(nodes):
        edge_comp = comp[np.searchsorted(nodes, lo)] % parts
        edges_ref = ray.put(
            (lo, hi, near.column("exact_jaccard").to_numpy(), near.column("estimated_jaccard").to_numpy(), edge_comp)
        )
        members = collect(
            sk.select_columns([POS, *_META_COLUMNS])
            .map_batches(
                _tag_components, batch_format="pyarrow", fn_kwargs={"ref": ray.put((nodes, comp)), "parts": parts}
            )
            .groupby(_BUCKET, num_partitions=parts)
            .map_groups(
                _resolve_group,
                batch_format="pyarrow",
                fn_kwargs={"ref": edges_ref, "meta_schema": meta_schema, "cfg": cfg, "trust": trust},
            ),
            member_schema,
            sort_by=POS,
        )
    else:
        members = member_schema.empty_table()
    meta = pa.table({"doc_id": members.column("doc_id"), "source_id": members.column("source_id"),
                     **{name: members.column(f"m_{name}") for name in _MEMBER_META}})  # fmt: skip
    clusters = conform(members.take(_keeper_positions(meta, cfg, trust)), DEDUPE_CLUSTER_SCHEMA)

    dropped = np.sort(members.filter(pc.equal(members.column("action"), "dropped")).column(POS).to_numpy())
    kept = (
        collect(
            docs_ds.map_batches(_keep, batch_format="pyarrow", fn_kwargs={"ref": ray.put(dropped)}),
            schema.append(pa.field(POS, pa.int64())),
            sort_by=POS,
        )
        if collect_kept
        else None
    )
    sketches = collect(
        sk.drop_columns([_THRESHOLD, _BUCKET, "text"]), sk_schema.append(pa.field(POS, pa.int64())), sort_by=POS
    )
    sketches = _with_sketch_set(conform(sketches, sk_schema).replace_schema_metadata(sk_schema.metadata))
    sketches = with_templates(sketches, templates)
    verified = conform(pairs, VERIFIED_PAIR_SCHEMA).sort_by(
        [
            ("a_source_id", "ascending"),
            ("a_doc_id", "ascending"),
            ("b_source_id", "ascending"),
            ("b_doc_id", "ascending"),
        ]
    )
    b, r = cfg.banding
    verified = verified.replace_schema_metadata(
        {
            _META_FINGERPRINT: cfg.fingerprint().encode(),
            _META_BANDING: f"{b},{r}".encode(),
            _META_SKETCH_SET: sketches.schema.metadata[_META_SKETCH_SET],
        }
    )
    if kept is not None and kept.num_rows + len(dropped) != n:
        raise AssertionError(f"dedupe_ray: {kept.num_rows} kept + {len(dropped)} dropped != {n} documents")
    kept = conform(kept, schema) if kept is not None else None
    return RayDedupeResult(kept, dropped, clusters, verified, sketches, n_candidates)


def _keep(batch: pa.Table, ref) -> pa.Table:
    dropped = broadcast_get(ref)
    return batch.filter(pa.array(~np.isin(batch.column(POS).to_numpy(), dropped)))


def dedupe_corpus_ray(
    tables: Sequence[Any],
    *,
    config: DedupeConfig | None = None,
    trust: Mapping[str, int] | None = None,
    code_sources: Collection[str] = frozenset(),
    num_partitions: int | None = None,
) -> DedupeResult:
    """A full build on Ray of a stored corpus (committed tables, in order), as the local engine's
    :class:`~mixassets.engine.dedupe.DedupeResult`: the workers read the tables' parts and decide, and the kept
    rows are read back from the same tables by the caller (``kept_batches``), so no text reaches the driver.
    Ray reuses nothing from an earlier run (no incremental refresh yet): the stats say so."""
    corpus = Corpus.of(list(tables))
    check_row_ids(corpus.metadata())  # as the local engine does: two documents on one row id is an error
    paths = [ref for table in corpus.tables for ref in table.part_refs]
    out = dedupe_ray(
        paths, config=config, trust=trust, code_sources=code_sources, num_partitions=num_partitions, collect_kept=False
    )
    kept_mask = np.ones(corpus.rows, dtype=bool)
    kept_mask[out.dropped] = False
    stats = DedupeStats(
        documents=corpus.rows,
        sketched=corpus.rows,
        sketches_reused=0,
        candidate_pairs=out.candidate_pairs,
        pairs_verified=out.verified_pairs.num_rows,
        pairs_reused=0,
        incremental=False,
        note="full build on Ray (earlier sketches and pairs are not reused there)",
    )
    return DedupeResult(kept_mask, out.clusters, out.sketches, out.verified_pairs, stats, corpus)
