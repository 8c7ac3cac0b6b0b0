"""More adapters over one base: ``task_adapter``, one partition per entry of ``adapters:`` (a tenant, a task).

Each partition reads the shared base model and the part of the mixture its spec names, so adding an adapter
trains only that adapter, and changing one adapter's spec (``adapter_spec``, observed per partition) makes
only its partition stale. Training, versioning and the manifest are ``sft_adapter``'s.
"""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetObservation,
    AssetSelection,
    DataVersion,
    DataVersionsByPartition,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    observable_source_asset,
    sensor,
)

from mixtrain.automation import rerun_when_changed
from mixtrain.config.training import AdapterSpec
from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.identity import spec_hash
from mixtrain.jobs import SEPARATE_SPECS_TAG
from mixtrain.partitions import ADAPTERS_PARTITION, adapter_partitions
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from training_assets.assets.model_store import local_model_dir
from training_assets.assets.models import train_adapter


def adapter_recipe(proj: Project, adapter_id: str) -> dict:
    """Everything that decides the adapter's weights: its full recipe (base model aside) and its data filter."""
    spec = proj.spec.adapters[adapter_id]
    recipe = spec.recipe(proj.spec.training)
    recipe.pop("base_model")
    return {"recipe": recipe, "data_filter": data_filter(spec)}


def data_filter(spec: AdapterSpec) -> dict:
    return {"sources": sorted(spec.sources), "domains": sorted(spec.domains)}


@observable_source_asset(
    partitions_def=adapter_partitions,
    tags={SEPARATE_SPECS_TAG: "adapters"},
    group_name="training",
    description="One adapter's spec (adapters.<id>) resolved against the training recipe, by content hash.",
)
def adapter_spec(context, project: ProjectResource) -> DataVersionsByPartition:
    proj = project.load()
    known = set(context.instance.get_dynamic_partitions(ADAPTERS_PARTITION))
    return DataVersionsByPartition(
        {aid: DataVersion(spec_hash(adapter_recipe(proj, aid))) for aid in proj.adapter_ids() if aid in known}
    )


refresh_adapter_specs = define_asset_job(
    "refresh_adapter_specs",
    selection=AssetSelection.tag(SEPARATE_SPECS_TAG, "adapters", include_sources=True),
    description="Fingerprint every adapter's spec (one Dagster job cannot span two partitions definitions).",
)


def select_rows(mixture: pa.Table, spec: AdapterSpec) -> pa.Table:
    """The mixture rows an adapter trains on (every occurrence, so upsampling and phases carry over)."""
    keep = pa.array([True] * mixture.num_rows)
    if spec.sources:
        keep = pc.and_(keep, pc.is_in(mixture["source_id"], pa.array(spec.sources, pa.string())))
    if spec.domains:
        keep = pc.and_(keep, pc.is_in(mixture["domain"], pa.array(spec.domains, pa.string())))
    return mixture.filter(keep)


def _write_shard(proj: Project, rows: pa.Table, name: str) -> dict:
    """The adapter's slice of the mixture as a local Parquet file (the job reads files), with its checksum."""
    path = local_model_dir(proj, ["mixture_cache", name])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    pq.write_table(rows, str(tmp))
    tmp.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest, "rows": rows.num_rows}


@asset(
    partitions_def=adapter_partitions,
    ins={
        "mixture": AssetIn(),
        "mixture_manifest": AssetIn(input_manager_key="json_io_manager"),
        "base_model": AssetIn(input_manager_key="json_io_manager"),
    },
    deps=["adapter_spec"],
    io_manager_key="json_io_manager",
    code_version="task-adapter-1",
    automation_condition=rerun_when_changed(),
    group_name="training",
    description="A LoRA adapter per entry of adapters: (tenant or task) over the shared base model, trained on "
    "its part of the mixture.",
)
def task_adapter(
    context: AssetExecutionContext,
    project: ProjectResource,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
):
    proj = project.load()
    aid = context.partition_key
    if aid not in proj.spec.adapters:
        raise ValueError(f"{proj.file}: no adapters.{aid} (the partition outlived its spec; run mixtrain run)")
    spec = proj.spec.adapters[aid]
    rows = select_rows(mixture, spec)
    if rows.num_rows == 0:
        raise ValueError(
            f"{proj.file}: field 'adapters.{aid}': the mixture has no rows of sources {spec.sources or 'any'} "
            f"and domains {spec.domains or 'any'} (give them mixture weight, or widen the filter)"
        )
    shard = _write_shard(proj, rows, f"{mixture_manifest['manifest_id']}-{aid}.parquet")
    return train_adapter(
        context,
        proj,
        ["task_adapter", aid],
        spec.recipe(proj.spec.training),
        shard["path"],
        [shard],
        mixture_manifest,
        base_model,
        data_filter=data_filter(spec),
        label=f"task_adapter[{aid}]",
    )


@sensor(
    target=AssetSelection.assets("task_adapter"),
    minimum_interval_seconds=30,
    description="Keeps one task_adapter partition per entry of adapters:, observes each adapter's spec when it "
    "changes (automation then retrains that partition) and requests a run for a new one.",
)
def adapter_partitions_sensor(context: SensorEvaluationContext, project: ProjectResource) -> SensorResult | SkipReason:
    proj = project.load()
    known = set(context.instance.get_dynamic_partitions(ADAPTERS_PARTITION))
    wanted = set(proj.adapter_ids())
    new, gone = sorted(wanted - known), sorted(known - wanted)
    seen = json.loads(context.cursor) if context.cursor else {}
    versions = {aid: spec_hash(adapter_recipe(proj, aid)) for aid in sorted(wanted)}
    changed = sorted(aid for aid, v in versions.items() if seen.get(aid) != v)
    if not new and not gone and not changed:
        return SkipReason(f"adapters unchanged ({len(known)})")
    requests = []
    if new:
        requests.append(adapter_partitions.build_add_request(new))
    if gone:
        requests.append(adapter_partitions.build_delete_request(gone))
    return SensorResult(
        dynamic_partitions_requests=requests,
        asset_events=[
            AssetObservation(asset_key="adapter_spec", partition=aid, tags={DATA_VERSION_TAG: versions[aid]})
            for aid in changed
        ],
        run_requests=[RunRequest(run_key=f"new-adapter-{aid}-{versions[aid]}", partition_key=aid) for aid in new],
        cursor=json.dumps(versions, sort_keys=True),
    )
