"""Model stages: the base model on disk once, and a LoRA adapter trained on the mixture.

Each model is a ``save_pretrained`` directory under the storage root plus a manifest (the JSON output), so
the manifest — not the weights — is what lineage and the eval stage pass around.
"""

from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from mixtrain.automation import rerun_when_changed
from mixtrain.identity import spec_hash
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from mixtrain.storage import publish_model_dir
from mixtrain.versioning import json_output
from training_assets.assets.launch import launch_training
from training_assets.assets.model_store import (
    EXECUTION_FIELDS,
    keep_version,
    lineage_markdown,
    local_mixture,
    local_model_dir,
    model_version,
)
from training_assets.engine.base_model import materialize_base_model


@asset(
    deps=["base_model_spec"],
    io_manager_key="json_io_manager",
    code_version="base-1",
    automation_condition=rerun_when_changed(),
    group_name="training",
    description="The base model as safetensors (SmolLM2-135M-Instruct from its GGUF, or any HF dir/id).",
)
def base_model(context: AssetExecutionContext, project: ProjectResource):
    proj = project.load()
    name = proj.spec.training.base_model
    local = Path(proj.resolve(name))
    out = local_model_dir(proj, "base_model")
    info = materialize_base_model(str(local) if local.is_dir() else name, str(out))
    location = publish_model_dir(out, proj.storage_root, "base_model")
    # info["path"] (the absolute local directory) is the one path both the manifest and the metadata report.
    manifest = {"location": location, "requested": name, **info}
    return json_output(
        manifest,
        info["weights_sha256"],
        {"n_params": int(info.get("n_params", 0)), "weights_sha256": info["weights_sha256"], "path": info["path"]},
    )


@asset(
    ins={
        "mixture": AssetIn(),
        "mixture_manifest": AssetIn(input_manager_key="json_io_manager"),
        "base_model": AssetIn(input_manager_key="json_io_manager"),
    },
    deps=["training_recipe"],
    io_manager_key="json_io_manager",
    code_version="sft-1",
    automation_condition=rerun_when_changed(),
    group_name="training",
    description="LoRA adapter trained on the mixture; its run manifest records config, data and hardware.",
)
def sft_adapter(
    context: AssetExecutionContext,
    project: ProjectResource,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
):
    proj = project.load()
    mixture_path = local_mixture(proj, mixture, mixture_manifest)
    return train_adapter(
        context,
        proj,
        ["sft_adapter"],
        proj.spec.training.model_dump(mode="json"),
        mixture_path,
        mixture_manifest.get("shards"),
        mixture_manifest,
        base_model,
    )


def train_adapter(
    context: AssetExecutionContext,
    proj: Project,
    key: list[str],
    recipe: dict[str, Any],
    mixture_path: str,
    data_shards: list[dict[str, Any]] | None,
    mixture_manifest: dict,
    base_model: dict,
    data_filter: dict[str, Any] | None = None,
    label: str | None = None,
) -> Output:
    """Train one LoRA adapter over ``base_model`` on the mixture file at ``mixture_path``, store it as a new
    version under ``key`` and return its manifest. ``data_filter`` (which part of the mixture an adapter
    partition reads) is part of the version and of the manifest; ``label`` names the model in its history
    (default: the asset key)."""
    learnt = {k: v for k, v in recipe.items() if k not in EXECUTION_FIELDS}
    version = model_version(
        mixture_manifest["manifest_id"],
        spec_hash(learnt if data_filter is None else {"recipe": learnt, "data_filter": data_filter}),
        base_model["weights_sha256"],
        context.assets_def.code_versions_by_key[context.asset_key],
    )
    final = local_model_dir(proj, [*key, version])
    job = {
        "kind": "sft",
        "base_dir": base_model["path"],
        "mixture_path": mixture_path,
        "recipe": recipe,
        "out_dir": str(final),  # written to a staging dir and swapped in whole by the engine
        "data_manifest_id": mixture_manifest["manifest_id"],
        "base_weights_sha256": base_model["weights_sha256"],
        "phase_order": [p["name"] for p in mixture_manifest.get("spec", {}).get("phases") or []] or None,
        "data_shards": data_shards,
        "project_dir": str(proj.root),
    }
    manifest = launch_training(context, job, proj.spec.training.launcher)
    location = publish_model_dir(final, proj.storage_root, [*key, version])
    losses = manifest["loss"]
    out = {
        "version": version,
        "path": str(final),
        "location": location,
        "base_model_path": base_model["path"],
        "merged": manifest.get("merged", False),
        **({"data_filter": data_filter} if data_filter is not None else {}),
        "run_manifest": manifest,
    }
    keep_version(proj, label or key[0], out)
    return json_output(
        out,
        manifest["output_weights_sha256"],  # hashed by the engine when it wrote the weights
        {
            # single steps are noisy (mixed sources per batch): report the mean of the first and last five
            "loss_start": sum(losses[:5]) / len(losses[:5]),
            "loss_end": sum(losses[-5:]) / len(losses[-5:]),
            "steps": len(losses),
            "tokens_per_s": float(manifest.get("tokens_per_s", 0.0)),
            "wall_time_s": float(manifest.get("wall_time_s", 0.0)),
            "effective_batch_size": int(manifest.get("effective_batch_size", 0)),
            "data_manifest_id": mixture_manifest["manifest_id"],
            "version": version,
            "lineage": MetadataValue.md(lineage_markdown(mixture_manifest)),
        },
    )
