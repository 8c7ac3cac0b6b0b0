"""Where a training job runs: in the Dagster process, a Pipes subprocess, ``torchrun``, or a Kubernetes pod.

Pipes keeps the asset the same whichever way the job runs: logs stream back into the Dagster run, and the result
is the run manifest the engine wrote beside the weights. Every launcher runs the same ``TrainJob`` through the
same ``run_job``, so what is learnt does not depend on the launcher (the tests compare them step by step).

- ``in_process``: the engine in the Dagster process (tests, notebooks).
- ``subprocess``: ``python -m training_assets.pipes_train`` through ``PipesSubprocessClient``.
- ``torchrun``: the same module under ``python -m training_assets.torchrun_entry --standalone --nproc-per-node N``
  (the current interpreter's torchrun, not whichever is first on PATH, stopping quietly on an interrupted run);
  rank 0 alone opens the Pipes session.
- ``k8s``: one pod per run through dagster-k8s' ``PipesK8sClient`` (an optional extra: dagster-k8s pins dagster
  exactly, so it is installed to match, never pulled by the project). The pod must see the job's paths: put the
  storage root and DAGSTER_HOME's models on a volume it mounts (README, "Training on Kubernetes").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from dagster import AssetExecutionContext, PipesSubprocessClient

from mixtrain.config.training import K8sLaunchSpec, TorchrunSpec, TrainingRecipe
from training_assets.engine.jobs import TrainJob, run_job
from training_assets.engine.run_manifest import read_run_manifest

ENTRY_MODULE = "training_assets.pipes_train"
TORCHRUN_MODULE = "training_assets.torchrun_entry"
LAUNCHERS = ("in_process", "subprocess", "torchrun", "k8s")


def entry_command(nproc: int, extra_args: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    """The command that runs the entry module: alone for one process, under torchrun for more."""
    if nproc <= 1:
        return [python, "-m", ENTRY_MODULE]
    return [
        python,
        "-m",
        TORCHRUN_MODULE,
        "--standalone",
        f"--nproc-per-node={nproc}",
        *extra_args,
        "-m",
        ENTRY_MODULE,
    ]


def check_world_fits(job: TrainJob, nproc: int) -> None:
    """Fail before starting processes when the global batch cannot be shared out evenly."""
    if job.config.grad_accum % nproc:
        raise ValueError(
            f"training.grad_accum = {job.config.grad_accum} cannot be shared by {nproc} processes "
            f"(torchrun nproc_per_node): make it a multiple of {nproc}; the global batch stays batch_size x grad_accum"
        )


def _run_k8s(context: AssetExecutionContext, job: TrainJob, spec: K8sLaunchSpec) -> None:
    try:
        from dagster_k8s import PipesK8sClient
    except ImportError as e:
        raise RuntimeError(
            "training.launcher 'k8s' needs dagster-k8s, whose release pins one dagster version: install the one "
            "matching this dagster (see README, 'Training on Kubernetes')"
        ) from e
    check_world_fits(job, spec.nproc_per_node)
    PipesK8sClient().run(
        context=context,
        extras=job.model_dump(mode="json"),
        image=spec.image,
        command=entry_command(spec.nproc_per_node, python="python"),
        namespace=spec.namespace,
        env=spec.env,
        base_pod_spec=spec.base_pod_spec or None,
    )


def launch_training(context: AssetExecutionContext, job: TrainJob, recipe: TrainingRecipe | str) -> dict:
    """Run ``job`` where the recipe's ``launcher`` says (a bare launcher name uses default settings); returns
    its run manifest."""
    if isinstance(recipe, str):
        if recipe not in LAUNCHERS:
            raise ValueError(f"training.launcher: expected one of {LAUNCHERS}, got {recipe!r}")
        recipe = TrainingRecipe(launcher=recipe)  # 'k8s' fails here: it has no defaults to run with
    launcher = recipe.launcher
    if launcher == "in_process":
        return run_job(job, on_step=lambda step: context.log.info(json.dumps(step)))
    if launcher == "k8s":
        assert recipe.k8s is not None  # the recipe's validator requires it
        _run_k8s(context, job, recipe.k8s)
        return read_run_manifest(job.out_dir)
    spec = recipe.torchrun if launcher == "torchrun" else TorchrunSpec(nproc_per_node=1)
    check_world_fits(job, spec.nproc_per_node)
    command = entry_command(spec.nproc_per_node, spec.extra_args)
    PipesSubprocessClient().run(command=command, context=context, extras=job.model_dump(mode="json"))
    return read_run_manifest(job.out_dir)
