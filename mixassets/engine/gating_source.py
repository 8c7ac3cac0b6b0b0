"""Gating one source end to end: stream the raw partition through the gate, apply its reviewer verdicts, and
account for every document, returning what it came to as one typed :class:`GateSummary`.

Why a module: the gate (:mod:`~mixassets.engine.gating_stream`) and the review (:mod:`~mixassets.engine.
review_stream`) each see part of the story; the summary a report reads and the conservation check need the
whole of it. The tables written are tallied as they are written (:class:`TallySink`), so nothing is read back
from the outputs to count them, and the summary is a plain JSON-ready value, so a report reads it as it was
made instead of parsing flattened metadata keys.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixassets.engine.gating_stream import (
    GateSink,
    Openable,
    ParquetGateSink,
    TableGateSink,
    gate_stream,
    parquet_batches,
    table_batches,
)
from mixassets.engine.review_stream import ReviewingSink
from mixassets.engine.rights import coverage
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA
from mixtrain.tables import ROW_GROUP_ROWS, StoredTable

# Gates the source into the sink it is given and returns the gate's counts (``gate_stream``'s keys).
GateStep = Callable[[GateSink], Mapping[str, int | float]]
OUTCOMES = ("accepted", "quarantined", "rejected")  # every ingested document ends in exactly one
_RULE_PREFIX = "rule."
_PII_PREFIX = "pii_hits_"


@dataclass(frozen=True)
class ReviewTally:
    """How many documents reviewers ruled on for one rule (or ``accepted``), and how many agreed with it."""

    reviewed: int
    agreed: int


@dataclass(frozen=True)
class GateSummary:
    """What gating one source came to.

    ``metrics`` are the gate's counts (``gate()``'s keys: per-rule hits ``rule.<id>``, PII hits
    ``pii_hits_<type>``, timings...) with the outcome counts and rates over everything ingested (after review
    overrides), the rights coverage of the accepted documents, the unreadable records and the review moves.
    ``agreement`` is the per-rule review agreement, measured against the gate's own decisions.
    """

    metrics: Mapping[str, int | float]
    agreement: Mapping[str, ReviewTally] = field(default_factory=dict)

    @property
    def rule_hits(self) -> dict[str, int]:
        return {k.removeprefix(_RULE_PREFIX): int(v) for k, v in self.metrics.items() if k.startswith(_RULE_PREFIX)}

    @property
    def pii_hits(self) -> dict[str, int | float]:
        return {k: v for k, v in self.metrics.items() if k.startswith(_PII_PREFIX)}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; ``metrics`` as ``[key, value]`` pairs, because their order (the gate's) is the order of the
        PII columns in the gating report and JSON objects are stored with sorted keys."""
        return {
            "metrics": [[k, v] for k, v in self.metrics.items()],
            "agreement": {rule: {"reviewed": t.reviewed, "agreed": t.agreed} for rule, t in self.agreement.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateSummary:
        agreement = {rule: ReviewTally(int(t["reviewed"]), int(t["agreed"])) for rule, t in data["agreement"].items()}
        return cls(metrics=dict(data["metrics"]), agreement=agreement)


@dataclass(frozen=True)
class Conservation:
    """ingested = accepted + quarantined + rejected, by count and by id."""

    counts: Mapping[str, int]  # ingested and each of OUTCOMES
    missing_ids: int  # ingested ids in no output
    unexpected_ids: int  # output ids that were never ingested

    @property
    def accounted(self) -> int:
        return sum(self.counts[k] for k in OUTCOMES)

    @property
    def passed(self) -> bool:
        return self.accounted == self.counts["ingested"] and self.missing_ids == 0 and self.unexpected_ids == 0

    def metadata(self) -> dict[str, int]:
        extra = {"accounted": self.accounted, "missing_ids": self.missing_ids, "unexpected_ids": self.unexpected_ids}
        return {**self.counts, **extra}


@dataclass(frozen=True)
class GateResult:
    summary: GateSummary
    conservation: Conservation


class TallySink:
    """A :class:`GateSink` that passes every batch on to ``inner`` and keeps the columns the summary needs of
    what it passed on: the accepted documents' ids and rights, the held documents' ids and dispositions."""

    def __init__(self, inner: GateSink) -> None:
        self.inner = inner
        self._accepted: list[pa.Table] = [DOCUMENT_SCHEMA.empty_table().select(["doc_id", "license", "attribution"])]
        self._held_ids: list[pa.ChunkedArray] = [pa.chunked_array([], pa.string())]
        self._dispositions: list[str] = []

    def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
        self.inner.write(accepted, quarantine, decisions)
        if accepted.num_rows:
            self._accepted.append(accepted.select(["doc_id", "license", "attribution"]).cast(self._accepted[0].schema))
        if quarantine.num_rows:
            self._held_ids.append(quarantine.column("doc_id").cast(pa.string()))
            self._dispositions += quarantine.column("disposition").to_pylist()

    @property
    def accepted(self) -> pa.Table:
        return pa.concat_tables(self._accepted)

    @property
    def held_ids(self) -> pa.ChunkedArray:
        return pa.chunked_array([c for ids in self._held_ids for c in ids.chunks], pa.string())

    def outcome_counts(self) -> dict[str, int]:
        return {
            "accepted": sum(t.num_rows for t in self._accepted),
            "quarantined": self._dispositions.count("quarantined"),
            "rejected": self._dispositions.count("rejected"),
        }


def gate_source(
    raw: str | Openable | StoredTable,
    rejects: pa.Table,
    spec: SourceSpec,
    overrides: pa.Table,
    *,
    outputs: Sequence[str | Path] | TableGateSink,
    forbidden_tags: Collection[str] = (),
    batch_rows: int = 4_096,
    gate: GateStep | None = None,
    progress: Callable[[int], None] | None = None,
) -> GateResult:
    """Gate the raw partition ``raw`` (a committed table or a Parquet file, streamed ``batch_rows`` at a time)
    of one source into ``outputs`` (a :class:`TableGateSink`, or the files accepted, quarantine, decisions of a
    :class:`ParquetGateSink`), with the unreadable ``rejects`` held and the reviewer ``overrides`` applied last.
    Memory grows with the review sheet and the ids of the source, not with its text. ``gate`` replaces the
    local gate step (``gate_stream`` over ``raw``), e.g. with the Ray gate over the same rows; the review, the
    tally and the conservation check stay the same. ``progress`` is told the rows of each batch the local gate
    step has gated."""
    stored = raw if isinstance(raw, StoredTable) else None
    batches = table_batches(stored, batch_rows) if stored is not None else parquet_batches(raw, batch_rows)
    with outputs if isinstance(outputs, TableGateSink) else ParquetGateSink(*outputs) as files:
        tally = TallySink(files)
        sink = ReviewingSink(tally, overrides)
        sink.write(DOCUMENT_SCHEMA.empty_table(), rejects, DECISION_SCHEMA.empty_table())  # unreadable: held
        if gate is None:
            gate_counts = gate_stream(batches, spec, forbidden_tags=forbidden_tags, sink=sink, progress=progress)
        else:
            gate_counts = gate(sink)
        raw_reviewed = _read_rows(raw, pc.field("doc_id").isin(sink.reviewed_ids))
        review_stats, agreement = sink.finish(raw_reviewed)
    raw_ids = _read_rows(raw, None, columns=["doc_id"]).column("doc_id")
    counts = {"ingested": len(raw_ids) + rejects.num_rows, **tally.outcome_counts()}
    accepted = tally.accepted
    metrics: dict[str, int | float] = {k: v for k, v in gate_counts.items() if k not in counts}
    metrics.update(counts)
    for k in OUTCOMES:  # over everything ingested, after review overrides
        metrics[f"{k}_rate"] = round(counts[k] / counts["ingested"], 6) if counts["ingested"] else 0.0
    metrics.update(coverage(accepted))
    metrics["unreadable"] = rejects.num_rows
    metrics["accepted_by_review"] = review_stats["accepted_by_review"]
    metrics["rejected_by_review"] = review_stats["rejected_by_review"]
    tallies = {r["rule_id"]: ReviewTally(r["reviewed"], r["agreed"]) for r in agreement.to_pylist()}
    # Compared in Arrow (hash sets of the id columns), not as Python sets of every doc_id.
    ids_in = pa.chunked_array([*raw_ids.chunks, *rejects.column("doc_id").chunks], pa.string())
    ids_out = pa.chunked_array([*accepted.column("doc_id").chunks, *tally.held_ids.chunks], pa.string())
    conservation = Conservation(counts, _count_absent(ids_in, ids_out), _count_absent(ids_out, ids_in))
    return GateResult(GateSummary(metrics, tallies), conservation)


def _read_rows(
    path: str | Openable | StoredTable, where: pc.Expression | None, columns: list[str] | None = None
) -> pa.Table:
    """The rows of a committed table or a Parquet file that satisfy ``where`` (all when None), read row group by
    row group without pre-buffering (see ``parquet_batches``), so memory holds what is kept and one row group,
    not the file."""
    if isinstance(path, StoredTable):
        fields = path.schema if columns is None else pa.schema([path.schema.field(c) for c in columns])
        kept = [fields.empty_table()]
        for batch in path.batches(columns=columns, batch_size=ROW_GROUP_ROWS):
            table = pa.Table.from_batches([batch])
            kept.append(table if where is None else table.filter(where))
        return pa.concat_tables(kept).combine_chunks()
    with open(path, "rb") if isinstance(path, str) else path.open("rb") as f:
        parquet = pq.ParquetFile(f, pre_buffer=False)
        schema = (
            parquet.schema_arrow if columns is None else pa.schema([parquet.schema_arrow.field(c) for c in columns])
        )
        kept = [schema.empty_table()]
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns, use_threads=False)
            kept.append(table if where is None else table.filter(where))
    return pa.concat_tables(kept).combine_chunks()


def _count_absent(ids: pa.ChunkedArray, others: pa.ChunkedArray) -> int:
    """How many of ``ids`` are not among ``others``."""
    if len(ids) == 0:
        return 0
    return int(pc.sum(pc.invert(pc.is_in(ids, value_set=others.combine_chunks()))).as_py() or 0)


def agreement_counts(summaries: Mapping[str, GateSummary]) -> dict[str, tuple[int, int]]:
    """``{rule: (reviewed, agreed)}`` summed over sources, as :func:`~mixassets.engine.review.agreement_table`
    takes them."""
    total: dict[str, list[int]] = {}
    for summary in summaries.values():
        for rule, t in summary.agreement.items():
            acc = total.setdefault(rule, [0, 0])
            acc[0] += t.reviewed
            acc[1] += t.agreed
    return {rule: (r, a) for rule, (r, a) in total.items()}
