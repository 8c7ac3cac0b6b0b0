"""The training side's definitions: assets, the adapter-spec refresh job, the adapter partitions sensor and the
training launcher resource."""

from dagster import Definitions

from mixtrain.warnings_policy import hide_library_warnings

hide_library_warnings()  # before the asset modules: they use beta APIs at import (-v shows the notes)

from training_assets.assets.adapters import adapter_spec, refresh_adapter_specs, task_adapter  # noqa: E402
from training_assets.assets.models import base_model, sft_adapter  # noqa: E402
from training_assets.assets.specs import base_model_spec, distillation_recipe, training_recipe  # noqa: E402
from training_assets.assets.students import distilled_student, student_sft_baseline  # noqa: E402
from training_assets.resources import TrainingLauncher  # noqa: E402
from training_assets.sensors import adapter_partitions_sensor  # noqa: E402

defs = Definitions(
    assets=[
        base_model_spec,
        training_recipe,
        distillation_recipe,
        base_model,
        sft_adapter,
        distilled_student,
        student_sft_baseline,
        adapter_spec,
        task_adapter,
    ],
    jobs=[refresh_adapter_specs],
    sensors=[adapter_partitions_sensor],
    resources={"training_launcher": TrainingLauncher()},
)
