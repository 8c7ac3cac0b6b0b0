"""The gating report: one table across sources, from each gated partition's gate summary."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from mixassets.assets.corpus import gate_summary_path
from mixassets.engine.gate_source import GateSummary, agreement_counts
from mixassets.engine.review import agreement_table
from mixtrain.automation import rerun_when_changed
from mixtrain.markdown import markdown_table
from mixtrain.resources import ProjectResource
from mixtrain.storage import read_json
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
def gating_report(context: AssetExecutionContext, project: ProjectResource, source_manifest: pa.Table):
    root = project.load().storage_root
    summaries = {
        sid: GateSummary.from_json(read_json(gate_summary_path(root, sid)))
        for sid in source_manifest.column("source_id").to_pylist()
    }
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
    return table_output(table, {"sources": table.num_rows, "report": MetadataValue.md(md)})
