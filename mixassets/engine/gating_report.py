"""The gating report: one table across sources from their gate summaries, and its Markdown rendering.

Why a module: the report is a pure function of the per-source :class:`~mixassets.engine.gating_source.GateSummary`
values, so it is built here and the asset only reads the summaries and stores the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from mixassets.engine.gating_source import GateSummary, agreement_counts
from mixassets.engine.review import agreement_table
from mixtrain.markdown import markdown_table

SUMMARY_COLUMNS = (
    "ingested",
    "accepted",
    "quarantined",
    "rejected",
    "accepted_rate",
    "quarantined_rate",
    "rejected_rate",
    "rights_verified",
    "rights_partial",
    "rights_unknown",
    "redacted_docs",
    "stripped_lines",
)


@dataclass(frozen=True)
class GatingReport:
    table: pa.Table  # one row per source: SUMMARY_COLUMNS and PII hits per type
    markdown: str  # per source, rule hits and review agreement


def build_gating_report(summaries: Mapping[str, GateSummary]) -> GatingReport:
    """The report of the sources in ``summaries`` (in its order)."""
    rows = [
        {"source_id": sid, **{c: s.metrics.get(c) for c in SUMMARY_COLUMNS}, **s.pii_hits}
        for sid, s in summaries.items()
    ]
    rule_rows = [
        {"source_id": sid, "rule_id": rule, "hits": hits}
        for sid, s in summaries.items()
        for rule, hits in s.rule_hits.items()
    ]
    pii_cols = sorted({k for r in rows for k in r if k.startswith("pii_hits_")})
    for r in rows:
        for c in pii_cols:
            r.setdefault(c, 0)
    table = pa.Table.from_pylist(rows)
    # Summed over sources, then rated by the engine: a miss rate for "accepted", a false-positive rate for rules.
    agreement = agreement_table(agreement_counts(summaries)).to_pylist()
    md = "### Per source\n" + markdown_table(rows, ["source_id", *SUMMARY_COLUMNS, *pii_cols])
    md += "\n\n### Rule hits\n" + markdown_table(rule_rows, ["source_id", "rule_id", "hits"])
    if agreement:
        md += "\n\n### Review agreement\n" + markdown_table(
            agreement,
            [
                "rule_id",
                "reviewed",
                "overturned",
                "estimated_false_positive_rate",
                "estimated_false_negative_rate",
                "rate_ci_low",
                "rate_ci_high",
            ],
        )
    return GatingReport(table, md)
