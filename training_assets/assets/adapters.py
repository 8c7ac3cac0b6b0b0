"""More adapters over one base: ``task_adapter``, one partition per entry of ``adapters:`` (a tenant, a task).

Each partition reads the shared base model and the part of the mixture its spec names, so adding an adapter
trains only that adapter, and changing one adapter's spec (``adapter_spec``, observed per partition) makes
only its partition stale. Training, versioning and the model record are ``sft_adapter``'s.
"""

import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    DataVersion,
    DataVersionsByPartition,
    Output,
    define_asset_job,
    observable_source_asset,
)

from mixtrain.identity import resolve_relative, spec_hash
from mixtrain.jobs import SEPARATE_SPECS_TAG
from mixtrain.partitions import ADAPTERS_PARTITION, adapter_partitions
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from training_assets.assets.model_store import base_pin, mixture_slice, model_inputs, train_and_record, training_asset
from training_assets.assets.models import sft_job
from training_assets.engine.adapter_data import data_filter, select_rows
from training_assets.resources import TrainingLauncher


def adapter_recipe(proj: Project, adapter_id: str) -> dict:
    """Everything that decides the adapter's weights: its full recipe (base model aside) and its data filter."""
    spec = proj.spec.adapters[adapter_id]
    recipe = spec.recipe(proj.spec.training)
    recipe.pop("base_model")
    return {"recipe": recipe, "data_filter": data_filter(spec)}


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


@training_asset(
    partitions_def=adapter_partitions,
    ins=model_inputs("base_model"),
    deps=["adapter_spec"],
    code_version="task-adapter-1",
    description="A LoRA adapter per entry of adapters: (tenant or task) over the shared base model, trained on "
    "its part of the mixture.",
)
def task_adapter(
    context: AssetExecutionContext,
    project: ProjectResource,
    training_launcher: TrainingLauncher,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
) -> Output:
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
    shard = mixture_slice(proj, rows, f"{mixture_manifest['manifest_id']}-{aid}.parquet")
    key, recipe, data = ["task_adapter", aid], spec.recipe(proj.spec.training), data_filter(spec)
    mixture_path = resolve_relative(shard["path"], proj.storage_root)
    job, version = sft_job(context, proj, key, recipe, base_model, mixture_manifest, mixture_path, [shard], data)
    merged = job.config.lora.merge
    return train_and_record(
        context, proj, training_launcher, job, key, version, mixture_manifest, label=f"task_adapter[{aid}]",
        base_model_path=base_model["path"], base=base_pin(base_model), merged=merged, data_filter=data,
    )  # fmt: skip
