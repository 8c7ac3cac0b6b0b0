"""The contamination screen and the mixture's token counts on Ray Data, with the local engine's functions.

* :func:`screen_ray`: the eval items are indexed once on the driver and the index is broadcast (``ray.put``);
  each batch of documents is screened with :func:`~mixassets.engine.contamination.screen_batch`. A document's
  findings depend on it alone, so the result equals :func:`~mixassets.engine.contamination_stream.screen_corpus`:
  findings in input order (then item field, then method), clean and contaminated rows in input order.
* :func:`token_counts_ray`: :func:`~mixassets.engine.tokens.count_tokens` per batch (the tokenizer is loaded
  once per worker process). Sampling stays on the driver: it gets a text-free index of the documents in input
  order with the counts aligned, which :func:`~mixassets.engine.mixture.sample_mixture` takes as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.contamination import screen_batch
from mixassets.engine.contamination_index import ScreenConfig, ScreenIndex, build_index
from mixassets.engine.contamination_report import contamination_report, item_leaks
from mixassets.engine.contamination_stream import ScreenResult, ScreenSummary, Sink
from mixassets.engine.distributed._data import (
    POS,
    DocsInput,
    _ray,
    broadcast_get,
    collect,
    default_partitions,
    docs_dataset,
    input_schema,
)
from mixassets.engine.tokens import count_tokens, load_tokenizer
from mixtrain.schema import FINDING_SCHEMA

_HIT = "__hit"
_TOKENS = "__tokens"


def _screen_batch(batch: pa.Table, ref) -> pa.Table:
    index: ScreenIndex = broadcast_get(ref)
    screened = screen_batch(batch, index)
    findings, rows = screened.findings, screened.rows
    return findings.append_column(POS, batch.column(POS).take(pa.array(rows, pa.int64())))


def _mark(batch: pa.Table, ref) -> pa.Table:
    hits = broadcast_get(ref)
    return batch.append_column(_HIT, pa.array(np.isin(batch.column(POS).to_numpy(), hits)))


def screen_hits_ray(
    docs: DocsInput, items: pa.Table, config: ScreenConfig, *, num_partitions: int | None = None
) -> tuple[pa.Table, np.ndarray, ScreenIndex]:
    """``(findings, hit positions, index)``: the findings of every document of ``docs`` in input order and the
    sorted input positions of the contaminated ones; no document text comes back to the driver (a streaming
    writer splits the corpus by the positions)."""
    ray = _ray()
    index = build_index(items, config=config)
    docs_ds, _ = docs_dataset(docs, num_partitions or default_partitions())
    findings = collect(
        docs_ds.map_batches(_screen_batch, batch_format="pyarrow", fn_kwargs={"ref": ray.put(index)}),
        FINDING_SCHEMA.append(pa.field(POS, pa.int64())),
        sort_by=POS,  # stable: a document's findings keep their item-field and method order
    )
    hits = np.unique(findings.column(POS).to_numpy())
    return findings.select(FINDING_SCHEMA.names).cast(FINDING_SCHEMA), hits, index


def screen_stream_ray(
    paths: DocsInput,
    batches: Iterable[pa.Table | pa.RecordBatch],
    items: pa.Table,
    config: ScreenConfig,
    *,
    clean: Sink,
    contaminated: Sink,
    num_partitions: int | None = None,
) -> ScreenSummary:
    """:func:`~mixassets.engine.contamination_stream.screen_stream` with the screening on Ray: the workers read
    the parquet ``paths`` and find the contaminated positions; ``batches`` (the same rows, in the same order,
    read by the caller) are then split by position into the sinks, so no text travels back to the driver."""
    findings, hits, index = screen_hits_ray(paths, items, config, num_partitions=num_partitions)
    offset = dirty = 0
    for batch in batches:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        hit = pa.array(np.isin(np.arange(offset, offset + table.num_rows, dtype=np.int64), hits))
        clean(table.filter(pc.invert(hit)))
        contaminated(table.filter(hit))
        offset += table.num_rows
        dirty += int(pc.sum(hit).as_py() or 0)
    if dirty != len(hits):
        raise RuntimeError(f"screen on Ray: {len(hits)} contaminated positions, {dirty} found in the streamed corpus")
    report = contamination_report(findings, items, config=index.config, unscreenable=index.unscreenable)
    return ScreenSummary(findings, report, item_leaks(findings), offset, dirty)


def screen_ray(
    docs: DocsInput, items: pa.Table, config: ScreenConfig, *, num_partitions: int | None = None
) -> ScreenResult:
    """:func:`~mixassets.engine.contamination_stream.screen_corpus` of ``docs`` (a table or parquet files) on Ray."""
    ray = _ray()
    schema = input_schema(docs)
    index = build_index(items, config=config)
    docs_ds, _ = docs_dataset(docs, num_partitions or default_partitions())
    index_ref = ray.put(index)
    findings = collect(
        docs_ds.map_batches(_screen_batch, batch_format="pyarrow", fn_kwargs={"ref": index_ref}),
        FINDING_SCHEMA.append(pa.field(POS, pa.int64())),
        sort_by=POS,  # stable: a document's findings keep their item-field and method order
    )
    hits = np.unique(findings.column(POS).to_numpy())
    marked = collect(
        docs_ds.map_batches(_mark, batch_format="pyarrow", fn_kwargs={"ref": ray.put(hits)}),
        schema.append(pa.field(POS, pa.int64())).append(pa.field(_HIT, pa.bool_())),
        sort_by=POS,
    )
    hit = marked.column(_HIT)
    clean = marked.filter(pc.invert(hit)).select(schema.names).cast(schema)
    dirty = marked.filter(hit).select(schema.names).cast(schema)
    findings = findings.select(FINDING_SCHEMA.names).cast(FINDING_SCHEMA)
    report = contamination_report(findings, items, config=config, unscreenable=index.unscreenable)
    summary = ScreenSummary(findings, report, item_leaks(findings), clean.num_rows + dirty.num_rows, dirty.num_rows)
    return ScreenResult(clean, dirty, summary)


@lru_cache(maxsize=2)
def _tokenizer(path: str):
    return load_tokenizer(path)


def _count_batch(batch: pa.Table, tokenizer_path: str) -> pa.Table:
    counts = count_tokens(batch, _tokenizer(tokenizer_path))
    return pa.table({POS: batch.column(POS), _TOKENS: pa.array(counts, pa.int64())})


def corpus_index_ray(
    paths: DocsInput, schema: pa.Schema, tokenizer_path: str, *, num_partitions: int | None = None
) -> tuple[pa.Table, np.ndarray]:
    """:func:`~mixassets.engine.mixture_build.corpus_index` with the token counting on Ray: the same text-free
    index (its columns and each row's corpus position) and the same counts, for ``plan_mixture``."""
    from mixassets.engine.mixture_build import POSITION, index_columns

    index, counts = token_counts_ray(paths, tokenizer_path, num_partitions=num_partitions)
    columns = index_columns(schema)
    positions = pa.array(np.arange(index.num_rows, dtype=np.int64))
    return index.select(columns).append_column(POSITION, positions), np.asarray(counts, dtype=np.int64)


def token_counts_ray(
    docs: DocsInput,
    tokenizer_path: str,
    *,
    text_columns: Sequence[str] = ("text", "messages"),
    num_partitions: int | None = None,
) -> tuple[pa.Table, list[int]]:
    """``(index, counts)``: ``docs`` without ``text_columns``, in input order, and the tokens of each row as
    :func:`~mixassets.engine.tokens.count_tokens` counts them. ``sample_mixture(index, counts, ...)`` samples
    the same rows as the local mixture; a caller takes the sampled rows' texts by id afterwards."""
    schema = input_schema(docs)
    keep = [c for c in schema.names if c not in text_columns]
    docs_ds, _ = docs_dataset(docs, num_partitions or default_partitions())
    counts = collect(
        docs_ds.map_batches(_count_batch, batch_format="pyarrow", fn_kwargs={"tokenizer_path": tokenizer_path}),
        pa.schema([pa.field(POS, pa.int64()), pa.field(_TOKENS, pa.int64())]),
        sort_by=POS,
    )
    index_schema = pa.schema([schema.field(c) for c in keep]).append(pa.field(POS, pa.int64()))
    index = collect(docs_ds.select_columns([*keep, POS]), index_schema, sort_by=POS)
    return index.select(keep), counts.column(_TOKENS).to_pylist()
