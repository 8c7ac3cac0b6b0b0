"""The training job gives the same adapter whether it runs in the Dagster process or in a Pipes subprocess."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetExecutionContext, Config, Output, asset, materialize

from training_assets.assets.launch import launch_training
from training_assets.engine.jobs import run_job

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
    return Output(launch_training(context, json.loads(config.job), config.launcher))


def _job(tiny_model_dir: Path, tmp_path: Path, out: str) -> dict:
    mixture = tmp_path / "mixture.parquet"
    if not mixture.exists():
        rows = [_chat("What is 2 + 2?", "4"), _chat("Name a colour.", "Blue"), _chat("Say hi.", "Hi!")]
        pq.write_table(pa.Table.from_pylist(rows), mixture)
    return {
        "kind": "sft",
        "base_dir": str(tiny_model_dir),
        "mixture_path": str(mixture),
        "recipe": RECIPE,
        "out_dir": str(tmp_path / out),
        "data_manifest_id": "m1",
        "threads": 1,
    }


def test_pipes_subprocess_trains_the_same_adapter_as_in_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    outputs = {}
    for launcher in ("in_process", "subprocess"):
        job = _job(tiny_model_dir, tmp_path, launcher)
        config = {"ops": {"trained": {"config": {"job": json.dumps(job), "launcher": launcher}}}}
        result = materialize([trained], run_config=config)
        assert result.success
        outputs[launcher] = result.output_for_node("trained")
        assert (tmp_path / launcher / "run_manifest.json").is_file()
    assert outputs["subprocess"]["output_weights_sha256"] == outputs["in_process"]["output_weights_sha256"]
    assert outputs["subprocess"]["loss"] == outputs["in_process"]["loss"]


def test_bad_jobs_fail_with_the_field_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="field 'kind'"):
        run_job({**_job(tiny_model_dir, tmp_path, "x"), "kind": "rlhf"})
    job = json.dumps(_job(tiny_model_dir, tmp_path, "y"))
    config = {"ops": {"trained": {"config": {"job": job, "launcher": "k8s"}}}}
    result = materialize([trained], run_config=config, raise_on_error=False)
    assert not result.success
