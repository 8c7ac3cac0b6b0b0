"""The one training config: built once from the project's recipe, saved beside the weights, loaded back equal."""

from pathlib import Path

import pytest

from mixtrain.config.training import AdapterSpec, DistillationSpec, TrainingRecipe
from training_assets.engine.config import CONFIG_FILE, EXECUTION_FIELDS, DistillConfig, SFTConfig, TrainConfig
from training_assets.engine.jobs import TrainJob


def test_sft_config_round_trips_through_its_file(tmp_path: Path) -> None:
    recipe = TrainingRecipe(steps=7, lr=1e-3, packing=True, checkpoint_every=3)
    config = SFTConfig.from_recipe(recipe, threads=2, stop_after=5)
    path = config.save(tmp_path)
    assert path == tmp_path / CONFIG_FILE
    loaded = TrainConfig.load(tmp_path)
    assert isinstance(loaded, SFTConfig) and loaded == config
    assert loaded.steps == 7 and loaded.packing is True and loaded.checkpoint_every == 3 and loaded.threads == 2


def test_adapter_overrides_reach_the_config() -> None:
    training = TrainingRecipe(steps=30, lr=2e-4)
    adapter = AdapterSpec(steps=4, lr=1e-3, lora={"r": 2})
    config = SFTConfig.from_recipe(adapter.recipe(training))
    assert (config.steps, config.lr, config.lora.r, config.batch_size) == (4, 1e-3, 2, training.batch_size)


def test_distill_config_and_its_baseline_round_trip(tmp_path: Path) -> None:
    spec = DistillationSpec(mode="both", recipe={"steps": 3, "top_k": 4, "teacher_logits": "precomputed"})
    config = DistillConfig.from_recipe(spec.recipe, student=spec.student, mode=spec.mode)
    baseline = config.sft_baseline()
    assert baseline.kd_ratio == 0.0 and baseline.mode == "logit" and baseline.student == config.student
    for name, c in (("kd", config), ("baseline", baseline)):
        (tmp_path / name).mkdir()
        c.save(tmp_path / name)
        assert TrainConfig.load(tmp_path / name) == c


def test_learnt_fields_leave_out_execution_only() -> None:
    config = SFTConfig.from_recipe(TrainingRecipe(), device="cpu", checkpoint_dir="/tmp/x")
    learnt = config.learnt()
    assert not set(EXECUTION_FIELDS) & set(learnt)
    assert set(learnt) | set(EXECUTION_FIELDS) == set(SFTConfig.model_fields)
    assert config.execution()["device"] == "cpu"


def test_bad_configs_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint_evry"):
        SFTConfig.from_recipe(TrainingRecipe(), checkpoint_evry=1)
    with pytest.raises(ValueError, match="field 'kind'"):
        TrainConfig.parse({"kind": "rlhf"})
    with pytest.raises(ValueError, match="not a training config"):
        TrainConfig.load(tmp_path)
    job = {"config": SFTConfig.from_recipe(TrainingRecipe()).model_dump(mode="json"), "base_dir": "b"}
    with pytest.raises(ValueError, match="mixture_path"):
        TrainJob.parse(job)
