"""Token-budgeted mixture sampling: weights, caps, policy exclusions and determinism."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mixassets.engine.mixture import sample_mixture
from mixtrain.config.data import MixtureSpec
from mixtrain.schema import DOCUMENT_SCHEMA


def corpus(sizes: dict[str, int], seed: int = 0) -> tuple[pa.Table, list[int], list[bool]]:
    """Docs of 50..150 tokens; every 7th doc is forbidden by the release policy."""
    rng = random.Random(seed)
    rows, tokens, allowed = [], [], []
    for sid, n in sizes.items():
        for i in range(n):
            rows.append({"doc_id": f"{sid}-{i:04d}", "source_id": sid, "locator": f"{sid}:{i}", "kind": "text",
                         "text": f"doc {i} of {sid}"})  # fmt: skip
            tokens.append(rng.randint(50, 150))
            allowed.append(i % 7 != 3)
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tokens, allowed


SIZES = {"code": 400, "web": 400, "chat": 40, "zero": 50, "unlisted": 30}
DOCS, TOKENS, ALLOWED = corpus(SIZES)
SPEC = MixtureSpec(weights={"code": 2, "web": 1, "chat": 1, "zero": 0}, token_budget=20_000, seed=7)


def sample(spec: MixtureSpec = SPEC, docs: pa.Table = DOCS, tokens: list[int] = TOKENS, allowed: list[bool] = ALLOWED):
    return sample_mixture(docs, tokens, spec, allowed=allowed)


def test_budget_weights_and_shortfall() -> None:
    out, stats = sample()
    src = stats["sources"]
    # chat (40 docs, ~34 allowed, ~3.4k tokens) cannot fill its 5k target: all of it, no repeats
    assert src["chat"]["stop_reason"] == "exhausted"
    assert src["chat"]["docs"] == src["chat"]["available_docs"] == 34
    assert src["chat"]["shortfall_tokens"] == 5000 - src["chat"]["tokens"] > 0
    # code and web reach their targets within one document (<= 150 tokens)
    for sid, target in (("code", 10_000), ("web", 5_000)):
        assert src[sid]["target_tokens"] == target
        assert src[sid]["stop_reason"] == "target"
        assert target <= src[sid]["tokens"] < target + 150
    assert stats["totals"]["tokens"] == out.column("tokens").to_numpy().sum() <= SPEC.token_budget + 3 * 150
    assert src["code"]["effective_weight"] == pytest.approx(src["code"]["tokens"] / stats["totals"]["tokens"])
    assert src["code"]["tokens"] / src["web"]["tokens"] == pytest.approx(2.0, rel=0.05)
    assert len(set(out.column("doc_id").to_pylist())) == out.num_rows
    assert sum(s["raw_share"] for s in src.values()) == pytest.approx(1.0)


def test_output_columns_and_order() -> None:
    out, _ = sample()
    assert out.schema.names == [*DOCUMENT_SCHEMA.names, "tokens", "phase", "occurrence"]
    assert out.schema.field("tokens").type == pa.int64()
    assert out.schema.field("occurrence").type == pa.int32()
    assert set(out.column("phase").to_pylist()) == {"all"}  # a spec without phases is one phase
    assert set(out.column("occurrence").to_pylist()) == {0}  # default max_epochs 1: no repeats
    sources = out.column("source_id").to_pylist()
    assert sources == sorted(sources)
    by_id = dict(zip(DOCS.column("doc_id").to_pylist(), TOKENS, strict=True))
    pairs = zip(out.column("doc_id").to_pylist(), out.column("tokens").to_pylist(), strict=True)
    assert all(by_id[d] == t for d, t in pairs)


def test_policy_and_weight_exclusions_are_counted() -> None:
    out, stats = sample()
    src = stats["sources"]
    forbidden = {d for d, ok in zip(DOCS.column("doc_id").to_pylist(), ALLOWED, strict=True) if not ok}
    assert not forbidden & set(out.column("doc_id").to_pylist())
    for sid, n in SIZES.items():
        assert src[sid]["excluded_by_policy"] == sum(1 for i in range(n) if i % 7 == 3)
    assert stats["totals"]["excluded_by_policy"] == len(forbidden)
    zero = src["zero"]
    assert (zero["docs"], zero["stop_reason"], zero["excluded_by_weight"]) == (0, "weight_zero", 43)
    assert (src["unlisted"]["docs"], src["unlisted"]["stop_reason"]) == (0, "not_in_weights")
    assert set(out.column("source_id").to_pylist()) == {"code", "web", "chat"}


def test_max_docs_caps_a_source() -> None:
    spec = SPEC.model_copy(update={"max_docs": {"code": 10}})
    out, stats = sample(spec)
    assert stats["sources"]["code"]["docs"] == 10
    assert stats["sources"]["code"]["stop_reason"] == "max_docs"
    assert stats["sources"]["code"]["shortfall_tokens"] > 0
    assert out.filter(pc.equal(out.column("source_id"), "code")).num_rows == 10


def test_deterministic_and_independent_of_row_order() -> None:
    out1, stats1 = sample()
    out2, stats2 = sample()
    assert out1.equals(out2) and stats1 == stats2
    perm = list(range(DOCS.num_rows))
    random.Random(3).shuffle(perm)
    out3, stats3 = sample(docs=DOCS.take(perm), tokens=[TOKENS[i] for i in perm], allowed=[ALLOWED[i] for i in perm])
    assert out3.equals(out1) and stats3 == stats1


def test_seed_changes_selection_and_sources_are_independent() -> None:
    out1, _ = sample()
    out2, stats2 = sample(SPEC.model_copy(update={"seed": 8}))
    assert out2.column("doc_id").to_pylist() != out1.column("doc_id").to_pylist()
    assert stats2["sources"]["chat"]["docs"] == 34
    # changing another source's weight changes its target, not the order code is drawn in
    spec = SPEC.model_copy(update={"weights": {"code": 2, "web": 3, "chat": 1}})
    out3, stats3 = sample(spec)
    code1 = [d for d in out1.column("doc_id").to_pylist() if d.startswith("code")]
    code3 = [d for d in out3.column("doc_id").to_pylist() if d.startswith("code")]
    assert code3 == code1[: len(code3)]
    assert stats3["sources"]["code"]["target_tokens"] == round(20_000 * 2 / 6)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="token counts"):
        sample_mixture(DOCS, TOKENS[:-1], SPEC, allowed=ALLOWED)
    with pytest.raises(ValueError, match="policy flags"):
        sample_mixture(DOCS, TOKENS, SPEC, allowed=ALLOWED[:-1])
    with pytest.raises(ValueError, match="negative"):
        sample_mixture(DOCS, [-1, *TOKENS[1:]], SPEC, allowed=ALLOWED)
