"""Data-parallel training under torchrun, launched through Dagster Pipes, learns what one process learns.

Two CPU processes (gloo) share each step's micro-batches; the per-step loss must equal a one-process run at the
same global batch, Dagster must record one materialization (rank 0 alone reports), rank 0 alone must write
checkpoints, and a checkpoint written by two processes must resume in one with the next loss unchanged.
"""

import importlib.util
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetExecutionContext, Config, Output, asset, materialize

from mixtrain.config.training import TrainingRecipe
from training_assets.engine.checkpoint import list_checkpoints
from training_assets.engine.config import DistillConfig, SFTConfig
from training_assets.engine.jobs import TrainJob, run_job
from training_assets.launchers import entry_command, launch_training
from training_assets.resources import TrainingLauncher

TOLERANCE = 1e-4
# Global batch 2 x 4 = 8 examples a step; under torchrun each of two ranks runs 2 of the 4 micro-batches.
RECIPE = {
    "base_model": "tiny",
    "steps": 3,
    "batch_size": 2,
    "grad_accum": 4,
    "max_seq_len": 64,
    "dtype": "fp32",
    "lr": 2e-3,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}
QUESTIONS = [
    ("What is 2 + 2?", "4"),
    ("Name a colour.", "Blue"),
    ("Say hi.", "Hi there!"),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Write a function that adds two numbers.", "def add(a, b):\n    return a + b"),
    ("Answer in JSON: the count is three.", '{"count": 3}'),
    ("Is the sky blue?", "Yes, on a clear day."),
    ("What does a small model learn from?", "From a carefully mixed corpus."),
    ("Name a fruit.", "An apple."),
    ("What is 10 / 2?", "5"),
]


class JobConfig(Config):
    job: str
    launcher: str
    nproc: int = 2


@asset
def trained(context: AssetExecutionContext, config: JobConfig) -> Output:
    recipe = TrainingRecipe(launcher=config.launcher, torchrun={"nproc_per_node": config.nproc})
    return Output(TrainingLauncher().launch(context, TrainJob.parse(json.loads(config.job)), recipe))


def _mixture(tmp_path: Path) -> Path:
    path = tmp_path / "mixture.parquet"
    rows = []
    for user, answer in QUESTIONS:
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        rows.append({"kind": "chat", "text": f"{user}\n\n{answer}", "messages": json.dumps(messages), "phase": "all"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _job(model: Path, mixture: Path, out: Path, **execution: Any) -> dict[str, Any]:
    return {
        "config": SFTConfig.from_recipe(RECIPE, threads=1, **execution).model_dump(mode="json"),
        "base_dir": str(model),
        "mixture_path": str(mixture),
        "out_dir": str(out),
        "data_manifest_id": "m1",
    }


def _materialize(job: dict[str, Any], launcher: str = "torchrun") -> Any:
    config = {"ops": {"trained": {"config": {"job": json.dumps(job), "launcher": launcher}}}}
    return materialize([trained], run_config=config, raise_on_error=False)


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= TOLERANCE for x, y in zip(a, b, strict=True))


def test_entry_command_runs_this_interpreters_torchrun() -> None:
    assert entry_command(1, python="py") == ["py", "-m", "training_assets.pipes_train"]
    command = entry_command(4, ["--max-restarts", "1"], python="py")
    assert command[:3] == ["py", "-m", "training_assets.torchrun_entry"]
    assert "--nproc-per-node=4" in command and command[-2:] == ["-m", "training_assets.pipes_train"]


def test_torchrun_two_processes_match_one_and_resume_in_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    mixture = _mixture(tmp_path)
    single = run_job(_job(tiny_model_dir, mixture, tmp_path / "single"))
    assert single["execution"]["world_size"] == 1

    # Two processes, whole run, through the Pipes launcher.
    result = _materialize(_job(tiny_model_dir, mixture, tmp_path / "ddp"))
    assert result.success
    assert len(result.get_asset_materialization_events()) == 1  # rank 0 alone reported
    ddp = result.output_for_node("trained")
    assert ddp["execution"]["world_size"] == 2
    assert _close(ddp["loss"], single["loss"]), (ddp["loss"], single["loss"])
    # Adam hides a wrongly scaled gradient from the loss; the gradient norm (before clipping) does not.
    assert _close(ddp["grad_norm"], single["grad_norm"]), (ddp["grad_norm"], single["grad_norm"])
    assert ddp["label_tokens"] == single["label_tokens"] and ddp["tokens"] == single["tokens"]
    assert ddp["effective_batch_size"] == single["effective_batch_size"] == 8
    assert not (tmp_path / "ddp.checkpoints").exists()  # published: nothing left to resume

    # Two processes stopped after step 2: one set of checkpoints, written by rank 0 alone.
    stopped = _materialize(_job(tiny_model_dir, mixture, tmp_path / "resumed", checkpoint_every=1, stop_after=2))
    assert not stopped.success  # stop_after ends the run before its last step
    checkpoints = list_checkpoints(tmp_path / "resumed.checkpoints")
    assert [c.step for c in checkpoints] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "resumed.checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    assert _close(checkpoints[-1].meta()["history"]["loss"], single["loss"][:2])

    # ... resumed by one process: the same next loss as the uninterrupted one-process run.
    resumed = run_job(_job(tiny_model_dir, mixture, tmp_path / "resumed"))
    assert resumed["execution"]["resumed_from_step"] == 2 and resumed["execution"]["world_size"] == 1
    assert _close(resumed["loss"], single["loss"]), (resumed["loss"], single["loss"])


def test_a_global_batch_that_cannot_be_shared_is_refused_before_launch(tiny_model_dir: Path, tmp_path: Path) -> None:
    job = _job(tiny_model_dir, _mixture(tmp_path), tmp_path / "odd")
    job["config"]["grad_accum"] = 3
    with pytest.raises(ValueError, match="grad_accum = 3 cannot be shared by 2 processes"):
        launch_training(None, TrainJob.parse(job), TrainingRecipe(launcher="torchrun"))  # type: ignore[arg-type]


def test_k8s_launcher_without_dagster_k8s_says_what_to_install(tiny_model_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("dagster_k8s") is not None:
        pytest.skip("dagster-k8s is installed here")
    job = TrainJob.parse(_job(tiny_model_dir, _mixture(tmp_path), tmp_path / "pod"))
    recipe = TrainingRecipe(launcher="k8s", k8s={"image": "mixtrain:test"})
    with pytest.raises(RuntimeError, match="needs dagster-k8s"):
        launch_training(None, job, recipe)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="launcher 'k8s' needs a 'k8s' section"):
        TrainingRecipe(launcher="k8s")


def test_distillation_under_torchrun_matches_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = DistillConfig.from_recipe(
        {"steps": 3, "batch_size": 2, "grad_accum": 2, "max_seq_len": 64, "dtype": "fp32", "lr": 1e-3, "top_k": 8},
        student={"init": "layer_subset", "drop_layers": 1},
        threads=1,
    )
    job = {**_job(tiny_model_dir, _mixture(tmp_path), tmp_path / "one"), "config": config.model_dump(mode="json")}
    single = run_job(job)
    result = _materialize({**job, "out_dir": str(tmp_path / "two")})
    assert result.success
    ddp = result.output_for_node("trained")
    assert ddp["execution"]["world_size"] == 2
    assert _close(ddp["loss"], single["loss"]) and _close(ddp["grad_norm"], single["grad_norm"])
    assert ddp["metrics"][0].keys() == single["metrics"][0].keys()  # KD and CE parts, all-reduced


def _children(pid: int, name: str) -> int:
    """How many live processes called ``name`` have ``pid`` as their parent (Linux /proc)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        comm, rest = fields[0].split("(", 1)[1], fields[1].split()
        count += comm == name and int(rest[1]) == pid
    return count


def test_torchrun_entry_stops_quietly_when_signalled() -> None:
    """What Pipes does to the launcher when a `mixtrain run` is interrupted: SIGINT to torchrun alone. It stops
    its workers and exits 130 without the agent's SignalException traceback or shutdown warnings."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != "MIXTRAIN_VERBOSE"}
    argv = [sys.executable, "-m", "training_assets.torchrun_entry", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.Popen(
        [*argv, "--no-python", "sleep", "120"], stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while _children(proc.pid, "sleep") < 2:  # the agent is up and monitoring its two workers
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "death signal" not in err and "OMP_NUM_THREADS" not in err, err
