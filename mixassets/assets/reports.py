"""The gating report: one table across sources, read from each gated partition's recorded metrics."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from mixassets.engine.review import agreement_table
from mixtrain.automation import rerun_when_changed
from mixtrain.markdown import markdown_table
from mixtrain.summary import latest_metadata
from mixtrain.versioning import table_output

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


@asset(
    ins={"source_manifest": AssetIn()},
    code_version="gating-report-2",
    automation_condition=rerun_when_changed(),
    group_name="curation",
    description="Gating outcomes across sources: counts, rates, rights coverage, PII by type, hits per rule, "
    "and review agreement per rule (an estimate of each rule's false-positive rate).",
)
def gating_report(context: AssetExecutionContext, source_manifest: pa.Table):
    rows, rule_rows, review = [], [], {}
    for sid in source_manifest.column("source_id").to_pylist():
        m = latest_metadata(context.instance, "gated_documents", sid)
        rows.append(
            {
                "source_id": sid,
                **{c: m.get(c) for c in SUMMARY_COLUMNS},
                **{k: v for k, v in m.items() if k.startswith("pii_hits_")},
            }
        )
        for key, value in m.items():
            if key.startswith("rule."):
                rule_rows.append({"source_id": sid, "rule_id": key.removeprefix("rule."), "hits": int(value)})
            elif key.startswith("review/"):
                _, rule, what = key.split("/", 2)
                if what in ("reviewed", "agreed"):
                    review.setdefault(rule, {"reviewed": 0, "agreed": 0})[what] += int(value)
    pii_cols = sorted({k for r in rows for k in r if k.startswith("pii_hits_")})
    for r in rows:
        for c in pii_cols:
            r.setdefault(c, 0)
    table = pa.Table.from_pylist(rows)
    # Summed over sources, then rated by the engine: a miss rate for "accepted", a false-positive rate for rules.
    agreement = agreement_table({r: (c["reviewed"], c["agreed"]) for r, c in review.items()}).to_pylist()
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
    return table_output(table, {"sources": table.num_rows, "report": MetadataValue.md(md)})
