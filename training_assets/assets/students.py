"""The student stage: a smaller model distilled from the teacher (the base with the SFT adapter), and the same
student trained SFT-only on the same data for the same steps, so the evaluation shows what the teacher added.

Both run as training jobs through the same launcher as the adapters (in process or a Pipes subprocess).
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetsDefinition, Output

from mixtrain.identity import resolve_relative, spec_hash
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from training_assets.assets.model_store import (
    local_mixture,
    local_model_dir,
    model_inputs,
    model_version,
    train_and_record,
    training_asset,
)
from training_assets.engine.config import DistillConfig
from training_assets.engine.jobs import TrainJob
from training_assets.engine.verifiers import load_schema
from training_assets.resources import TrainingLauncher


def distill_config(proj: Project, baseline: bool) -> DistillConfig:
    """The student's config from the ``distillation`` section (the student's path and the sequence-KD answer
    schema resolved against the project); the baseline is the same with ``kd_ratio`` 0 on the gold records only."""
    spec = proj.spec.distillation
    student = spec.student.model_dump(mode="json")
    if student.get("path"):
        student["path"] = proj.resolve(student["path"])
    recipe = spec.recipe.model_dump(mode="json")
    if isinstance(recipe["sequence"].get("answer_schema"), str):
        # A schema file named relative to the project, inlined: the job carries it to whatever process or pod
        # runs it, and the model version hashes what the schema says, not where it lives.
        recipe["sequence"]["answer_schema"] = load_schema(proj.resolve(recipe["sequence"]["answer_schema"]))
    config = DistillConfig.from_recipe(recipe, student=student, mode=spec.mode)
    return config.sft_baseline() if baseline else config


def _student_asset(name: str, baseline: bool, description: str) -> AssetsDefinition:
    @training_asset(
        name=name,
        ins=model_inputs("base_model", "sft_adapter"),
        deps=["distillation_recipe"],
        code_version="student-1",
        description=description,
    )
    def student(
        context: AssetExecutionContext,
        project: ProjectResource,
        training_launcher: TrainingLauncher,
        mixture: pa.Table,
        mixture_manifest: dict,
        base_model: dict,
        sft_adapter: dict,
    ) -> Output:
        proj = project.load()
        config = distill_config(proj, baseline)
        # The version hashes the recipe as the project states it (kd_ratio 0 for the baseline), the student and
        # the project's mode, the teacher's weights and the code.
        recipe = {**proj.spec.distillation.recipe.model_dump(mode="json"), "kd_ratio": config.kd_ratio}
        if config.mode != "logit":  # the answer schema filters the training data only in sequence modes
            recipe["sequence"] = config.sequence.model_dump(mode="json")
        parts = spec_hash([recipe, config.student.model_dump(mode="json"), proj.spec.distillation.mode])
        teacher = sft_adapter["run_manifest"]["output_weights_sha256"]
        code = context.assets_def.code_versions_by_key[context.asset_key]
        version = model_version(mixture_manifest["manifest_id"], parts, teacher, code)
        job = TrainJob(
            config=config,
            base_dir=resolve_relative(base_model["path"], proj.storage_root),
            base_weights_sha256=base_model["weights_sha256"],
            adapter_dir=resolve_relative(sft_adapter["path"], proj.storage_root),
            mixture_path=local_mixture(proj, mixture, mixture_manifest),
            out_dir=str(local_model_dir(proj, [name, version])),
            data_manifest_id=mixture_manifest["manifest_id"],
            data_shards=mixture_manifest.get("shards"),
            project_dir=str(proj.root),
        )
        teacher_ref = {"base_model_path": base_model["path"], "adapter_path": sft_adapter["path"]}
        return train_and_record(
            context, proj, training_launcher, job, [name], version, mixture_manifest, teacher=teacher_ref
        )

    return student


distilled_student = _student_asset(
    "distilled_student",
    False,
    "A smaller student distilled from base + SFT adapter (logit and/or sequence KD, per the recipe).",
)
student_sft_baseline = _student_asset(
    "student_sft_baseline",
    True,
    "The same student, data and steps as distilled_student, trained SFT-only (kd_ratio 0): the baseline.",
)
