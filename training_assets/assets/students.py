"""The student stage: a smaller model distilled from the teacher (the base with the SFT adapter), and the same
student trained SFT-only on the same data for the same steps, so the evaluation shows what the teacher added.
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from mixtrain.automation import rerun_when_changed
from mixtrain.identity import spec_hash
from mixtrain.resources import ProjectResource
from mixtrain.storage import publish_model_dir
from mixtrain.versioning import json_output
from training_assets.assets.model_store import (
    keep_version,
    lineage_markdown,
    local_mixture,
    local_model_dir,
    model_version,
)
from training_assets.engine.jobs import read_records

STUDENT_INS = {
    "mixture": AssetIn(),
    "mixture_manifest": AssetIn(input_manager_key="json_io_manager"),
    "base_model": AssetIn(input_manager_key="json_io_manager"),
    "sft_adapter": AssetIn(input_manager_key="json_io_manager"),
}


def _train_student(
    context: AssetExecutionContext,
    project: ProjectResource,
    name: str,
    kd: bool,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
    sft_adapter: dict,
):
    from training_assets.engine.distill import distill_student, sft_only_recipe

    proj = project.load()
    spec = proj.spec.distillation
    recipe = spec.recipe.model_dump(mode="json") if kd else sft_only_recipe(spec.recipe)
    student = spec.student.model_dump(mode="json")
    if student.get("path"):
        student["path"] = proj.resolve(student["path"])
    teacher = sft_adapter["run_manifest"]["output_weights_sha256"]
    code = context.assets_def.code_versions_by_key[context.asset_key]
    version = model_version(mixture_manifest["manifest_id"], spec_hash([recipe, student, spec.mode]), teacher, code)
    out = local_model_dir(proj, [name, version])
    manifest = distill_student(
        base_model["path"],
        sft_adapter["path"],
        student,
        read_records(local_mixture(proj, mixture, mixture_manifest)),
        recipe,
        str(out),
        data_manifest_id=mixture_manifest["manifest_id"],
        mode=spec.mode if kd else "logit",  # the baseline sees only the gold records
        teacher_weights_sha256=base_model["weights_sha256"],
        data_shards=mixture_manifest.get("shards"),
        project_dir=str(proj.root),
        on_step=lambda step: context.log.info(str(step)),
    )
    losses = manifest["loss"]
    result = {
        "version": version,
        "path": str(out),
        "location": publish_model_dir(out, proj.storage_root, [name, version]),
        "teacher": {"base_model_path": base_model["path"], "adapter_path": sft_adapter["path"]},
        "run_manifest": manifest,
    }
    keep_version(proj, name, result)
    kd_info = manifest.get("distillation", {})
    return json_output(
        result,
        manifest["output_weights_sha256"],
        {
            "loss_start": sum(losses[:5]) / len(losses[:5]),
            "loss_end": sum(losses[-5:]) / len(losses[-5:]),
            "steps": len(losses),
            "kd_ratio": float(recipe["kd_ratio"]),
            "kd_loss": str(kd_info.get("loss", recipe["loss"])),
            "trainable_params": int(manifest.get("trainable_params", 0)),
            "tokens_per_s": float(manifest.get("tokens_per_s") or 0.0),
            "version": version,
            "lineage": MetadataValue.md(lineage_markdown(mixture_manifest)),
        },
    )


@asset(
    ins=STUDENT_INS,
    deps=["distillation_recipe"],
    io_manager_key="json_io_manager",
    code_version="student-1",
    automation_condition=rerun_when_changed(),
    group_name="training",
    description="A smaller student distilled from base + SFT adapter (logit and/or sequence KD, per the recipe).",
)
def distilled_student(
    context: AssetExecutionContext,
    project: ProjectResource,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
    sft_adapter: dict,
):
    return _train_student(
        context, project, "distilled_student", True, mixture, mixture_manifest, base_model, sft_adapter
    )


@asset(
    ins=STUDENT_INS,
    deps=["distillation_recipe"],
    io_manager_key="json_io_manager",
    code_version="student-1",
    automation_condition=rerun_when_changed(),
    group_name="training",
    description="The same student, data and steps as distilled_student, trained SFT-only (kd_ratio 0): the baseline.",
)
def student_sft_baseline(
    context: AssetExecutionContext,
    project: ProjectResource,
    mixture: pa.Table,
    mixture_manifest: dict,
    base_model: dict,
    sft_adapter: dict,
):
    return _train_student(
        context, project, "student_sft_baseline", False, mixture, mixture_manifest, base_model, sft_adapter
    )
