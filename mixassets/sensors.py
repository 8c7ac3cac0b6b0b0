"""A new spec file in the project's ``sources/`` directory becomes a partition and a run, without a deploy."""

from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mixassets.engine.vault import VAULT_KEY
from mixtrain.automation import sensor_status
from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.fingerprint import PER_SOURCE_FINGERPRINTS
from mixtrain.partitions import SOURCES_PARTITION, source_partitions
from mixtrain.resources import ProjectResource

PER_SOURCE_ASSETS = AssetSelection.assets(
    "raw_documents",
    "raw_rejects",
    AssetKey(VAULT_KEY),
    "review_overrides",
    "gated_documents",
    "decision_log",
    "quarantine",
)


@sensor(
    target=PER_SOURCE_ASSETS,
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="Adds a partition for each new source spec, records its fingerprint, and requests its run.",
)
def new_source_sensor(context: SensorEvaluationContext, project: ProjectResource) -> SensorResult | SkipReason:
    proj = project.load()
    known = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    new = [sid for sid in proj.source_ids() if sid not in known]
    if not new:
        return SkipReason(f"no new source specs ({len(known)} known)")
    return SensorResult(
        dynamic_partitions_requests=[source_partitions.build_add_request(new)],
        asset_events=[
            AssetObservation(asset_key=key, partition=sid, tags={DATA_VERSION_TAG: fingerprint(proj, sid)})
            for sid in new
            for key, fingerprint in PER_SOURCE_FINGERPRINTS.items()
        ],
        run_requests=[RunRequest(run_key=f"new-source-{sid}", partition_key=sid) for sid in new],
    )
