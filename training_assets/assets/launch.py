"""Where a training job runs: in the Dagster process, or in a subprocess through Dagster Pipes.

Pipes keeps the asset the same whichever way the job runs: logs stream back into the Dagster run, and the
result is the run manifest the engine wrote beside the weights. Swapping ``PipesSubprocessClient`` for a
Kubernetes Pipes client (or wrapping the command in ``torchrun``) moves training to a cluster without touching
the asset or the engine.
"""

import json
import sys
from pathlib import Path

from dagster import AssetExecutionContext, PipesSubprocessClient

from training_assets.engine.jobs import run_job
from training_assets.engine.sft import MANIFEST_FILE

ENTRY_MODULE = "training_assets.pipes_train"


def launch_training(context: AssetExecutionContext, job: dict, launcher: str) -> dict:
    """Run ``job`` where ``launcher`` says; returns its run manifest."""
    if launcher == "in_process":
        return run_job(job, on_step=lambda step: context.log.info(json.dumps(step)))
    if launcher != "subprocess":
        raise ValueError(f"training.launcher: expected 'in_process' or 'subprocess', got {launcher!r}")
    PipesSubprocessClient().run(command=[sys.executable, "-m", ENTRY_MODULE], context=context, extras=job)
    manifest = Path(job["out_dir"]) / MANIFEST_FILE
    if not manifest.is_file():
        raise RuntimeError(f"training subprocess finished without writing {manifest}")
    return json.loads(manifest.read_text())
