"""What a run produced, read back from Dagster's event log: the numbers the demo prints.

The core reads metadata and check results; each domain package renders its own section from them."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance


def latest_metadata(instance: DagsterInstance, key: str, partition: str | None = None) -> dict[str, Any]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return {}
    mat = records[0].asset_materialization
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def latest_check(instance: DagsterInstance, key: str, check: str) -> dict[str, Any] | None:
    from dagster import AssetCheckKey

    rec = instance.event_log_storage.get_latest_asset_check_execution_by_key([AssetCheckKey(AssetKey(key), check)])
    execution = rec.get(AssetCheckKey(AssetKey(key), check))
    if execution is None or execution.event is None:
        return None
    data = execution.event.dagster_event.event_specific_data  # AssetCheckEvaluation
    passed = getattr(data, "passed", None)
    meta = {k: getattr(v, "value", v) for k, v in (getattr(data, "metadata", {}) or {}).items()}
    return {"passed": passed, **meta}


SECTIONS_GROUP = "mixtrain.summary"


def render_summary(instance: DagsterInstance) -> str:
    """Each domain package prints its own stages (entry point group ``mixtrain.summary``, in name order:
    data, then training, then evaluation), so the core knows no stage by name."""
    sections = sorted(importlib.metadata.entry_points(group=SECTIONS_GROUP), key=lambda e: e.name)
    return "\n".join(line for ep in sections for line in ep.load()(instance))
