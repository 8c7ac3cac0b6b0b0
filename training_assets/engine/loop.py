"""One optimisation loop for every trainer (SFT, distillation): seeded, checkpointed, resumable, NaN-guarded.

The loop knows nothing about what is being learnt. A caller supplies the batches, as a function of the step
index, and a loss that returns a *sum* over label tokens with the token count; the loop divides the accumulated
gradient by the step's total count, so the update equals that of one big batch however the step is split into
micro-batches and however unevenly tokens fall into them.

Because batches are a function of the step and every RNG is saved with the checkpoint, a run killed after
step k and resumed makes exactly the updates the uninterrupted run would have made (bit-identical on CPU in
fp32; on GPU up to the kernels' own nondeterminism).

API:
    resolve_device(requested=None) -> "cuda" | "mps" | "cpu"   (auto: cuda > mps > cpu)
    seed_everything(seed) -> {rng name: seed}
    autocast_context(device, dtype)                            bf16 autocast for dtype "bf16", else no-op
    LoopConfig(steps, lr, warmup_steps=0, seed=0, dtype="bf16", schedule="linear", weight_decay=0.0,
               betas=(0.9, 0.999), eps=1e-8, max_grad_norm=1.0, gradient_checkpointing=False,
               checkpoint_every=0, keep_checkpoints=2, stop_after=None, device=None, compile=False)
    run_loop(model, next_micro_batches, loss_fn, cfg, *, checkpoint_dir=None, resume=None, run_key=None,
             on_step=None) -> LoopResult

    LoopResult: steps, completed, step (steps done), device, dtype, fingerprint, per-step lists loss / lr /
        grad_norm / tokens / label_tokens / metrics (``curves()`` returns them as a dict), wall_time_s (all
        sessions), session_wall_time_s, tokens_per_s, resumed_from_step, last_checkpoint
    NonFiniteLossError(FloatingPointError): .step, .what, .value, .last_checkpoint

    next_micro_batches(step: int) -> Sequence[Mapping[str, Any]]
        The micro-batches of optimizer step ``step`` (0-based), called with increasing steps starting at 0, or at
        the resumed step. Tensors are moved to the loop's device; other values are passed through untouched.
        Tokens per step are counted from a batch's ``n_tokens`` if it has one, else its 2-D ``attention_mask``,
        else ``input_ids``.
    loss_fn(model, batch) -> (loss_sum, n_label_tokens) | (loss_sum, n_label_tokens, metrics)
        Runs inside autocast. ``loss_sum`` is a scalar tensor summed (not averaged) over the batch's label
        tokens; ``metrics`` (optional) are further per-token sums, e.g. {"kl": ..., "ce": ...}, reported per
        step divided by the step's label tokens.
    on_step(info): called after each step (and after its checkpoint is on disk) with step (1-based), steps,
        loss, lr, grad_norm, tokens, label_tokens, metrics, elapsed_s, checkpoint. An exception raised there
        ends the run like a crash would; the checkpoints stay.

Checkpoints (``checkpoint.py``) are written when ``checkpoint_dir`` is given: every ``checkpoint_every`` steps
(0: never on a schedule), at ``stop_after`` and at the final step. ``resume``: None resumes from the newest
checkpoint when there is one; True requires one; False deletes existing checkpoints and starts over. A checkpoint
whose config fingerprint (the trajectory-relevant LoopConfig fields plus the caller's ``run_key``: data, base
model, recipe) differs from this run's is refused with the differing fields named.

A non-finite loss or gradient norm stops the run with ``NonFiniteLossError`` (step, value) before the optimizer
applies it, so no checkpoint ever holds the damage and the newest one is the last good state.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixtrain.faults import kill_point
from mixtrain.identity import canonical_json, fingerprint
from training_assets.engine.accel import compile_decoder, to_device
from training_assets.engine.checkpoint import (
    check_compatible,
    checkpoint_name,
    clear_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    trainable_named_parameters,
)
from training_assets.engine.distributed import (
    DataParallelLoss,
    all_reduce_sums,
    barrier,
    current_world,
    rank_device,
    shard_micro_batches,
)

LossOutput = tuple[Any, Any] | tuple[Any, Any, Mapping[str, Any]]

# LoopConfig fields that change nothing about the numbers a run produces: they may differ between an
# interrupted run and its resumption (e.g. turn on gradient checkpointing to fit a smaller GPU).
OPERATIONAL_FIELDS = frozenset(
    {"gradient_checkpointing", "checkpoint_every", "keep_checkpoints", "stop_after", "device", "compile"}
)
HISTORY_KEYS = ("loss", "lr", "grad_norm", "tokens", "label_tokens", "metrics")


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient norm became NaN/inf; nothing from that step was applied or checkpointed."""

    def __init__(self, step: int, what: str, value: float, last_checkpoint: str | None) -> None:
        self.step, self.what, self.value, self.last_checkpoint = step, what, value, last_checkpoint
        kept = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
        super().__init__(
            f"step {step}: {what} is {value} — training stopped before applying it ({kept}). "
            "Lower the learning rate, check the data of this step, or use fp32."
        )


def resolve_device(requested: str | None = None) -> str:
    """``requested`` as given, else the best available accelerator: cuda, then Apple mps, then cpu."""
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def seed_everything(seed: int) -> dict[str, int]:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return {"python_random": seed, "numpy": seed, "torch": seed, "data_order": seed}


def autocast_context(device: str, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast (fp32 master weights stay fp32, so small updates are not rounded away) or nothing."""
    import torch

    if dtype == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    if dtype != "fp32":
        raise ValueError(f"dtype must be 'bf16' or 'fp32', got {dtype!r}")
    return contextlib.nullcontext()


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    warmup_steps: int = 0
    seed: int = 0
    dtype: Literal["bf16", "fp32"] = "bf16"
    schedule: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0: no clipping (the norm is still measured and checked)
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    stop_after: int | None = None  # end the run cleanly after this step (pre-emption, tests); result.completed False
    device: str | None = None  # None: resolve_device()
    compile: bool = False  # torch.compile the decoder (speed only; see accel.compile_decoder)

    def __post_init__(self) -> None:
        problems = []
        if self.steps <= 0:
            problems.append(f"steps must be > 0, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_grad_norm < 0:
            problems.append(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            problems.append(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.stop_after is not None and self.stop_after <= 0:
            problems.append(f"stop_after must be > 0, got {self.stop_after}")
        if self.dtype not in ("bf16", "fp32"):
            problems.append(f"dtype must be 'bf16' or 'fp32', got {self.dtype!r}")
        if problems:
            raise ValueError("LoopConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def optimizer_record(self) -> dict[str, Any]:
        """The optimiser as run_loop builds it, for a run manifest: settings a recipe does not expose included."""
        return {
            "name": "AdamW",
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "schedule": self.schedule,
        }

    def trajectory(self) -> dict[str, Any]:
        """The fields that decide which updates the run makes (what a checkpoint must agree on)."""
        return {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL_FIELDS}


@dataclass
class LoopResult:
    steps: int  # steps the config asked for
    completed: bool  # False when stop_after ended the run early
    device: str
    dtype: str
    fingerprint: str  # of the trajectory config + run_key; what checkpoints are matched on
    loss: list[float] = field(default_factory=list)  # token-weighted loss of each step
    lr: list[float] = field(default_factory=list)  # learning rate each step used
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    tokens: list[int] = field(default_factory=list)  # attended tokens per step (padding excluded)
    label_tokens: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0  # all sessions of this run, resumed ones included
    session_wall_time_s: float = 0.0  # this call only
    resumed_from_step: int | None = None
    last_checkpoint: str | None = None
    world_size: int = 1  # processes that shared each step (data parallel); the numbers do not depend on it

    @property
    def step(self) -> int:
        return len(self.loss)

    @property
    def tokens_per_s(self) -> float | None:
        return sum(self.tokens) / self.wall_time_s if self.wall_time_s > 0 else None

    def curves(self) -> dict[str, Any]:
        """Per-step history, all of it determined by the inputs (no timings)."""
        return {k: list(getattr(self, k)) for k in HISTORY_KEYS}


def _count_tokens(batch: Mapping[str, Any], n_label: int) -> int:
    """Tokens the model read: the batch's own ``n_tokens`` (packed rows, whose mask is 4-D), else attended
    positions of a 2-D mask, else every input id, else (no token inputs at all) the loss's count."""
    if "n_tokens" in batch:
        return int(batch["n_tokens"])
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    if "input_ids" in batch:
        return int(batch["input_ids"].numel())
    return n_label


def _enable_gradient_checkpointing(model: Any) -> None:
    # Non-reentrant checkpointing needs no input that requires grad (a frozen base under LoRA has none) and
    # replays dropout with the saved RNG state, so results match the run without it. transformers 5.x renamed
    # the method (the old name warns it goes in v6); older versions only have the old one.
    kwargs = {"use_reentrant": False}
    if (enable := getattr(model, "activation_checkpointing_enable", None)) is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    elif (enable := getattr(model, "gradient_checkpointing_enable", None)) is not None:
        enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise TypeError(f"gradient_checkpointing=True but {type(model).__name__} has no way to enable it")
    if getattr(getattr(model, "config", None), "use_cache", False):
        model.config.use_cache = False


def _optimizer(params: list[Any], cfg: LoopConfig, device: str) -> Any:
    """AdamW; on CUDA its fused kernel (one launch for all parameters instead of several per tensor)."""
    import torch

    fused = {"fused": True} if device.startswith("cuda") else {}
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **fused)


def run_loop(
    model: Any,
    next_micro_batches: Callable[[int], Sequence[Mapping[str, Any]]],
    loss_fn: Callable[[Any, dict[str, Any]], LossOutput],
    cfg: LoopConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool | None = None,
    run_key: Mapping[str, Any] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> LoopResult:
    """Train ``model``'s parameters that require grad for ``cfg.steps`` optimizer steps (see module docstring)."""
    import torch
    from transformers import get_scheduler

    world = current_world()
    device = rank_device(resolve_device(cfg.device), world)
    model.to(device)
    model.train()
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    if cfg.compile:
        compile_decoder(model)
    named = trainable_named_parameters(model)
    if not named:
        raise ValueError("run_loop: the model has no parameters with requires_grad=True")
    params = [p for _, p in named]
    optimizer = _optimizer(params, cfg, device)
    scheduler = get_scheduler(cfg.schedule, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    key_inputs = {"loop": cfg.trajectory(), "run": dict(run_key or {})}
    canonical_json(key_inputs)  # fails now, not at the first checkpoint, if run_key is not plain JSON
    key = fingerprint(key_inputs)
    result = LoopResult(
        steps=cfg.steps, completed=False, device=device, dtype=cfg.dtype, fingerprint=key, world_size=world.size
    )

    previous_wall = 0.0
    if checkpoint_dir is None:
        if resume:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")
    else:
        ckpt = latest_checkpoint(checkpoint_dir)
        barrier(world)  # every rank has chosen before rank 0 may delete anything
        if resume is False:
            if world.main:
                clear_checkpoints(checkpoint_dir)
            barrier(world)
        elif ckpt is not None:
            check_compatible(ckpt, key, key_inputs)
            history = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
            for k in HISTORY_KEYS:
                getattr(result, k).extend(history[k])
            previous_wall = float(history.get("wall_time_s", 0.0))
            result.resumed_from_step = ckpt.step
            result.last_checkpoint = str(ckpt.path)
        elif resume:
            raise FileNotFoundError(f"resume=True but {checkpoint_dir} holds no checkpoint")
    if result.resumed_from_step is None:
        seed_everything(cfg.seed)
    step_loss = DataParallelLoss(model, loss_fn, world, device)

    def save(directory: str | Path, step: int, elapsed: float) -> None:
        if world.main:
            history = {**result.curves(), "wall_time_s": elapsed}
            path = save_checkpoint(
                directory,
                step,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                fingerprint=key,
                fingerprint_inputs=key_inputs,
                history=history,
                keep=cfg.keep_checkpoints,
            )
        else:
            path = Path(directory) / checkpoint_name(step)
        barrier(world)  # no rank goes on (or dies) before the checkpoint is complete
        result.last_checkpoint = str(path)

    autocast = autocast_context(device, cfg.dtype)
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
    t0 = time.perf_counter()
    for step in range(result.step, cfg.steps):
        done = step + 1
        global_micro = next_micro_batches(step)
        if not global_micro:
            raise ValueError(f"step {done}: next_micro_batches({step}) returned no micro-batches")
        micro = shard_micro_batches(global_micro, world, step)
        lr = float(optimizer.param_groups[0]["lr"])
        loss_sum, n_label, tokens = 0.0, 0, 0
        metric_sums: dict[str, float] = {}
        bad: tuple[str, float] | None = None
        for j, raw in enumerate(micro):
            batch = to_device(raw, device)
            last = j == len(micro) - 1
            with autocast:
                out = step_loss(batch, sync=last)
            value = float(out[0].detach())
            if not math.isfinite(value) and bad is None:
                where = f"loss (micro-batch {j * world.size + world.rank + 1} of {len(global_micro)})"
                if not world.distributed:
                    raise NonFiniteLossError(done, where, value, result.last_checkpoint)
                bad = (where, value)  # every rank must reach the all-reduce before any of them stops
            step_loss.backward(out[0], sync=last)
            loss_sum += value
            n_micro = int(out[1])
            n_label += n_micro
            tokens += _count_tokens(raw, n_micro)
            for name, v in (out[2] if len(out) > 2 else {}).items():
                metric_sums[name] = metric_sums.get(name, 0.0) + float(v)
        names = sorted(metric_sums)
        totals = all_reduce_sums([loss_sum, n_label, tokens, bad is not None, *(metric_sums[k] for k in names)], world)
        loss_sum, n_label, tokens = totals[0], int(totals[1]), int(totals[2])
        metric_sums = dict(zip(names, totals[4:], strict=True))
        if totals[3]:
            where, value = bad if bad is not None else ("loss (on another rank)", math.nan)
            raise NonFiniteLossError(done, where, value, result.last_checkpoint)
        if n_label <= 0:
            raise ValueError(f"step {done}: its micro-batches hold no label tokens")
        step_loss.finish_gradients(params, n_label)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(done, "gradient norm", grad_norm, result.last_checkpoint)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        result.loss.append(loss_sum / n_label)
        result.lr.append(lr)
        result.grad_norm.append(grad_norm)
        result.tokens.append(tokens)
        result.label_tokens.append(n_label)
        result.metrics.append({k: v / n_label for k, v in sorted(metric_sums.items())})
        elapsed = previous_wall + time.perf_counter() - t0
        stopping = cfg.stop_after is not None and done >= cfg.stop_after and done < cfg.steps
        if checkpoint_dir is not None and (
            (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps or stopping
        ):
            save(checkpoint_dir, done, elapsed)
        kill_point("train.step", str(checkpoint_dir or ""))
        if on_step is not None and world.main:
            on_step(
                {
                    "step": done,
                    "steps": cfg.steps,
                    "loss": result.loss[-1],
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": tokens,
                    "label_tokens": n_label,
                    "metrics": result.metrics[-1],
                    "elapsed_s": elapsed,
                    "checkpoint": result.last_checkpoint,
                    "world_size": world.size,
                }
            )
        if stopping:
            break
    result.session_wall_time_s = time.perf_counter() - t0
    result.wall_time_s = previous_wall + result.session_wall_time_s
    result.completed = result.step == cfg.steps
    return result
