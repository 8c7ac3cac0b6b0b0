"""The training entry point for another process: ``python -m training_assets.pipes_train``, launched through
Dagster Pipes, alone (``subprocess``), once per GPU by ``torchrun``, or in a Kubernetes pod.

The job (a ``TrainJob`` as JSON) arrives as the Pipes extras, each step's numbers go back as log lines, and the
weights, ``training_config.json`` and the run manifest land in the job's ``out_dir``, where the launcher reads the
manifest. Under ``torchrun`` every rank runs this module but only rank 0 opens the Pipes session: a session per
rank would report the run once per process. The other ranks read the same job from the Pipes context the
launcher injected (a file for a subprocess, an environment variable in a pod) without opening a session.
"""

from __future__ import annotations

import json
import os
import sys

from dagster_pipes import PipesDefaultContextLoader, PipesEnvVarParamsLoader, open_dagster_pipes

from mixtrain.interrupts import EXIT_INTERRUPTED
from mixtrain.warnings_policy import hide_library_warnings
from training_assets.engine.jobs import TrainJob, run_job


def _job_from_context() -> TrainJob:
    params = PipesEnvVarParamsLoader().load_context_params()
    with PipesDefaultContextLoader().load_context(params) as data:
        return TrainJob.parse(dict(data.get("extras") or {}))


def main() -> None:
    hide_library_warnings()  # this process has no CLI around it: $MIXTRAIN_VERBOSE (from -v) decides
    if int(os.environ.get("RANK", "0")) != 0:
        run_job(_job_from_context())
        return
    with open_dagster_pipes() as pipes:
        job = TrainJob.parse(dict(pipes.extras))
        manifest = run_job(job, on_step=lambda step: pipes.log.info(json.dumps(step)))
        world = manifest.get("execution", {}).get("world_size", 1)
        pipes.log.info(
            f"trained {manifest['steps']} steps on {world} process(es); "
            f"weights sha256 {manifest['output_weights_sha256']}"
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches every process of its group, this one too: the parent reports the stop
        # (once, for the whole run); a traceback per process here would bury that line.
        sys.exit(EXIT_INTERRUPTED)
