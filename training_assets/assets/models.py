"""Model stages: the base model on disk once, and a LoRA adapter trained on the mixture.

Each model is a ``save_pretrained`` directory under the storage root plus a record (the JSON output, see
``training_assets.records``), so the record — not the weights — is what lineage and the eval stage pass around.
"""

from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, Output

from mixtrain.identity import relative_path, resolve_relative
from mixtrain.model_store import publish_model
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from mixtrain.versioning import json_output
from training_assets.assets.model_store import (
    base_pin,
    local_mixture,
    local_model_dir,
    model_cache,
    model_inputs,
    model_version,
    phase_order,
    recipe_hash,
    train_and_record,
    training_asset,
)
from training_assets.engine.base_model import materialize_base_model
from training_assets.engine.config import SFTConfig
from training_assets.engine.jobs import TrainJob
from training_assets.records import BaseModelRecord
from training_assets.resources import TrainingLauncher


@training_asset(
    deps=["base_model_spec"],
    code_version="base-1",
    description="The base model as safetensors (SmolLM2-135M-Instruct from its GGUF, or any HF dir/id).",
)
def base_model(context: AssetExecutionContext, project: ProjectResource):
    proj = project.load()
    name = proj.spec.training.base_model
    local = Path(proj.resolve(name))
    # Built beside the versions, then published as base_model/<weights sha>/ behind base_model/_current.json:
    # a changed base is a new directory, so adapters and releases pinned to the old one still find it.
    build = local_model_dir(proj, ["base_model", ".build"])
    revision = proj.spec.training.base_model_revision
    info = materialize_base_model(str(local) if local.is_dir() else name, str(build), revision)
    published = publish_model(
        build, proj.storage_root, "base_model", model_cache(proj), version=info["weights_sha256"][:16], move=True
    )
    # Named relative to the storage root (readers resolve_relative them): a copied or moved project keeps a
    # record that still points at its own copy of the weights.
    path = relative_path(published["local_path"], proj.storage_root)
    info["path"] = path
    record: BaseModelRecord = {
        "location": relative_path(published["location"], proj.storage_root),
        "requested": name,
        "revision": revision,
        **info,
        "version": published["version"],
        "tokenizer_sha256": published["tokenizer_sha256"],
    }
    metadata = {"n_params": int(info.get("n_params", 0)), "weights_sha256": info["weights_sha256"], "path": path}
    return json_output(record, info["weights_sha256"], metadata)


def sft_job(
    context: AssetExecutionContext,
    proj: Project,
    key: list[str],
    recipe: dict[str, Any],
    base_model: dict,
    mixture_manifest: dict,
    mixture_path: str,
    data_shards: list[dict[str, Any]] | None,
    data_filter: dict[str, Any] | None = None,
) -> tuple[TrainJob, str]:
    """The job that trains a LoRA adapter with ``recipe`` over ``base_model`` on the mixture file at
    ``mixture_path``, and the version it makes (``data_filter``, which part of the mixture an adapter partition
    reads, is part of it)."""
    version = model_version(
        mixture_manifest["manifest_id"],
        recipe_hash(recipe, data_filter),
        base_model["weights_sha256"],
        context.assets_def.code_versions_by_key[context.asset_key],
    )
    job = TrainJob(
        config=SFTConfig.from_recipe(recipe),
        base_dir=resolve_relative(base_model["path"], proj.storage_root),
        base_weights_sha256=base_model["weights_sha256"],
        mixture_path=mixture_path,
        out_dir=str(local_model_dir(proj, [*key, version])),  # staged and swapped in whole by the engine
        data_manifest_id=mixture_manifest["manifest_id"],
        phase_order=phase_order(mixture_manifest),
        data_shards=data_shards,
        project_dir=str(proj.root),
    )
    return job, version


@training_asset(
    ins=model_inputs("base_model"),
    deps=["training_recipe"],
    code_version="sft-1",
    description="LoRA adapter trained on the mixture; its run manifest records config, data and hardware.",
)
def sft_adapter(
    context: AssetExecutionContext,
    project: ProjectResource,
    training_launcher: TrainingLauncher,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
) -> Output:
    proj = project.load()
    recipe = proj.spec.training.model_dump(mode="json")
    mixture_path = local_mixture(proj, mixture, mixture_manifest)
    key = ["sft_adapter"]
    job, version = sft_job(
        context, proj, key, recipe, base_model, mixture_manifest, mixture_path, mixture_manifest.get("shards")
    )
    return train_and_record(
        context,
        proj,
        training_launcher,
        job,
        key,
        version,
        mixture_manifest,
        base_model_path=base_model["path"],
        base=base_pin(base_model),
        merged=job.config.lora.merge,
    )
