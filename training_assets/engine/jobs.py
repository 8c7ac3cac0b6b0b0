"""A training job as plain JSON-able data, and the one function that runs it.

The same job runs in the Dagster process or in another one (a Dagster Pipes subprocess, every rank of a
``torchrun`` launch, a Kubernetes pod): what is trained must not depend on where. So the job names its
inputs by path (the mixture shard as Parquet, the base model directory) instead of passing Python objects, carries
its :class:`~training_assets.engine.config.TrainConfig` as it was built from the project, and both launch paths end
in :func:`run_job`. Fine-tunes (``SFTConfig``) and distillations (``DistillConfig``) are both jobs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from training_assets.engine.config import DistillConfig, SFTConfig, TrainConfig
from training_assets.engine.distributed import world_session
from training_assets.engine.shards import record_batches


def read_records(mixture_path: str) -> list[dict[str, Any]]:
    """The whole mixture in memory (distillation; fine-tunes stream it, see ``shards``)."""
    return [r for _, batch in record_batches(mixture_path) for r in batch]


class TrainJob(BaseModel):
    """One training run: its config and where its inputs and output are.

    ``base_dir`` is the model fine-tuned (SFT) or the teacher (distillation, with ``adapter_dir`` its adapter);
    ``out_dir`` receives the weights, ``training_config.json`` and ``run_manifest.json``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: SFTConfig | DistillConfig
    base_dir: str
    mixture_path: str
    out_dir: str
    data_manifest_id: str
    base_weights_sha256: str | None = None
    adapter_dir: str | None = None
    phase_order: list[str] | None = None
    data_shards: list[dict[str, Any]] | None = None
    project_dir: str | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _config_of_its_kind(cls, value: Any) -> TrainConfig:
        return TrainConfig.parse(value)

    @classmethod
    def parse(cls, data: Mapping[str, Any] | TrainJob) -> TrainJob:
        """A job from its JSON form (the Pipes extras); an unknown config kind is named as such."""
        if isinstance(data, TrainJob):
            return data
        config = data.get("config")
        if isinstance(config, Mapping):
            TrainConfig.parse(config)  # raises "field 'kind'" before pydantic's generic union error
        return cls.model_validate(dict(data))


def run_job(job: TrainJob | Mapping[str, Any], on_step: Callable[[dict[str, Any]], None] | None = None) -> dict:
    """Run a job; returns the run manifest the engine wrote beside the weights."""
    job = TrainJob.parse(job)
    import torch

    # Float sums depend on how many threads split them: a job that names its thread count trains the same
    # weights wherever it runs (the Pipes test compares in-process and subprocess bit for bit).
    threads_before = torch.get_num_threads()
    if job.config.threads:
        torch.set_num_threads(job.config.threads)
    try:
        # Under torchrun every rank runs this job; the process group lives as long as the job.
        with world_session(job.config.device):
            return _train(job, on_step)
    finally:
        torch.set_num_threads(threads_before)


def _train(job: TrainJob, on_step: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    if isinstance(job.config, DistillConfig):
        from training_assets.engine.distill import distill_student

        engine = functools.partial(
            distill_student, job.base_dir, job.adapter_dir, teacher_weights_sha256=job.base_weights_sha256
        )
        data: Any = read_records(job.mixture_path)
    else:
        from training_assets.engine.sft import train_lora

        engine = functools.partial(
            train_lora, job.base_dir, base_weights_sha256=job.base_weights_sha256, phase_order=job.phase_order
        )
        data = job.mixture_path  # streamed: each rank reads what it trains on
    return engine(
        data,
        job.config,
        job.out_dir,
        data_manifest_id=job.data_manifest_id,
        data_shards=job.data_shards,
        project_dir=job.project_dir,
        on_step=on_step,
    )
