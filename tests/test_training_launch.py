"""The training job gives the same adapter whether it runs in the Dagster process or in a Pipes subprocess."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetExecutionContext, Config, Output, asset, materialize

from training_assets.engine.config import DistillConfig, SFTConfig, TrainConfig
from training_assets.engine.jobs import TrainJob, run_job
from training_assets.launchers import launch_training

RECIPE = {"base_model": "tiny", "steps": 2, "batch_size": 2, "max_seq_len": 64, "dtype": "fp32", "lr": 1e-3}


def _chat(user: str, answer: str) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"kind": "chat", "text": f"{user}\n\n{answer}", "messages": json.dumps(messages), "phase": "all"}


class JobConfig(Config):
    job: str
    launcher: str


@asset
def trained(context: AssetExecutionContext, config: JobConfig) -> Output:
    # An asset that opens a Pipes session must return an Output (as the project's assets do), not a bare value.
    return Output(launch_training(context, TrainJob.parse(json.loads(config.job)), config.launcher))


def _job(tiny_model_dir: Path, tmp_path: Path, out: str) -> dict:
    mixture = tmp_path / "mixture.parquet"
    if not mixture.exists():
        rows = [_chat("What is 2 + 2?", "4"), _chat("Name a colour.", "Blue"), _chat("Say hi.", "Hi!")]
        pq.write_table(pa.Table.from_pylist(rows), mixture)
    return {
        "config": SFTConfig.from_recipe(RECIPE, threads=1).model_dump(mode="json"),
        "base_dir": str(tiny_model_dir),
        "mixture_path": str(mixture),
        "out_dir": str(tmp_path / out),
        "data_manifest_id": "m1",
    }


DISTILL = DistillConfig.from_recipe(
    {"steps": 2, "batch_size": 2, "max_seq_len": 64, "dtype": "fp32", "lr": 1e-3},
    student={"init": "layer_subset", "keep_every": 2},
    threads=1,
)


@pytest.mark.parametrize("kind", ["sft", "distill"])
def test_pipes_subprocess_trains_the_same_weights_as_in_process(
    kind: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    outputs = {}
    for launcher in ("in_process", "subprocess"):
        job = _job(tiny_model_dir, tmp_path, launcher)
        if kind == "distill":
            job["config"] = DISTILL.model_dump(mode="json")
        config = {"ops": {"trained": {"config": {"job": json.dumps(job), "launcher": launcher}}}}
        result = materialize([trained], run_config=config)
        assert result.success
        outputs[launcher] = result.output_for_node("trained")
        assert (tmp_path / launcher / "run_manifest.json").is_file()
        # The config the job carried is the one written beside the weights, and it loads back equal.
        assert TrainConfig.load(tmp_path / launcher) == TrainJob.parse(job).config
    assert outputs["subprocess"]["output_weights_sha256"] == outputs["in_process"]["output_weights_sha256"]
    assert outputs["subprocess"]["loss"] == outputs["in_process"]["loss"]


def test_bad_jobs_fail_with_the_field_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="field 'kind'"):
        job = _job(tiny_model_dir, tmp_path, "x")
        run_job({**job, "config": {**job["config"], "kind": "rlhf"}})
    job = json.dumps(_job(tiny_model_dir, tmp_path, "y"))
    config = {"ops": {"trained": {"config": {"job": job, "launcher": "k8s"}}}}
    result = materialize([trained], run_config=config, raise_on_error=False)
    assert not result.success
