"""Data parallelism for the training loop: one process per device, started by ``torchrun``.

What a run learns must not depend on how many processes share it. So the global batch of a step is what the
recipe says (``batch_size`` x ``grad_accum`` micro-batches, chosen by ``batching.StepBatches`` from the step
index alone), and each rank takes every ``world_size``-th micro-batch of it. Gradients are summed over label
tokens on each rank, all-reduced by ``DistributedDataParallel`` once per step (the other micro-batches run under
``no_sync``), and divided by the *global* label-token count, itself all-reduced: the update is the one a single
process makes on the whole step, up to the order of float sums. Nothing world-size dependent goes into a
checkpoint, so a run checkpointed by two processes resumes in one (or four) with the same next loss.

Rank 0 alone writes checkpoints, manifests and weights and reports to Dagster; the other ranks wait at a
barrier for it. The process group is created from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL when the run is on CUDA, gloo otherwise (CPU tests).

API:
    World(rank, size, local_rank)                    .main, .distributed
    current_world() -> World                         from the initialised process group, else one process
    world_session(device=None)                       context manager: init from torchrun's env, destroy after
    rank_device(device, world) -> str                "cuda" -> "cuda:<local_rank>" under data parallelism
    shard_micro_batches(micro, world, step) -> list  this rank's micro-batches of a step
    all_reduce_sums(values, world) -> list[float]    float64 sums over ranks
    any_rank(flag, world) -> bool
    barrier(world)
    on_main_rank(world, write, read) -> write() on rank 0, read() on the others after it
    DataParallelLoss(model, loss_fn, world, device)  the loss as a DDP-wrapped module (see class)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
ENV_DEFAULTS = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_world() -> World:
    try:
        values = {name: int(os.environ.get(name, default)) for name, default in ENV_DEFAULTS.items()}
    except ValueError as e:
        raise ValueError(f"torchrun environment: {e} (RANK, WORLD_SIZE and LOCAL_RANK must be integers)") from e
    world = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if not 0 <= world.rank < world.size:
        raise ValueError(f"torchrun environment: RANK={world.rank} is outside WORLD_SIZE={world.size}")
    return world


def current_world() -> World:
    """The world of the initialised process group; a single process when there is none."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _wants_cuda(device: str | None) -> bool:
    import torch

    if device is not None:
        return device.startswith("cuda")
    return torch.cuda.is_available()


@contextlib.contextmanager
def world_session(device: str | None = None) -> Iterator[World]:
    """Join the process group torchrun's environment describes (if it describes more than one process) for
    the duration of the block; a process group someone else created is used and left alone."""
    import torch
    import torch.distributed as dist

    world = _env_world()
    if not world.distributed or dist.is_initialized():
        yield current_world() if dist.is_initialized() else world
        return
    cuda = _wants_cuda(device)
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def rank_device(device: str, world: World) -> str:
    """Each rank on its own GPU: a bare ``cuda`` becomes ``cuda:<local_rank>`` under data parallelism."""
    if world.distributed and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def shard_micro_batches(micro: Sequence[Any], world: World, step: int) -> list[Any]:
    """This rank's share of a step's micro-batches: every ``world.size``-th, starting at its rank.

    Every rank must run the same number of micro-batches (DDP reduces once per step, at the last backward of
    each rank), so ``grad_accum`` must be a multiple of the number of processes.
    """
    if not world.distributed:
        return list(micro)
    if len(micro) % world.size:
        raise ValueError(
            f"step {step + 1}: {len(micro)} micro-batches cannot be shared by {world.size} processes; "
            f"set grad_accum to a multiple of {world.size} (the global batch is batch_size x grad_accum)"
        )
    return list(micro[world.rank :: world.size])


def all_reduce_sums(values: Sequence[float], world: World) -> list[float]:
    """Element-wise sums over ranks, in float64 (token counts stay exact; loss sums lose nothing to fp32)."""
    if not world.distributed:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    device = f"cuda:{world.local_rank}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def any_rank(flag: bool, world: World) -> bool:
    return all_reduce_sums([1.0 if flag else 0.0], world)[0] > 0


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def on_main_rank(world: World, write: Callable[[], T], read: Callable[[], T]) -> T:
    """Rank 0 runs ``write`` (publishing weights, manifests); the others wait for it, then ``read`` its result.

    The barrier is passed whether or not ``write`` succeeds, so a failure on rank 0 surfaces on every rank as
    its own error (the others find nothing to read) instead of leaving them waiting.
    """
    if not world.distributed:
        return write()
    if world.main:
        try:
            return write()
        finally:
            barrier(world)
    barrier(world)
    return read()


def _loss_module(model: Any, loss_fn: Callable[[Any, dict[str, Any]], Any]) -> Any:
    import torch

    class LossModule(torch.nn.Module):
        """The model and its loss as one module, so DDP sees the whole forward (the SFT loss calls the decoder
        and the LM head separately, not ``model.forward``)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch: dict[str, Any]) -> Any:
            return loss_fn(self.model, batch)

    return LossModule()


class DataParallelLoss:
    """``loss_fn(model, batch)`` for the loop, data parallel when the world has more than one process.

    ``__call__(batch, sync)`` runs the forward; with ``sync`` False the next backward keeps its gradients local
    (DDP's ``no_sync``), with True it all-reduces them. DDP averages over ranks; ``finish_gradients`` turns that
    back into the sum and divides by the step's global label-token count. Buffers are not re-broadcast each
    forward (``broadcast_buffers=False``): the loop's models hold none that training changes.
    """

    def __init__(self, model: Any, loss_fn: Callable[[Any, dict[str, Any]], Any], world: World, device: str) -> None:
        self.model, self.loss_fn, self.world = model, loss_fn, world
        self._ddp = None
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
            self._ddp = DistributedDataParallel(_loss_module(model, loss_fn), device_ids=ids, broadcast_buffers=False)

    def __call__(self, batch: Mapping[str, Any], sync: bool) -> Any:
        if self._ddp is None:
            return self.loss_fn(self.model, dict(batch))
        context = contextlib.nullcontext() if sync else self._ddp.no_sync()
        with context:
            return self._ddp(dict(batch))

    def backward(self, loss: Any, sync: bool) -> None:
        # no_sync must be active at backward time too: DDP decides whether to reduce when the hooks fire.
        if self._ddp is None or sync:
            loss.backward()
            return
        with self._ddp.no_sync():
            loss.backward()

    def finish_gradients(self, params: Sequence[Any], n_label: int) -> None:
        """Divide the summed gradients by the global label-token count (DDP left their mean over ranks)."""
        import torch

        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    if self.world.distributed:
                        p.grad.mul_(self.world.size)
                    p.grad.div_(n_label)
