"""Resolution on connected components (chains), and the shingle sets spilled between sketching and verification."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from benchmarks.labelled_neardup import jaccard, shingles
from mixassets.engine.dedupe import dedupe
from mixassets.engine.dedupe.shingle_sets import ShingleSpill
from tests.helpers import documents

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
VOCAB = [f"word{i}" for i in range(5000)]


def words(seed: int, n: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def mutate(ws: list[str], positions: range, tag: str) -> list[str]:
    return [f"changed{tag}{p}" if p in positions else w for p, w in enumerate(ws)]


# A~B and B~C (five spaced edits each, Jaccard ~0.88) while A~C is ~0.78, below the 0.8 threshold.
A = words(4)
B = mutate(A, range(20, 181, 40), "b")
C = mutate(B, range(30, 191, 40), "c")


def test_the_chain_is_a_chain() -> None:
    sets = {name: shingles(" ".join(ws)) for name, ws in (("a", A), ("b", B), ("c", C))}
    assert jaccard(sets["a"], sets["b"]) >= 0.8 and jaccard(sets["b"], sets["c"]) >= 0.8
    assert jaccard(sets["a"], sets["c"]) < 0.8


def chain(order: dict[str, int]) -> dict[str, dict]:
    """Dedupe the chain with capture days ``order`` (earlier is the better keeper); clusters by doc id."""
    rows = [
        {
            "doc_id": d,
            "source_id": "s",
            "locator": f"f:{k}",
            "text": " ".join(ws),
            "capture_time": T0 + dt.timedelta(order[d]),
        }
        for k, (d, ws) in enumerate((("a", A), ("b", B), ("c", C)))
    ]
    rows.append({"doc_id": "z", "source_id": "s", "locator": "f:9", "text": " ".join(words(99))})
    kept, clusters = dedupe(documents(rows))
    out = {r["doc_id"]: r for r in clusters.to_pylist()}
    assert set(kept.column("doc_id").to_pylist()) == {"a", "b", "c", "z"} - set(out)
    return out


def test_a_chain_is_one_cluster_with_one_keeper_and_verified_links() -> None:
    # A is the best keeper: B matches A, C matches B (not A, which it is not similar to); one cluster, kept A
    c = chain({"a": 0, "b": 1, "c": 2})
    assert {d: (r["kept_doc_id"], r["cluster_id"], r["match_type"]) for d, r in c.items()} == {
        "b": ("a", "s/a", "near"),
        "c": ("b", "s/a", "near"),
    }
    assert all(r["exact_jaccard"] >= 0.8 for r in c.values())


def test_the_walk_reaches_members_through_the_component_not_by_rank_alone() -> None:
    # C ranks above B, but is not similar to the keeper A: it is reached through B, and names B
    c = chain({"a": 0, "c": 1, "b": 2})
    assert c["b"]["kept_doc_id"] == "a" and c["c"]["kept_doc_id"] == "b"
    # the middle as the best keeper: both ends name it
    c = chain({"b": 0, "a": 1, "c": 2})
    assert {d: r["kept_doc_id"] for d, r in c.items()} == {"a": "b", "c": "b"}


def _random_sets(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    pool = rng.integers(0, 2**64, 3000, dtype=np.uint64)
    sets = []
    for k in range(count):
        if k % 17 == 0:
            sets.append(np.empty(0, dtype=np.uint64))
            continue
        picked = rng.choice(pool, int(rng.integers(1, 300)))
        fresh = rng.integers(0, 2**64, int(rng.integers(0, 40)), dtype=np.uint64)
        sets.append(np.unique(np.concatenate([picked, fresh])))
    return sets


def test_shingle_spill_returns_what_was_written() -> None:
    rng = np.random.default_rng(3)
    sets = _random_sets(rng, 50)
    with ShingleSpill() as spill:
        spill.append(sets[:20])
        spill.append(sets[20:])
        positions = np.arange(50) * 3 + 5
        spill.bind(positions)
        wanted = np.array([5, 8, 6, 152])
        assert spill.held(wanted).tolist() == [True, True, False, True]
        got = spill.read_positions(wanted[spill.held(wanted)])
        assert [g.tolist() for g in got] == [sets[0].tolist(), sets[1].tolist(), sets[49].tolist()]
        with pytest.raises(ValueError, match="cannot grow"):
            spill.append(sets[:1])
        with pytest.raises(IndexError):
            spill.read(np.array([50]))


def test_shingle_spill_signatures_come_back_by_position_and_as_a_column() -> None:
    rng = np.random.default_rng(5)
    sets = _random_sets(rng, 40)
    sig = rng.integers(0, 2**32, (40, 16), dtype=np.uint32)
    with ShingleSpill() as spill:
        spill.append(sets[:25], sig[:25])
        with pytest.raises(ValueError, match="without signatures"):
            spill.append(sets[25:26])
        spill.append(sets[25:], sig[25:])
        spill.bind(np.arange(40) * 2)
        wanted = np.array([0, 2, 4, 30, 78])  # runs of consecutive slots and single ones
        assert np.array_equal(spill.signatures_at(wanted), sig[wanted // 2])
        resident = spill.signature_column(16, mapped=False)
        mapped = spill.signature_column(16, mapped=True)
        with pytest.raises(ValueError, match="width 16, not 8"):
            spill.signature_column(8, mapped=False)
    # The map outlives the spill's files; the resident column never depended on them.
    for column in (resident, mapped):
        assert np.array_equal(column.flatten().to_numpy().reshape(40, 16), sig)
    with ShingleSpill() as spill:
        spill.append(sets[:2])
        with pytest.raises(ValueError, match="holds sets without them"):
            spill.append(sets[2:4], sig[2:4])
