"""The generic optimisation loop: token-weighted accumulation, RNG-exact resume, NaN guard, checkpoint hygiene,
device and dtype selection, and the run manifest's stable fingerprint."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from training_assets.engine import loop as loop_mod  # noqa: E402
from training_assets.engine import run_manifest as rm  # noqa: E402
from training_assets.engine.checkpoint import (  # noqa: E402
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointMismatchError,
    latest_checkpoint,
    list_checkpoints,
)
from training_assets.engine.loop import (  # noqa: E402
    LoopConfig,
    NonFiniteLossError,
    autocast_context,
    resolve_device,
    run_loop,
)

# Six examples of a noisy linear map; row counts per micro-batch differ on purpose.
X = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 10
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1


class Toy(torch.nn.Module):
    """A linear model with dropout, so the loop's RNG handling is exercised."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.frozen = torch.nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = torch.nn.Linear(4, 1)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.head(self.drop(self.frozen(x)))


def sq_loss(model, batch):
    err = model(batch["x"]) - batch["y"]
    return (err**2).sum(), batch["x"].shape[0], {"abs": err.abs().sum().detach()}


def split_batches(step: int) -> list[dict]:
    rows = [(step + i) % 6 for i in range(3)]
    return [{"x": X[rows[:1]], "y": Y[rows[:1]]}, {"x": X[rows[1:]], "y": Y[rows[1:]]}]


def noisy_loss(model, batch):
    """Draws from every RNG the loop must restore: python, numpy and torch (dropout plus an explicit draw)."""
    loss, n, _ = sq_loss(model, batch)
    noise = 1 + 0.1 * random.random() + 0.1 * float(np.random.rand()) + 0.1 * float(torch.rand(()))
    return loss * noise, n


def cfg(**kw) -> LoopConfig:
    base = {"steps": 6, "lr": 0.05, "warmup_steps": 1, "seed": 3, "dtype": "fp32", "device": "cpu"}
    return LoopConfig(**{**base, **kw})


def head_weights(model: Toy) -> list:
    return [p.detach().clone() for p in model.head.parameters()]


def test_accumulation_is_weighted_by_label_tokens_whatever_the_split() -> None:
    whole, split = Toy(), Toy()
    whole.drop.p = split.drop.p = 0.0

    def one_batch(step: int) -> list[dict]:
        return [{k: torch.cat([b[k] for b in split_batches(step)]) for k in ("x", "y")}]

    a = run_loop(whole, one_batch, sq_loss, cfg(steps=3))
    b = run_loop(split, split_batches, sq_loss, cfg(steps=3))
    assert b.loss == pytest.approx(a.loss, rel=1e-6)
    assert b.label_tokens == a.label_tokens == [3, 3, 3]
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(head_weights(whole), head_weights(split), strict=True))
    assert [m["abs"] for m in a.metrics] == pytest.approx([m["abs"] for m in b.metrics], rel=1e-6)
    assert a.lr == pytest.approx([0.0, 0.05, 0.025])
    assert a.completed and a.step == 3 and a.resumed_from_step is None and a.device == "cpu"


def test_killed_run_resumes_bit_exactly_with_every_rng_restored(tmp_path: Path) -> None:
    straight = Toy()
    a = run_loop(straight, split_batches, noisy_loss, cfg())

    def kill_at_5(info: dict) -> None:
        if info["step"] == 5:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_loop(Toy(), split_batches, noisy_loss, cfg(checkpoint_every=2), checkpoint_dir=tmp_path, on_step=kill_at_5)
    assert latest_checkpoint(tmp_path).step == 4

    # Disturb every global RNG, as a fresh process would: the checkpoint must put them back.
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    resumed_model = Toy()
    b = run_loop(resumed_model, split_batches, noisy_loss, cfg(checkpoint_every=2), checkpoint_dir=tmp_path)
    assert b.resumed_from_step == 4 and b.completed
    assert b.loss == a.loss and b.lr == a.lr and b.grad_norm == a.grad_norm and b.tokens == a.tokens
    assert all(torch.equal(p, q) for p, q in zip(head_weights(straight), head_weights(resumed_model), strict=True))
    assert b.fingerprint == a.fingerprint


def test_stop_after_ends_cleanly_with_a_checkpoint(tmp_path: Path) -> None:
    seen: list[int] = []
    r = run_loop(
        Toy(),
        split_batches,
        sq_loss,
        cfg(stop_after=3),
        checkpoint_dir=tmp_path,
        on_step=lambda i: seen.append(i["step"]),
    )
    assert not r.completed and r.step == 3 and seen == [1, 2, 3]
    assert [c.step for c in list_checkpoints(tmp_path)] == [3]
    assert r.last_checkpoint == str(tmp_path / "step-00000003")


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, n, _ = sq_loss(model, batch)
        return (loss * float("nan"), n) if calls["n"] == 5 else (loss, n)  # 2 micro-batches a step: step 3

    model = Toy()
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss \(micro-batch 1 of 2\) is nan") as err:
        run_loop(model, split_batches, poisoned, cfg(checkpoint_every=1), checkpoint_dir=tmp_path)
    assert err.value.step == 3 and err.value.last_checkpoint == str(tmp_path / "step-00000002")
    assert [c.step for c in list_checkpoints(tmp_path)] == [1, 2]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "scratch dirs left behind"

    # The model still holds step 2's weights: the poisoned step applied nothing.
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "step-00000002" / WEIGHTS_FILE))
    assert torch.equal(saved["head.weight"], model.head.weight.detach())
    assert all(torch.isfinite(t).all() for t in saved.values())


def test_infinite_gradient_is_refused_before_the_update(tmp_path: Path) -> None:
    model = Toy()
    before = head_weights(model)
    model.head.weight.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteLossError, match="step 1: gradient norm is"):
        run_loop(model, split_batches, sq_loss, cfg(), checkpoint_dir=tmp_path)
    assert all(torch.equal(p, q) for p, q in zip(before, head_weights(model), strict=True))
    assert list_checkpoints(tmp_path) == []


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    run_loop(
        Toy(), split_batches, sq_loss, cfg(steps=5, checkpoint_every=1, keep_checkpoints=2), checkpoint_dir=tmp_path
    )
    assert sorted(os.listdir(tmp_path)) == ["step-00000004", "step-00000005"]
    meta = json.loads((tmp_path / "step-00000005" / "checkpoint.json").read_text())
    assert meta["step"] == 5 and len(meta["history"]["loss"]) == 5


def test_a_checkpoint_from_another_config_is_refused_and_resume_false_starts_over(tmp_path: Path) -> None:
    run_loop(Toy(), split_batches, sq_loss, cfg(stop_after=2), checkpoint_dir=tmp_path, run_key={"data": "mix-1"})
    with pytest.raises(CheckpointMismatchError, match=r"different configuration.*loop\.lr: 0\.05 -> 0\.1"):
        run_loop(Toy(), split_batches, sq_loss, cfg(lr=0.1), checkpoint_dir=tmp_path, run_key={"data": "mix-1"})
    with pytest.raises(CheckpointMismatchError, match=r"run\.data: 'mix-1' -> 'mix-2'"):
        run_loop(Toy(), split_batches, sq_loss, cfg(), checkpoint_dir=tmp_path, run_key={"data": "mix-2"})
    # Operational settings may change between the interruption and the resumption.
    r = run_loop(
        Toy(), split_batches, sq_loss, cfg(keep_checkpoints=5), checkpoint_dir=tmp_path, run_key={"data": "mix-1"}
    )
    assert r.resumed_from_step == 2

    fresh = run_loop(Toy(), split_batches, sq_loss, cfg(lr=0.1), checkpoint_dir=tmp_path, resume=False)
    assert fresh.resumed_from_step is None and fresh.completed
    assert [c.step for c in list_checkpoints(tmp_path)] == [6]


def test_resume_true_needs_a_checkpoint_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        run_loop(Toy(), split_batches, sq_loss, cfg(), checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        run_loop(Toy(), split_batches, sq_loss, cfg(), resume=True)
    run_loop(Toy(), split_batches, sq_loss, cfg(stop_after=2), checkpoint_dir=tmp_path)
    weights = tmp_path / "step-00000002" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match=r"step-00000002/trainable\.safetensors: missing or damaged"):
        run_loop(Toy(), split_batches, sq_loss, cfg(), checkpoint_dir=tmp_path)


def test_config_and_batch_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"steps must be > 0, got 0; lr must be a positive number"):
        LoopConfig(steps=0, lr=-1)
    with pytest.raises(ValueError, match="step 1: next_micro_batches"):
        run_loop(Toy(), lambda step: [], sq_loss, cfg())
    with pytest.raises(ValueError, match="step 1: its micro-batches hold no label tokens"):
        run_loop(Toy(), split_batches, lambda m, b: (sq_loss(m, b)[0], 0), cfg())
    frozen = Toy()
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad"):
        run_loop(frozen, split_batches, sq_loss, cfg())


def test_device_preference_is_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device() == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device() == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == "cuda"


def test_bf16_autocasts_matmuls_on_cpu_and_fp32_does_not() -> None:
    a = torch.randn(4, 4)
    with autocast_context("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        assert (a @ a).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        autocast_context("cpu", "fp16")


# -- run manifest ------------------------------------------------------------------------------------


def test_stable_fingerprint_ignores_execution_facts_only() -> None:
    m = {"loss": [1.0, 0.5], "recipe": {"lr": 1e-3}, "wall_time_s": 3.2, "hardware": {"cpu": "x"}, "git": None}
    same = {**m, "wall_time_s": 9.9, "hardware": {"cpu": "y"}, "execution": {"resumed_from_step": 4}, "git": {}}
    assert rm.stable_fingerprint(m) == rm.stable_fingerprint(same)
    assert rm.stable_fingerprint(m) != rm.stable_fingerprint({**m, "loss": [1.0, 0.4]})
    assert rm.stable_fingerprint(m) != rm.stable_fingerprint({**m, "recipe": {"lr": 2e-3}})


def test_build_run_manifest_layout_and_volatile_keys(tmp_path: Path) -> None:
    r = run_loop(Toy(), split_batches, sq_loss, cfg(steps=2))
    m = rm.build_run_manifest(
        r,
        config={"recipe": {"lr": 0.05}},
        seeds={"torch": 3},
        data_manifest_id="mix-1",
        data_shards=[{"path": "part-0.parquet", "sha256": "ab"}],
        base_model={"path": "/m", "weights_sha256": "cd"},
        effective_batch_size=3,
        execution={"checkpoint_dir": None},
        project_dir=tmp_path,
    )
    assert m["loss"] == r.loss and m["lr"] == r.lr and m["tokens"] == r.tokens and m["steps"] == 2
    assert m["data_shards"] == [{"path": "part-0.parquet", "sha256": "ab"}]
    assert m["hardware"]["device"] == "cpu" and m["hardware"]["cpu_count"] == os.cpu_count()
    assert m["execution"]["resumed_from_step"] is None and m["git"] is None  # tmp_path is no git checkout
    assert set(m["packages"]) >= {"torch", "transformers", "peft", "numpy", "pyarrow", "mixtrain", "python"}
    assert m["packages"]["torch"] == torch.__version__
    assert json.loads(json.dumps(m)) == m
    with pytest.raises(ValueError, match="'data_shards' is not JSON-serialisable"):
        rm.build_run_manifest(
            r, config={}, seeds={}, data_manifest_id="x", data_shards=[object()], base_model={}, effective_batch_size=1
        )


def test_operational_fields_are_outside_the_trajectory() -> None:
    c = cfg(checkpoint_every=3, stop_after=2, gradient_checkpointing=True)
    assert c.trajectory() == cfg().trajectory()
    assert set(c.to_dict()) - set(c.trajectory()) == loop_mod.OPERATIONAL_FIELDS
