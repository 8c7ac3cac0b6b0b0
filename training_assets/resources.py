"""The training launcher as a Dagster resource: the project's ``training`` section says where jobs run, and a
deployment can override it (e.g. ``torchrun`` on the GPU box, ``in_process`` in a notebook) without editing the
project. How each launcher runs a job is in ``launchers.py``."""

from __future__ import annotations

from typing import Literal

from dagster import AssetExecutionContext, ConfigurableResource

from mixtrain.config.training import TrainingRecipe
from training_assets.engine.jobs import TrainJob
from training_assets.launchers import launch_training


class TrainingLauncher(ConfigurableResource):
    """``launcher``: ``project`` follows the project's ``training.launcher``; any other value overrides it for
    this deployment. ``nproc_per_node`` (when set) overrides ``training.torchrun.nproc_per_node``."""

    launcher: Literal["project", "in_process", "subprocess", "torchrun", "k8s"] = "project"
    nproc_per_node: int | None = None

    def launch(self, context: AssetExecutionContext, job: TrainJob, recipe: TrainingRecipe) -> dict:
        update: dict[str, object] = {}
        if self.launcher != "project":
            update["launcher"] = self.launcher
        if self.nproc_per_node is not None:
            update["torchrun"] = recipe.torchrun.model_copy(update={"nproc_per_node": self.nproc_per_node})
        chosen = TrainingRecipe.model_validate({**recipe.model_dump(), **update}) if update else recipe
        return launch_training(context, job, chosen)
