"""Reviewer verdicts applied to a gate stream, holding back only the reviewed documents.

A review sheet names a few hundred documents of a source that may hold millions, so the verdicts are applied
without materialising the source: every batch passes through to the inner sink except the documents a
reviewer ruled on, which are set aside; at the end :func:`apply_overrides` and :func:`review_agreement` run on
those few (the same functions the whole-table path uses, so the two cannot disagree on a verdict) and the
result is written last. Documents a verdict keeps where the gate put them land at the end of their table
rather than in stream order; nothing downstream reads order into the gated tables.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.gating_stream import GateSink
from mixassets.engine.review import apply_overrides, review_agreement
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA


class ReviewingSink:
    """A :class:`GateSink` that applies one source's ``overrides`` before handing batches to ``inner``.

    Call :meth:`finish` once the stream is done, with the raw rows of the reviewed documents (the source's
    raw documents filtered to :attr:`reviewed_ids`); it returns the review statistics and the per-rule
    agreement table, measured against the gate's own (pre-override) decisions.
    """

    def __init__(self, inner: GateSink, overrides: pa.Table) -> None:
        self.inner = inner
        self.overrides = overrides
        self.reviewed_ids = pa.array(sorted(set(overrides.column("doc_id").to_pylist())), type=pa.string())
        self._accepted: list[pa.Table] = []
        self._held: list[pa.Table] = []
        self._finished = False

    def _split(self, table: pa.Table, keep: list[pa.Table]) -> pa.Table:
        if not len(self.reviewed_ids) or not table.num_rows:
            return table
        reviewed = pc.is_in(table.column("doc_id"), value_set=self.reviewed_ids)
        held_back = table.filter(reviewed)
        if held_back.num_rows:  # an empty table per batch would grow with the source, not with the review sheet
            keep.append(held_back)
        return table.filter(pc.invert(reviewed))

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        if self._finished:
            raise RuntimeError("ReviewingSink.write after finish")
        self.inner.write(self._split(accepted, self._accepted), self._split(quarantine, self._held), decisions)

    def finish(self, raw_reviewed: pa.Table) -> tuple[dict[str, Any], pa.Table]:
        self._finished = True
        accepted = pa.concat_tables([DOCUMENT_SCHEMA.empty_table(), *self._accepted])
        held = pa.concat_tables([QUARANTINE_SCHEMA.empty_table(), *self._held])
        agreement = review_agreement(self.overrides, accepted, held)
        new_accepted, new_held, new_decisions, stats = apply_overrides(
            accepted, held, DECISION_SCHEMA.empty_table(), self.overrides, raw=raw_reviewed
        )
        self.inner.write(new_accepted, new_held, new_decisions)
        return stats, agreement
