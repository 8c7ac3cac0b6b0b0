"""The training side's definitions: assets, the adapter-spec refresh job, the adapter partitions sensor and the
training launcher resource."""

from collections.abc import Collection

from dagster import Definitions

from mixtrain.config.training import STUDENT_MODELS
from mixtrain.warnings_policy import hide_library_warnings

hide_library_warnings()  # before the asset modules: they use beta APIs at import (-v shows the notes)

from training_assets.assets.adapters import adapter_spec, refresh_adapter_specs, task_adapter  # noqa: E402
from training_assets.assets.models import base_model, sft_adapter  # noqa: E402
from training_assets.assets.specs import base_model_spec, distillation_recipe, training_recipe  # noqa: E402
from training_assets.assets.students import distilled_student, student_sft_baseline  # noqa: E402
from training_assets.resources import TrainingLauncher  # noqa: E402
from training_assets.sensors import adapter_partitions_sensor  # noqa: E402

STUDENTS = {"distilled_student": distilled_student, "student_sft_baseline": student_sft_baseline}


def build_defs(students: Collection[str] = STUDENT_MODELS) -> Definitions:
    """The training graph with the students a project trains (``ProjectSpec.student_models``): none, and the
    distillation section's spec is not observed either, so nothing waits on a stage the project left out."""
    unknown = set(students) - set(STUDENTS)
    if unknown:
        raise ValueError(f"unknown student assets {sorted(unknown)}; known {sorted(STUDENTS)}")
    distillation = [distillation_recipe, *(STUDENTS[name] for name in STUDENT_MODELS if name in students)]
    return Definitions(
        assets=[
            base_model_spec,
            training_recipe,
            base_model,
            sft_adapter,
            adapter_spec,
            task_adapter,
            *(distillation if students else []),
        ],
        jobs=[refresh_adapter_specs],
        sensors=[adapter_partitions_sensor],
        resources={"training_launcher": TrainingLauncher()},
    )


defs = build_defs()  # every stage, as a project with a distillation section has it
