"""Gating over time: one row per source, rule and materialization of that source's gated partition.

Why rebuilt from every materialization rather than appended to: the gate's counts are already recorded with each
materialization of ``gated_documents`` (its metadata), so the history is a pure function of that record. Building
it whole each time means it is complete even for materializations made before the history asset existed, it cannot
drift from the event log, and a rerun of the history itself never double-counts. The asset layer reads the records;
this module only shapes them, so the table can be tested and rebuilt without Dagster.

Which rules a row exists for: every rule the gate *ran* in that materialization (``time_s.<rule>`` is recorded for
each), with 0 hits when it fired on nothing, plus the finer rule ids that fired (``pii.email``). A rule that did not
run (switched off for the source) has no row rather than a misleading 0, so a chart shows a gap, not a drop.
Scores are not summarised here: each decision row carries its own ``score`` in the decision log, where a query can
chart a rule's score distribution, and a per-rule sum in the gate's counts would make the streaming and Ray gates'
counts depend on the order floats are added in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

RULE_HITS = "rule."
RULE_TIME = "time_s."

HISTORY_SCHEMA = pa.schema(
    [
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("materialized_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("data_version", pa.string()),  # of the gated partition that materialization wrote
        pa.field("ingested", pa.int64()),  # documents the source held then (the rate's denominator)
        pa.field("hits", pa.int64(), nullable=False),  # documents the rule fired on
        pa.field("hit_rate", pa.float64()),  # hits / ingested; null when nothing was ingested
        pa.field("seconds", pa.float64()),  # the rule's CPU time in that run; null for a finer id
    ]
)


@dataclass(frozen=True)
class GateMaterialization:
    """What one materialization of a gated partition recorded."""

    source_id: str
    run_id: str
    timestamp: float  # seconds since the epoch, as Dagster stores it
    data_version: str | None
    metrics: Mapping[str, float]


def build_gating_history(materializations: Iterable[GateMaterialization]) -> pa.Table:
    """The history table, ordered by time, then source, then rule."""
    rows = []
    for m in sorted(materializations, key=lambda m: (m.timestamp, m.source_id, m.run_id)):
        ingested = m.metrics.get("ingested")
        n = None if ingested is None else int(ingested)
        ran = {k.removeprefix(RULE_TIME): float(v) for k, v in m.metrics.items() if k.startswith(RULE_TIME)}
        hits = {k.removeprefix(RULE_HITS): int(v) for k, v in m.metrics.items() if k.startswith(RULE_HITS)}
        at = datetime.fromtimestamp(m.timestamp, tz=UTC)
        for rule in sorted(ran.keys() | hits.keys()):
            h = hits.get(rule, 0)
            rows.append(
                {
                    "source_id": m.source_id,
                    "rule_id": rule,
                    "materialized_at": at,
                    "run_id": m.run_id,
                    "data_version": m.data_version,
                    "ingested": n,
                    "hits": h,
                    "hit_rate": h / n if n else None,
                    "seconds": ran.get(rule),
                }
            )
    return pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)


def latest_hit_rates(history: pa.Table) -> dict[str, float]:
    """Per rule, its hit rate over every source's latest materialization (hits summed over ingested summed): the
    few numbers the history asset records as metadata, which Dagster plots across its own materializations."""
    rows = history.to_pylist()
    latest: dict[str, tuple[datetime, str]] = {}
    for row in rows:
        at = (row["materialized_at"], row["run_id"])
        latest[row["source_id"]] = max(latest.get(row["source_id"], at), at)
    hits: dict[str, int] = {}
    seen: dict[str, int] = {}
    for row in rows:
        if (row["materialized_at"], row["run_id"]) != latest[row["source_id"]] or row["ingested"] is None:
            continue
        hits[row["rule_id"]] = hits.get(row["rule_id"], 0) + row["hits"]
        seen[row["rule_id"]] = seen.get(row["rule_id"], 0) + row["ingested"]
    return {rule: round(hits[rule] / seen[rule], 6) for rule in sorted(hits) if seen[rule]}
