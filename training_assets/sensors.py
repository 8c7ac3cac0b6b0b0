"""Sensors of the training side: one ``task_adapter`` partition per entry of ``adapters:``."""

import json

import dagster as dg

from mixtrain.automation import sensor_status
from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.identity import spec_hash
from mixtrain.partitions import ADAPTERS_PARTITION, adapter_partitions
from mixtrain.resources import ProjectResource
from training_assets.assets.adapters import adapter_recipe


@dg.sensor(
    target=dg.AssetSelection.assets("task_adapter"),
    minimum_interval_seconds=30,
    default_status=sensor_status(),
    description="Keeps one task_adapter partition per entry of adapters:, observes each adapter's spec when it "
    "changes (automation then retrains that partition) and requests a run for a new one.",
)
def adapter_partitions_sensor(
    context: dg.SensorEvaluationContext, project: ProjectResource
) -> dg.SensorResult | dg.SkipReason:
    proj = project.load()
    known = set(context.instance.get_dynamic_partitions(ADAPTERS_PARTITION))
    wanted = set(proj.adapter_ids())
    new, gone = sorted(wanted - known), sorted(known - wanted)
    seen = json.loads(context.cursor) if context.cursor else {}
    versions = {aid: spec_hash(adapter_recipe(proj, aid)) for aid in sorted(wanted)}
    changed = sorted(aid for aid, v in versions.items() if seen.get(aid) != v)
    if not new and not gone and not changed:
        return dg.SkipReason(f"adapters unchanged ({len(known)})")
    requests = []
    if new:
        requests.append(adapter_partitions.build_add_request(new))
    if gone:
        requests.append(adapter_partitions.build_delete_request(gone))
    return dg.SensorResult(
        dynamic_partitions_requests=requests,
        asset_events=[
            dg.AssetObservation(asset_key="adapter_spec", partition=aid, tags={DATA_VERSION_TAG: versions[aid]})
            for aid in changed
        ],
        run_requests=[dg.RunRequest(run_key=f"new-adapter-{aid}-{versions[aid]}", partition_key=aid) for aid in new],
        cursor=json.dumps(versions, sort_keys=True),
    )
