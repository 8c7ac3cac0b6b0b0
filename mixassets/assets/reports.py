"""The gating report (one table across sources, from each gated partition's gate summary) and the gating history
(every materialization of every gated partition, from Dagster's event log)."""

import math
from collections.abc import Iterator

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue, asset

from mixassets.assets.corpus import gate_summary_path
from mixassets.engine.gating_history import GateMaterialization, build_gating_history, latest_hit_rates
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


@asset(
    deps=["gated_documents"],
    code_version="gating-history-1",
    automation_condition=rerun_when_changed(),
    group_name="curation",
    description="Gating over time: one row per source, rule and materialization of the gated partition (hits, "
    "hit rate, CPU seconds), rebuilt from the event log. Its metadata holds each rule's hit rate "
    "over every source's latest gating, which the UI plots across materializations.",
)
def gating_history(context: AssetExecutionContext):
    table = build_gating_history(_gate_materializations(context.instance))
    rates = latest_hit_rates(table)
    return table_output(
        table,
        {
            "materializations": len(set(table.column("run_id").to_pylist())),
            **{f"hit_rate/{rule}": rate for rule, rate in rates.items()},
        },
    )


def _gate_materializations(instance: DagsterInstance, page: int = 500) -> Iterator[GateMaterialization]:
    """Every materialization of every ``gated_documents`` partition the instance recorded, oldest first."""
    cursor = None
    while True:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("gated_documents")), limit=page, cursor=cursor, ascending=True
        )
        for record in result.records:
            m = record.asset_materialization
            if m is None or m.partition is None:
                continue
            metrics = {k: v.value for k, v in m.metadata.items() if _is_number(getattr(v, "value", None))}
            yield GateMaterialization(
                m.partition,
                record.run_id,
                record.timestamp,
                m.tags.get("dagster/data_version") if m.tags else None,
                metrics,
            )
        if not result.has_more:
            return
        cursor = result.cursor


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
