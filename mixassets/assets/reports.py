"""The gating report: one table across sources, from each gated partition's gate summary."""

import pyarrow as pa
from dagster import AssetIn, MetadataValue, asset

from mixassets.assets.corpus import gate_summary_path
from mixassets.engine.gating_report import build_gating_report
from mixassets.engine.gating_source import GateSummary
from mixtrain.automation import rerun_when_changed
from mixtrain.resources import ProjectResource
from mixtrain.storage import read_json
from mixtrain.versioning import table_output


@asset(
    ins={"source_manifest": AssetIn()},
    code_version="gating-report-2",
    automation_condition=rerun_when_changed(),
    group_name="curation",
    description="Gating outcomes across sources: counts, rates, rights coverage, PII by type, hits per rule, "
    "and review agreement per rule (an estimate of each rule's false-positive rate).",
)
def gating_report(project: ProjectResource, source_manifest: pa.Table):
    root = project.load().storage_root
    summaries = {sid: _gate_summary(root, sid) for sid in source_manifest.column("source_id").to_pylist()}
    report = build_gating_report(summaries)
    return table_output(report.table, {"sources": report.table.num_rows, "report": MetadataValue.md(report.markdown)})


def _gate_summary(root: str, source_id: str) -> GateSummary:
    path = gate_summary_path(root, source_id)
    if not path.exists():
        raise RuntimeError(f"gated_documents[{source_id}] has no gate summary at {path}: rematerialize that partition")
    return GateSummary.from_json(read_json(path))
