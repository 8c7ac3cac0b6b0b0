"""Which examples (or packed rows) each optimizer step trains on, phase by phase.

A curriculum mixture lists its phases in training order (the mixture table's ``phase`` column); training
must see them in that order rather than shuffled together, or the curriculum means nothing. The optimizer
steps are split between phases in proportion to the tokens each phase holds (largest remainder, so they
add up to ``steps`` exactly, and every non-empty phase gets at least one step). Inside a phase items come
in seeded shuffles, one epoch after another, batches running across epoch boundaries, so a phase that
needs more batches than it has items cycles through them again in a fresh order.

The whole plan is a pure function of (phases, token counts, batch shape, steps, seed): a resumed run
regenerates it and starts at its step, and gets exactly the batches the uninterrupted run would have had.
With one phase the stream is the one the training loop always used (one ``random.Random(seed)``
shuffling ``range(n)`` per epoch), so runs without phases keep their data order.

``StepBatches`` is that plan as the ``next_micro_batches`` function ``loop.run_loop`` asks for, used by both
trainers (SFT and distillation).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

PHASE_FIELD = "phase"  # mixassets.engine.mixture.PHASE_COLUMN


def phase_indices(records: Sequence[dict[str, Any]], order: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
    """Each record's phase as an index into the phase names; returns the indices and the names in order.

    ``order`` is the curriculum order (the mixture spec's phase names); without it the order of first
    appearance is used, which is the curriculum order for a mixture table (its rows are sorted by phase).
    Records without a phase (no column) all go to one phase. A phase missing from ``order`` is an error,
    not something to guess a position for.
    """
    names = list(order) if order is not None else []
    if len(set(names)) != len(names):
        raise ValueError(f"phase order repeats a name: {names}")
    index = {name: i for i, name in enumerate(names)}
    out = []
    for r, record in enumerate(records):
        name = record.get(PHASE_FIELD)
        name = "" if name is None else str(name)
        if name not in index:
            if order is not None:
                raise ValueError(f"record {r}: field '{PHASE_FIELD}': {name!r} is not one of the phases {names}")
            index[name] = len(names)
            names.append(name)
        out.append(index[name])
    return out, names


def allocate_steps(phase_tokens: Sequence[int], steps: int) -> list[int]:
    """Optimizer steps per phase, in proportion to its tokens; exact total, >= 1 per phase with tokens.

    Largest remainder on the proportional quotas, with ties going to the earlier phase; a phase raised to
    its minimum step is paid for by the phases most above their quota.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if any(t < 0 for t in phase_tokens):
        raise ValueError(f"token counts must be >= 0, got {list(phase_tokens)}")
    total = sum(phase_tokens)
    live = [p for p, t in enumerate(phase_tokens) if t > 0]
    if steps == 0:
        return [0] * len(phase_tokens)
    if total == 0:
        raise ValueError("no phase has any tokens to train on")
    if steps < len(live):
        raise ValueError(f"{steps} steps cannot give each of the {len(live)} non-empty phases at least one step")
    quota = [steps * t / total for t in phase_tokens]
    alloc = [math.floor(q) for q in quota]
    by_remainder = sorted(live, key=lambda p: (-(quota[p] - alloc[p]), p))
    for p in by_remainder[: steps - sum(alloc)]:
        alloc[p] += 1
    for p in live:
        if alloc[p] == 0:
            alloc[p] = 1
            donor = max((q for q in live if alloc[q] > 1), key=lambda q: (alloc[q] - quota[q], -q))
            alloc[donor] -= 1
    return alloc


def _phase_items(phase_of: Sequence[int], tokens: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    if len(phase_of) != len(tokens):
        raise ValueError(f"phase_of has {len(phase_of)} entries, tokens {len(tokens)}")
    if any(p < 0 for p in phase_of):
        raise ValueError("phase indices must be >= 0")
    n_phases = max(phase_of, default=-1) + 1
    items: list[list[int]] = [[] for _ in range(n_phases)]
    phase_tokens = [0] * n_phases
    for i, (p, t) in enumerate(zip(phase_of, tokens, strict=True)):
        items[p].append(i)
        phase_tokens[p] += t
    return items, phase_tokens


def phase_schedule(phase_of: Sequence[int], tokens: Sequence[int], steps: int) -> list[int]:
    """The phase each optimizer step trains on (for the run manifest): non-decreasing, ``steps`` long."""
    _, phase_tokens = _phase_items(phase_of, tokens)
    return [p for p, n in enumerate(allocate_steps(phase_tokens, steps)) for _ in range(n)]


def schedule_summary(
    phase_of: Sequence[int],
    tokens: Sequence[int],
    steps: int,
    batch_size: int,
    *,
    grad_accum: int = 1,
    names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per phase: name, items, tokens, token share, steps, first/last step (0-based) and epochs seen."""
    items, phase_tokens = _phase_items(phase_of, tokens)
    alloc = allocate_steps(phase_tokens, steps)
    total = sum(phase_tokens)
    out, first = [], 0
    for p, n_steps in enumerate(alloc):
        out.append(
            {
                "phase": names[p] if names is not None else p,
                "items": len(items[p]),
                "tokens": phase_tokens[p],
                "token_share": phase_tokens[p] / total if total else 0.0,
                "steps": n_steps,
                "first_step": first if n_steps else None,
                "last_step": first + n_steps - 1 if n_steps else None,
                "epochs": n_steps * grad_accum * batch_size / len(items[p]) if items[p] else 0.0,
            }
        )
        first += n_steps
    return out


def batch_stream(
    phase_of: Sequence[int],
    tokens: Sequence[int],
    batch_size: int,
    steps: int,
    seed: int,
    *,
    grad_accum: int = 1,
    start_step: int = 0,
) -> Iterator[list[list[int]]]:
    """Item indices for optimizer steps ``start_step .. steps-1``: per step, ``grad_accum`` micro-batches of
    ``batch_size`` indices each.

    Items are examples (padded batches) or packed rows (pack per phase, then pass the rows' phases and
    token counts). ``tokens`` weighs the phases when steps are shared out; ``phase_of`` all zeros means no
    curriculum.
    """
    if batch_size < 1 or grad_accum < 1:
        raise ValueError(f"batch_size and grad_accum must be >= 1, got {batch_size}, {grad_accum}")
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be in 0..{steps}, got {start_step}")
    items, phase_tokens = _phase_items(phase_of, tokens)
    alloc = allocate_steps(phase_tokens, steps)
    # One generator for the whole run, consumed in phase order: replaying from step 0 is what makes a
    # resumed stream identical, and it costs only shuffles of index lists.
    rng = random.Random(seed)
    step = 0
    per_step = batch_size * grad_accum
    for members, n_steps in zip(items, alloc, strict=True):
        pending: list[int] = []
        for _ in range(n_steps):
            while len(pending) < per_step:
                order = list(members)
                rng.shuffle(order)
                pending.extend(order)
            if step >= start_step:
                yield [pending[k * batch_size : (k + 1) * batch_size] for k in range(grad_accum)]
            pending = pending[per_step:]
            step += 1


class MicroBatches(Sequence[dict[str, Any]]):
    """A step's micro-batches, each built only when it is read: a data-parallel rank reads its share
    (``micro[rank::world]``) and never builds, or needs the tokens of, the others'."""

    def __init__(self, ids: list[list[int]], make_batch: Callable[[list[int]], dict[str, Any]]) -> None:
        self.ids, self._make_batch = ids, make_batch

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, k: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, k: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, k: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(k, slice):
            return [self._make_batch(ids) for ids in self.ids[k]]
        return self._make_batch(self.ids[k])


class StepBatches:
    """``next_micro_batches`` for ``run_loop``: the micro-batches of a step, as a function of the step.

    ``make_batch`` turns the item indices of one micro-batch into a batch, when the loop reads it (see
    :class:`MicroBatches`). The index stream is :func:`batch_stream`, started at the first step asked for;
    asking for any other step than the next one restarts it there, so a resumed run gets the batches the
    uninterrupted one had.
    """

    def __init__(
        self,
        phase_of: Sequence[int],
        tokens: Sequence[int],
        make_batch: Callable[[list[int]], dict[str, Any]],
        *,
        batch_size: int,
        steps: int,
        seed: int,
        grad_accum: int,
    ) -> None:
        self._phase_of, self._tokens, self._make_batch = phase_of, tokens, make_batch
        self._shape = {"batch_size": batch_size, "steps": steps, "seed": seed}
        self._grad_accum = grad_accum
        self._stream: Iterator[list[list[int]]] | None = None
        self._next_step = -1

    def __call__(self, step: int) -> MicroBatches:
        if self._stream is None or step != self._next_step:
            self._stream = batch_stream(
                self._phase_of, self._tokens, **self._shape, grad_accum=self._grad_accum, start_step=step
            )
        self._next_step = step + 1
        return MicroBatches(next(self._stream), self._make_batch)

    def items_of_rank(self, rank: int, world_size: int, start_step: int = 0) -> set[int]:
        """Every item a rank trains on from ``start_step`` on (micro-batches ``rank``, ``rank + world_size``,
        ... of each step): what it must read from the mixture, planned from the index alone."""
        stream = batch_stream(
            self._phase_of, self._tokens, **self._shape, grad_accum=self._grad_accum, start_step=start_step
        )
        return {i for micro in stream for ids in micro[rank::world_size] for i in ids}
