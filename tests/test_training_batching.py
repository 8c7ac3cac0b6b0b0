"""Phase-ordered batch streams: step allocation, determinism, resume, and the no-phase behaviour."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training_assets.engine.batching import (
    allocate_steps,
    batch_stream,
    phase_indices,
    phase_schedule,
    schedule_summary,
)
from training_assets.engine.packing import pack_examples


def reference_batches(n: int, batch_size: int, seed: int, count: int) -> list[list[int]]:
    """The training loop's original data order: one seeded shuffle of range(n) per epoch, epochs run together."""
    rng = random.Random(seed)
    pending: list[int] = []
    out = []
    for _ in range(count):
        while len(pending) < batch_size:
            order = list(range(n))
            rng.shuffle(order)
            pending.extend(order)
        out.append(pending[:batch_size])
        pending = pending[batch_size:]
    return out


@pytest.mark.parametrize(("n", "batch_size", "grad_accum"), [(5, 2, 1), (3, 4, 1), (7, 2, 3)])
def test_single_phase_is_the_original_order(n: int, batch_size: int, grad_accum: int) -> None:
    steps = 6
    got = list(batch_stream([0] * n, [10] * n, batch_size, steps, seed=11, grad_accum=grad_accum))
    flat = [micro for step in got for micro in step]
    assert flat == reference_batches(n, batch_size, 11, steps * grad_accum)
    assert all(len(step) == grad_accum for step in got)


def test_allocation_follows_token_shares_exactly() -> None:
    assert allocate_steps([100, 300], 8) == [2, 6]
    assert allocate_steps([1, 1, 1], 10) == [4, 3, 3]  # ties go to the earlier phase
    assert allocate_steps([1000, 1, 0, 5], 10) == [8, 1, 0, 1]  # >= 1 per non-empty phase, paid by the largest
    assert allocate_steps([5, 5], 0) == [0, 0]
    with pytest.raises(ValueError, match="at least one step"):
        allocate_steps([1, 1, 1], 2)
    with pytest.raises(ValueError, match="no phase has any tokens"):
        allocate_steps([0, 0], 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=6), st.integers(0, 200))
def test_allocation_invariants(tokens: list[int], steps: int) -> None:
    live = sum(t > 0 for t in tokens)
    if steps and (not live or steps < live):
        with pytest.raises(ValueError):
            allocate_steps(tokens, steps)
        return
    alloc = allocate_steps(tokens, steps)
    assert sum(alloc) == steps
    assert all((a == 0) == (t == 0 or steps == 0) for a, t in zip(alloc, tokens, strict=True))
    if steps:
        quota = [steps * t / sum(tokens) for t in tokens]
        if all(q >= 1 for q, t in zip(quota, tokens, strict=True) if t > 0):
            # No phase needs lifting to its one-step minimum: plain largest remainder, within a step of quota.
            assert all(abs(a - q) < 1 for a, q in zip(alloc, quota, strict=True))


def test_phases_are_consumed_in_order_and_cycle_within_a_phase() -> None:
    phase_of = [1, 0, 1, 0, 1, 2]  # phase 0: items 1, 3; phase 1: 0, 2, 4; phase 2: 5
    tokens = [10, 10, 10, 10, 10, 20]
    steps = 14
    schedule = phase_schedule(phase_of, tokens, steps)
    assert schedule == [0] * 4 + [1] * 6 + [2] * 4  # token shares 20:30:20 of 14 steps
    stream = list(batch_stream(phase_of, tokens, 2, steps, seed=3))
    members = {0: {1, 3}, 1: {0, 2, 4}, 2: {5}}
    for step, (micro,) in enumerate(stream):
        assert set(micro) <= members[schedule[step]]
    # Every item of a phase is seen once before any is seen again (epoch by epoch).
    phase1 = [i for step, (micro,) in enumerate(stream) if schedule[step] == 1 for i in micro]
    assert all(sorted(phase1[k : k + 3]) == [0, 2, 4] for k in range(0, 12, 3))
    assert stream == list(batch_stream(phase_of, tokens, 2, steps, seed=3))
    assert stream != list(batch_stream(phase_of, tokens, 2, steps, seed=4))


@pytest.mark.parametrize("start", [0, 1, 5, 9, 13, 14])
def test_resume_yields_exactly_the_rest_of_the_stream(start: int) -> None:
    phase_of = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    tokens = [5, 8, 3, 9, 9, 1, 2, 3, 4]
    full = list(batch_stream(phase_of, tokens, 2, 14, seed=7, grad_accum=2))
    assert len(full) == 14
    assert list(batch_stream(phase_of, tokens, 2, 14, seed=7, grad_accum=2, start_step=start)) == full[start:]


def test_packed_rows_are_batched_per_phase() -> None:
    examples = [{"input_ids": [3] * n, "labels": [3] * n} for n in (5, 7, 3, 9, 4, 6)]
    ex_phase = [0, 1, 0, 1, 0, 1]
    rows, _ = pack_examples(examples, 16, pad_id=0, phase_of=ex_phase)
    row_phase = [r["phase"] for r in rows]
    assert row_phase == sorted(row_phase) and set(row_phase) == {0, 1}
    stream = list(batch_stream(row_phase, [r["n_tokens"] for r in rows], 1, 6, seed=0))
    schedule = phase_schedule(row_phase, [r["n_tokens"] for r in rows], 6)
    assert schedule == [0, 0, 1, 1, 1, 1]  # 12 vs 22 tokens
    for step, (micro,) in enumerate(stream):
        assert all(ex_phase[i] == schedule[step] for r in micro for i in rows[r]["examples"])


def test_phase_indices_and_summary() -> None:
    records = [{"phase": "warmup"}, {"phase": "main"}, {"phase": "warmup"}, {"phase": "anneal"}]
    assert phase_indices(records) == ([0, 1, 0, 2], ["warmup", "main", "anneal"])
    assert phase_indices(records, ["anneal", "warmup", "main"]) == ([1, 2, 1, 0], ["anneal", "warmup", "main"])
    assert phase_indices([{"kind": "text"}, {"kind": "chat"}]) == ([0, 0], [""])
    with pytest.raises(ValueError, match="record 3: field 'phase': 'anneal' is not one of"):
        phase_indices(records, ["warmup", "main"])

    phases, names = phase_indices(records)
    summary = schedule_summary(phases, [10, 30, 10, 20], 7, 2, grad_accum=2, names=names)
    assert [s["phase"] for s in summary] == names
    assert [s["steps"] for s in summary] == [2, 3, 2]
    assert [(s["first_step"], s["last_step"]) for s in summary] == [(0, 1), (2, 4), (5, 6)]
    assert summary[0]["tokens"] == 20 and summary[0]["items"] == 2 and summary[0]["epochs"] == 4.0
    assert sum(s["token_share"] for s in summary) == pytest.approx(1.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="start_step"):
        list(batch_stream([0], [1], 1, 3, seed=0, start_step=4))
    with pytest.raises(ValueError, match="phase_of has 2 entries"):
        list(batch_stream([0, 0], [1], 1, 3, seed=0))
    with pytest.raises(ValueError, match="batch_size"):
        list(batch_stream([0], [1], 0, 3, seed=0))
