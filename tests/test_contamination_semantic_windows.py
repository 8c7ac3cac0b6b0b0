"""The semantic screen's candidate windows, computed for all (document, field) pairs at once, against the
per-pair computation they replaced (no model needed)."""

from __future__ import annotations

import numpy as np

from mixassets.engine.contamination_semantic import densest_windows


def _window(positions: np.ndarray, width: int) -> tuple[int, int]:
    """One group's densest stretch, one numpy call at a time: the earliest start with the most positions."""
    positions = np.unique(positions)
    last = np.searchsorted(positions, positions + width, side="right") - 1
    best = int(np.argmax(last - np.arange(len(positions))))
    return int(positions[best]), int(positions[last[best]])


def test_densest_windows_match_the_per_group_reference() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, 300)
    group = np.repeat(np.arange(len(sizes)), sizes)
    # positions from a few hundred tokens, with repeats and ties, sorted within each group
    positions = rng.integers(0, 400, len(group)) + 10_000 * (group % 7)
    order = np.lexsort((positions, group))
    group, positions = group[order], positions[order]
    widths = rng.integers(0, 60, len(sizes))
    first, last = densest_windows(group, positions, widths)
    expected = [_window(positions[group == g], int(widths[g])) for g in range(len(sizes))]
    assert list(zip(first.tolist(), last.tolist(), strict=True)) == expected


def test_a_single_position_is_its_own_window() -> None:
    first, last = densest_windows(np.array([0, 1, 1]), np.array([5, 3, 3]), np.array([10, 0]))
    assert first.tolist() == [5, 3] and last.tolist() == [5, 3]
