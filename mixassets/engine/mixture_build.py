"""Building a mixture from the screened corpus: the release policy, the held-out documents, then the sample.

Why a module: the sampler (:mod:`mixassets.engine.mixture`) draws from documents it is told it may use; which
ones those are (policy-allowed, not held out) and what is reported about the result is decided here, once, so
the asset only wires storage to it.

Why in three steps: the corpus does not fit in memory, and neither the hold-out nor the sampler reads text.
:func:`corpus_index` streams the corpus once, counting tokens one batch of texts at a time and keeping only
ids, labels and licenses (:data:`INDEX_COLUMNS`) with each row's corpus position; :func:`plan_mixture`
holds out and samples on that index; :func:`write_mixture` streams the corpus a second time and writes the
chosen rows, whole, in the mixture's order (:func:`~mixassets.engine.row_gather.gather_rows`). The result
equals sampling the whole table, row for row.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine.freed_memory import releasing
from mixassets.engine.heldout import HELDOUT_COLUMNS, heldout_mask, heldout_table
from mixassets.engine.licenses import policy_allows
from mixassets.engine.mixture import ADDED_COLUMNS, doc_ids_digest, sample_mixture
from mixassets.engine.row_gather import gather_rows
from mixassets.engine.tokens import token_counts
from mixtrain.config.data import MixtureSpec
from mixtrain.tables import ROW_GROUP_ROWS

# What the hold-out, the sampler, its stats and the manifest read: everything but text, messages and other
# per-document payload, so the index is a few hundred bytes per document.
INDEX_COLUMNS = ("doc_id", "source_id", "domain", "language", "license")
POSITION = "__corpus_row"  # the row's 0-based position in the corpus stream: the key the texts are joined on
# Output rows gathered per chunk: one row group of the table contract.
GATHER_CHUNK_ROWS = ROW_GROUP_ROWS


def _as_table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch


def index_columns(schema: pa.Schema) -> list[str]:
    return [c for c in INDEX_COLUMNS if c in schema.names]


def corpus_index(
    batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, tokenizer: Any
) -> tuple[pa.Table, np.ndarray]:
    """(index, token counts) of a corpus stream: :data:`INDEX_COLUMNS` the corpus has, plus :data:`POSITION`."""
    columns = index_columns(schema)
    parts = [pa.schema([*(schema.field(c) for c in columns), pa.field(POSITION, pa.int64())]).empty_table()]
    counts = [np.zeros(0, dtype=np.int64)]
    offset = 0
    for batch in releasing(batches):
        table = _as_table(batch)
        counts.append(token_counts(table, tokenizer))
        rows = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        parts.append(table.select(columns).append_column(POSITION, rows))
        offset += table.num_rows
    return pa.concat_tables(parts).combine_chunks(), np.concatenate(counts)


@dataclass(frozen=True)
class MixturePlan:
    """The mixture decided on a text-free index: which corpus rows, in what order, and the held-out rows."""

    sample: pa.Table  # the mixture's rows (index columns, tokens, phase, occurrence, POSITION), in table order
    composition: dict[str, Any]  # sample_mixture's stats, stored in the manifest as ``composition``
    heldout: pa.Table  # held-out rows (doc_id, source_id, domain, POSITION) in heldout_table's order
    heldout_record: dict[str, Any]  # ``heldout`` in the manifest

    def metadata(self) -> dict[str, int | float]:
        per_source = self.composition.get("sources", {})
        return {
            "documents": self.sample.num_rows,
            "tokens": int(sum(self.sample.column("tokens").to_pylist())),
            **{f"share/{s}": round(float(v.get("effective_weight", 0.0)), 4) for s, v in per_source.items()},
            **{f"tokens/{s}": int(v.get("tokens", 0)) for s, v in per_source.items()},
            **{f"excluded_by_policy/{s}": int(v.get("excluded_by_policy", 0)) for s, v in per_source.items()},
        }

    def heldout_metadata(self) -> dict[str, int]:
        return {"documents": self.heldout.num_rows, **{f"docs/{s}": n for s, n in self.heldout_record["docs"].items()}}


def plan_mixture(index: pa.Table, token_counts: Sequence[int] | np.ndarray, spec: MixtureSpec) -> MixturePlan:
    """Hold out ``spec.heldout_docs`` policy-allowed documents per source, then sample the rest."""
    allowed = [policy_allows(lic, spec.release_policy) for lic in index.column("license").to_pylist()]
    held = heldout_mask(index, spec.heldout_docs, spec.seed, allowed=allowed)
    kept = [c for c in (*HELDOUT_COLUMNS, POSITION) if c in index.column_names]
    heldout = heldout_table(index, held, spec.seed, columns=kept)
    rest = ~held
    sample, composition = sample_mixture(
        index.filter(pa.array(rest)),
        np.asarray(token_counts)[rest].tolist(),
        spec,
        allowed=np.asarray(allowed, dtype=bool)[rest].tolist(),
    )
    heldout_record = {
        "docs": dict(sorted(Counter(heldout.column("source_id").to_pylist()).items())),
        "doc_ids_digest": doc_ids_digest(heldout.column("doc_id").to_pylist()),
    }
    return MixturePlan(sample, composition, heldout, heldout_record)


def mixture_schema(corpus: pa.Schema, plan: MixturePlan) -> pa.Schema:
    """The corpus's columns, then the ones the sampler adds (``tokens``, ``phase``, ``occurrence``)."""
    return pa.schema([*corpus, *(plan.sample.schema.field(c) for c in ADDED_COLUMNS)])


def _assemble(schema: pa.Schema, known: pa.Table, gathered: pa.Table) -> pa.Table:
    columns = [known.column(f.name) if f.name in known.column_names else gathered.column(f.name) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def write_mixture(
    batches: Iterable[pa.Table | pa.RecordBatch],
    corpus: pa.Schema,
    plan: MixturePlan,
    write: Callable[[pa.Table], None],
    *,
    spill: Path,
    chunk_rows: int = GATHER_CHUNK_ROWS,
) -> pa.Table:
    """Stream the corpus once and hand the mixture's rows, whole and in the plan's order, to ``write``;
    returns the held-out table (few rows) with :data:`~mixassets.engine.heldout.HELDOUT_COLUMNS`.

    ``spill`` is a local directory for the gather's buckets (the selected rows, once)."""
    out = mixture_schema(corpus, plan)
    heldout_schema = pa.schema([corpus.field(c) for c in HELDOUT_COLUMNS])
    payload = [c for c in corpus.names if c not in index_columns(corpus)]
    sample = plan.sample.select([c for c in plan.sample.column_names if c != POSITION])
    positions = np.concatenate(
        [plan.sample.column(POSITION).to_numpy(), plan.heldout.column(POSITION).to_numpy()]
    ).astype(np.int64)
    m = sample.num_rows
    held: list[pa.Table] = [heldout_schema.empty_table()]
    start = 0
    for chunk in releasing(gather_rows(releasing(batches), positions, payload, spill=spill, chunk_rows=chunk_rows)):
        end = start + chunk.num_rows
        if start < m:
            take = min(end, m) - start
            write(_assemble(out, sample.slice(start, take), chunk.slice(0, take)))
        if end > m:
            skip = max(m - start, 0)
            known = plan.heldout.slice(max(start - m, 0), chunk.num_rows - skip)
            held.append(_assemble(heldout_schema, known, chunk.slice(skip)))
        start = end
    return pa.concat_tables(held).combine_chunks()


@dataclass(frozen=True)
class MixtureBuild:
    """A mixture built in memory (tests, small corpora): the table, and the plan that chose it."""

    table: pa.Table
    heldout: pa.Table
    plan: MixturePlan

    @property
    def composition(self) -> dict[str, Any]:
        return self.plan.composition

    @property
    def heldout_record(self) -> dict[str, Any]:
        return self.plan.heldout_record


def build_mixture(
    corpus: pa.Table, token_counts: Sequence[int], spec: MixtureSpec, *, batch_rows: int = 8_192
) -> MixtureBuild:
    """The streamed build (:func:`plan_mixture`, :func:`write_mixture`) of a table held in memory, with its
    token counts given."""
    columns = index_columns(corpus.schema)
    rows = pa.array(np.arange(corpus.num_rows, dtype=np.int64))
    index = corpus.select(columns).append_column(POSITION, rows)
    plan = plan_mixture(index, token_counts, spec)
    parts: list[pa.Table] = [mixture_schema(corpus.schema, plan).empty_table()]
    with tempfile.TemporaryDirectory(prefix="mixture-gather-") as spill:
        batches = corpus.to_batches(max_chunksize=batch_rows)
        heldout = write_mixture(batches, corpus.schema, plan, parts.append, spill=Path(spill))
    return MixtureBuild(pa.concat_tables(parts).combine_chunks(), heldout, plan)
