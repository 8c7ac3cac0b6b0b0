"""The training entry point for another process: ``python -m training_assets.pipes_train``, launched through
Dagster Pipes. The job (a ``TrainJob`` as JSON) arrives as the Pipes extras, each step's numbers go back as log
lines, and the weights, ``training_config.json`` and the run manifest land in the job's ``out_dir``, where the
launcher that started this process reads the manifest. A multi-GPU launch wraps this same module in
``torchrun``; a Kubernetes Pipes client runs it in a pod.
"""

import json

from dagster_pipes import open_dagster_pipes

from training_assets.engine.jobs import TrainJob, run_job


def main() -> None:
    with open_dagster_pipes() as pipes:
        job = TrainJob.parse(dict(pipes.extras))
        manifest = run_job(job, on_step=lambda step: pipes.log.info(json.dumps(step)))
        pipes.log.info(f"trained {manifest['steps']} steps; weights sha256 {manifest['output_weights_sha256']}")


if __name__ == "__main__":
    main()
