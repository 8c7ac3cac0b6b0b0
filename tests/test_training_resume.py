"""LoRA training on the tiny Llama, interrupted and resumed: the result must be exactly the uninterrupted run's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from tests.conftest import tiny_recipe  # noqa: E402
from training_assets.engine import sft  # noqa: E402
from training_assets.engine.checkpoint import CheckpointMismatchError, list_checkpoints  # noqa: E402
from training_assets.engine.config import SFTConfig  # noqa: E402
from training_assets.engine.loop import NonFiniteLossError  # noqa: E402
from training_assets.engine.run_manifest import RUN_MANIFEST_FILE, stable_fingerprint  # noqa: E402
from training_assets.engine.sft import TrainingStopped, train_lora  # noqa: E402
from training_assets.engine.tiny import make_tiny_model  # noqa: E402

RECORDS = [
    {
        "kind": "chat",
        "text": "",
        "messages": json.dumps([{"role": "user", "content": q}, {"role": "assistant", "content": a}]),
    }
    for q, a in [("Capital of France?", "Paris"), ("2 + 2?", "4"), ("Say hi", "Hello world!")]
] + [{"kind": "text", "text": "def add(a, b): return a + b", "messages": None}]

# fp32 so the comparison can be exact; dropout and grad_accum so RNG state and batch position both matter.
RECIPE = tiny_recipe(
    lora={"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"], "merge": False},
    steps=6,
    batch_size=1,
    grad_accum=2,
    warmup_steps=2,
    max_seq_len=32,
    seed=7,
)
SHARDS = [{"path": "mixture/part-0.parquet", "sha256": "0" * 64}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tiny") / "base"
    make_tiny_model(str(out), seed=0)
    return str(out)


def train(tiny_dir: str, out: Path, recipe: dict | None = None, *, options: dict | None = None, **kw):
    config = SFTConfig.from_recipe(recipe or RECIPE, **(options or {}))
    return train_lora(tiny_dir, RECORDS, config, str(out), data_manifest_id="mix-1", data_shards=SHARDS, **kw)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dir: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("a") / "run"
    manifest = train(tiny_dir, out)
    return manifest, load_file(str(out / "adapter_model.safetensors"))


def assert_same_run(manifest: dict, out: Path, uninterrupted: tuple[dict, dict]) -> None:
    ref_manifest, ref_weights = uninterrupted
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    assert manifest["loss"] == ref_manifest["loss"]
    assert manifest["lr"] == ref_manifest["lr"]
    assert manifest["tokens"] == ref_manifest["tokens"]
    assert manifest["output_weights_sha256"] == ref_manifest["output_weights_sha256"]
    assert stable_fingerprint(manifest) == stable_fingerprint(ref_manifest)


def test_run_killed_after_step_5_resumes_to_the_identical_adapter(tiny_dir: str, tmp_path: Path, uninterrupted) -> None:
    ckpts = tmp_path / "ckpt"
    opts = {"checkpoint_every": 2, "checkpoint_dir": str(ckpts)}

    def kill(info: dict) -> None:
        if info["step"] == 5:  # step 5 ran but is not checkpointed: the resumed run must redo it identically
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_dir, tmp_path / "run", options=opts, on_step=kill)
    assert not (tmp_path / "run").exists()
    assert [c.step for c in list_checkpoints(ckpts)] == [2, 4]

    seen: list[int] = []
    manifest = train(tiny_dir, tmp_path / "run", options=opts, on_step=lambda i: seen.append(i["step"]))
    assert seen == [5, 6]
    assert manifest["execution"]["resumed_from_step"] == 4
    assert_same_run(manifest, tmp_path / "run", uninterrupted)
    saved = json.loads((tmp_path / "run" / RUN_MANIFEST_FILE).read_text())
    assert saved["data_shards"] == SHARDS and saved["config_fingerprint"] == uninterrupted[0]["config_fingerprint"]


def test_stop_after_4_then_resume_gives_the_identical_adapter(tiny_dir: str, tmp_path: Path, uninterrupted) -> None:
    with pytest.raises(TrainingStopped, match="stopped after step 4 of 6") as stop:
        train(tiny_dir, tmp_path / "run", options={"stop_after": 4})
    default_dir = Path(str((tmp_path / "run").resolve()) + sft.CHECKPOINT_SUFFIX)
    assert stop.value.checkpoint == str(default_dir / "step-00000004")
    assert not (tmp_path / "run").exists()

    manifest = train(tiny_dir, tmp_path / "run")  # no options: the checkpoint left behind is found and resumed
    assert manifest["execution"]["resumed_from_step"] == 4
    assert_same_run(manifest, tmp_path / "run", uninterrupted)
    assert not default_dir.exists(), "a published run leaves no checkpoints behind"


def test_nan_loss_stops_with_step_and_value_then_resumes_cleanly(
    tiny_dir: str, tmp_path: Path, uninterrupted, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = sft.causal_lm_loss
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, n = real_loss(model, batch)
        return (loss * float("nan"), n) if calls["n"] == 6 else (loss, n)  # 2nd micro-batch of step 3

    monkeypatch.setattr(sft, "causal_lm_loss", poisoned)
    ckpts = tmp_path / "ckpt"
    opts = {"checkpoint_every": 1, "checkpoint_dir": str(ckpts)}
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss \(micro-batch 2 of 2\) is nan.*step-00000002"):
        train(tiny_dir, tmp_path / "run", options=opts)
    assert [c.step for c in list_checkpoints(ckpts)] == [1, 2]
    assert not (tmp_path / "run").exists()

    monkeypatch.setattr(sft, "causal_lm_loss", real_loss)
    manifest = train(tiny_dir, tmp_path / "run", options=opts)
    assert manifest["execution"]["resumed_from_step"] == 2
    assert_same_run(manifest, tmp_path / "run", uninterrupted)


def test_changed_recipe_refuses_the_old_checkpoints(tiny_dir: str, tmp_path: Path) -> None:
    ckpts = tmp_path / "ckpt"
    with pytest.raises(TrainingStopped):
        train(tiny_dir, tmp_path / "run", options={"stop_after": 1, "checkpoint_dir": str(ckpts)})
    with pytest.raises(CheckpointMismatchError, match=r"run\.recipe\.lr: 0\.05 -> 0\.01"):
        train(tiny_dir, tmp_path / "run", {**RECIPE, "lr": 1e-2}, options={"checkpoint_dir": str(ckpts)})
    with pytest.raises(CheckpointMismatchError, match=r"run\.data_manifest_id: 'mix-1' -> 'mix-2'"):
        train_lora(tiny_dir, RECORDS, SFTConfig.from_recipe(RECIPE, checkpoint_dir=str(ckpts)), str(tmp_path / "run"),
                   data_manifest_id="mix-2", data_shards=SHARDS)  # fmt: skip
    with pytest.raises(ValueError, match="checkpoint_evry"):
        train(tiny_dir, tmp_path / "run", options={"checkpoint_evry": 1})


def test_gradient_checkpointing_changes_memory_not_results(
    tiny_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training_assets.engine import loop

    enabled: list[bool] = []
    real_enable = loop._enable_gradient_checkpointing

    def spy(model) -> None:
        real_enable(model)
        enabled.append(any(getattr(m, "gradient_checkpointing", False) for m in model.modules()))

    monkeypatch.setattr(loop, "_enable_gradient_checkpointing", spy)
    short = {**RECIPE, "steps": 2}
    plain = train(tiny_dir, tmp_path / "plain", short)
    gc = train(tiny_dir, tmp_path / "gc", short, options={"gradient_checkpointing": True})
    assert enabled == [True]
    assert gc["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert gc["execution"]["gradient_checkpointing"] is True
    a, b = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in ("plain", "gc"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_packed_rows_train_and_resume_exactly(tiny_dir: str, tmp_path: Path) -> None:
    packed = {**RECIPE, "steps": 4, "grad_accum": 1, "packing": True}
    straight = train(tiny_dir, tmp_path / "a", packed)
    stats = straight["packing"]
    assert stats["documents"] == len(RECORDS) and stats["rows"] < len(RECORDS)
    # Tokens per step are the real tokens of the packed row, not a count over the 4-D attention mask.
    assert all(0 < t <= packed["max_seq_len"] for t in straight["tokens"])
    assert straight["recipe"]["packing"] is True

    with pytest.raises(TrainingStopped):
        train(tiny_dir, tmp_path / "b", packed, options={"stop_after": 2})
    resumed = train(tiny_dir, tmp_path / "b", packed)
    assert resumed["execution"]["resumed_from_step"] == 2
    assert resumed["loss"] == straight["loss"] and resumed["tokens"] == straight["tokens"]
    a, b = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_phases_are_trained_in_curriculum_order(tiny_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_tokens: list[list[int]] = []
    real_loss = sft.causal_lm_loss

    def spy(model, batch):
        first_tokens.append(batch["input_ids"][:, 0].tolist())
        return real_loss(model, batch)

    monkeypatch.setattr(sft, "causal_lm_loss", spy)
    records = [{"kind": "text", "text": "Hello world!", "messages": None, "phase": "warmup"}] * 2 + [
        {"kind": "text", "text": "def add(a, b): return a + b", "messages": None, "phase": "main"}
    ] * 2
    m = train_lora(
        tiny_dir,
        records,
        SFTConfig.from_recipe({**RECIPE, "grad_accum": 1}),
        str(tmp_path / "run"),
        data_manifest_id="mix-1",
        phase_order=["warmup", "main"],
    )
    summary = [(p["phase"], p["first_step"], p["last_step"]) for p in m["phases"]]
    assert [p for p, _, _ in summary] == ["warmup", "main"] and summary[0][1] == 0 and summary[-1][2] == 5
    hello, code = first_tokens[0][0], first_tokens[-1][0]
    assert hello != code
    switch = summary[1][1]
    assert all(row == [hello] for row in first_tokens[:switch]) and all(row == [code] for row in first_tokens[switch:])

    with pytest.raises(ValueError, match="field 'phase': 'main' is not one of the phases"):
        train_lora(tiny_dir, records, SFTConfig.from_recipe(RECIPE), str(tmp_path / "x"), data_manifest_id="m",
                   phase_order=["warmup"])  # fmt: skip
