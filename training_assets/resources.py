"""Where a training job runs: in the Dagster process, or in a subprocess through Dagster Pipes.

Pipes keeps the asset the same whichever way the job runs: logs stream back into the Dagster run, and the
result is the run manifest the engine wrote beside the weights. Swapping ``PipesSubprocessClient`` for a
Kubernetes Pipes client (or wrapping the command in ``torchrun``) moves training to a cluster without touching
the asset or the engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient

from training_assets.engine.jobs import TrainJob, run_job
from training_assets.engine.run_manifest import RUN_MANIFEST_FILE

ENTRY_MODULE = "training_assets.pipes_train"
LAUNCHERS = ("in_process", "subprocess")


def launch_training(context: AssetExecutionContext, job: TrainJob, launcher: str) -> dict:
    """Run ``job`` where ``launcher`` says; returns its run manifest."""
    if launcher == "in_process":
        return run_job(job, on_step=lambda step: context.log.info(json.dumps(step)))
    if launcher != "subprocess":
        raise ValueError(f"training.launcher: expected one of {LAUNCHERS}, got {launcher!r}")
    extras = job.model_dump(mode="json")
    PipesSubprocessClient().run(command=[sys.executable, "-m", ENTRY_MODULE], context=context, extras=extras)
    manifest = Path(job.out_dir) / RUN_MANIFEST_FILE
    if not manifest.is_file():
        raise RuntimeError(f"training subprocess finished without writing {manifest}")
    return json.loads(manifest.read_text())


class TrainingLauncher(ConfigurableResource):
    """The launcher training assets run their jobs with: ``project`` follows the project's
    ``training.launcher``; ``in_process`` or ``subprocess`` overrides it for this deployment."""

    launcher: Literal["project", "in_process", "subprocess"] = "project"

    def launch(self, context: AssetExecutionContext, job: TrainJob, project_launcher: str) -> dict:
        return launch_training(context, job, project_launcher if self.launcher == "project" else self.launcher)
