"""A training job as plain JSON-able data, and the one function that runs it.

The same job runs in the Dagster process or in another one (a Dagster Pipes subprocess today; ``torchrun`` or a
Kubernetes pod launched by a Pipes client later): what is trained must not depend on where. So the job names its
inputs by path (the mixture shard as Parquet, the base model directory) instead of passing Python objects, and
both launch paths end in :func:`run_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq

# The mixture columns training reads: the record itself and its curriculum phase.
RECORD_COLUMNS = ("kind", "text", "messages", "phase")


def read_records(mixture_path: str) -> list[dict[str, Any]]:
    names = pq.read_schema(mixture_path).names
    return pq.read_table(mixture_path, columns=[c for c in RECORD_COLUMNS if c in names]).to_pylist()


def run_job(job: dict[str, Any], on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a ``{"kind": "sft", ...}`` job; returns the run manifest the engine wrote beside the weights."""
    kind = job.get("kind")
    if kind != "sft":
        raise ValueError(f"training job: field 'kind': expected 'sft', got {kind!r}")
    import torch

    from training_assets.engine.sft import train_lora

    # Float sums depend on how many threads split them: a job that names its thread count trains the same
    # weights wherever it runs (the Pipes test compares in-process and subprocess bit for bit).
    threads_before = torch.get_num_threads()
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    try:
        return _train(job, train_lora, on_step)
    finally:
        torch.set_num_threads(threads_before)


def _train(job: dict[str, Any], train_lora: Callable[..., dict[str, Any]], on_step: Any) -> dict[str, Any]:
    return train_lora(
        job["base_dir"],
        read_records(job["mixture_path"]),
        job["recipe"],
        job["out_dir"],
        data_manifest_id=job["data_manifest_id"],
        base_weights_sha256=job.get("base_weights_sha256"),
        on_step=on_step,
        phase_order=job.get("phase_order"),
        data_shards=job.get("data_shards"),
        project_dir=job.get("project_dir"),
    )
