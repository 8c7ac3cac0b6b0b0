"""Mixture levers beyond plain weights: domain weights, temperature, caps, floors, length buckets, repeats,
curriculum phases, and the guarantees that make a mixture a reproducible artifact."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mixassets.engine.mixture import apportion, sample_mixture, sampling_weights
from mixtrain.config.data import LengthBucket, MixtureSpec, PhaseSpec
from mixtrain.schema import DOCUMENT_SCHEMA

# source -> (domain, language, documents, token range)
LAYOUT = {
    "py": ("code", "en", 300, (50, 150)),
    "js": ("code", "en", 200, (50, 150)),
    "news": ("web", "de", 300, (50, 150)),
    "tiny": ("web", "fr", 10, (90, 110)),
    "other": ("misc", "en", 40, (50, 150)),
}


def corpus(layout=LAYOUT, seed: int = 0) -> tuple[pa.Table, list[int], list[bool]]:
    """Every 9th document is forbidden by the release policy."""
    rng = random.Random(seed)
    rows, tokens, allowed = [], [], []
    for sid, (domain, lang, n, (lo, hi)) in layout.items():
        for i in range(n):
            rows.append({"doc_id": f"{sid}-{i:04d}", "source_id": sid, "locator": f"{sid}:{i}", "kind": "text",
                         "text": f"doc {i}", "domain": domain, "language": lang})  # fmt: skip
            tokens.append(rng.randint(lo, hi))
            allowed.append(i % 9 != 4)
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), tokens, allowed


DOCS, TOKENS, ALLOWED = corpus()


def sample(spec: MixtureSpec, docs: pa.Table = DOCS, tokens=TOKENS, allowed=ALLOWED):
    return sample_mixture(docs, tokens, spec, allowed=allowed)


def rows_of(out: pa.Table, sid: str) -> pa.Table:
    return out.filter(pc.equal(out.column("source_id"), sid))


def test_apportion_sums_exactly_and_breaks_ties_by_key() -> None:
    assert apportion(20_000, {"a": 2, "b": 3, "c": 1}) == {"a": 6667, "b": 10_000, "c": 3333}
    assert apportion(7, {"x": 1, "y": 1, "z": 0}) == {"x": 4, "y": 3, "z": 0}
    assert apportion(5, {"x": 0}) == {"x": 0}
    split = apportion(1_000_003, {str(i): i + 0.37 for i in range(50)})
    assert sum(split.values()) == 1_000_003


def test_domain_weights_multiply_and_stand_in_for_a_missing_weight() -> None:
    spec = MixtureSpec(weights={"py": 1, "news": 3}, domain_weights={"code": 2}, token_budget=6000, seed=1)
    _, stats = sample(spec)
    src = stats["sources"]
    # py: 1 x 2 = 2, js: (none) x 2 = 2, news: 3 x (web unlisted = 1) = 3, tiny / other: in neither map
    assert {s: src[s]["target_tokens"] for s in ("py", "js", "news")} == {"py": 1714, "js": 1714, "news": 2572}
    assert src["tiny"]["stop_reason"] == src["other"]["stop_reason"] == "not_in_weights"
    assert src["js"]["domain"] == "code" and src["js"]["domain_weight"] == 2
    assert stats["domains"]["code"]["target_tokens"] == 1714 * 2
    assert stats["domains"]["misc"]["excluded_by_weight"] == src["other"]["available_docs"] > 0


def test_temperature_follows_size_and_flattens_toward_weights() -> None:
    weights = {"py": 1, "tiny": 1}
    sizes = {s: stats_available(s) for s in weights}
    _, t1 = sample(MixtureSpec(weights=weights, temperature=1.0, token_budget=3000))
    expected = sizes["tiny"] / (sizes["py"] + sizes["tiny"])
    assert t1["sources"]["tiny"]["sampling_share"] == pytest.approx(expected)
    assert t1["sources"]["tiny"]["target_tokens"] == round(3000 * expected)
    _, t5 = sample(MixtureSpec(weights=weights, temperature=5.0, token_budget=3000))
    root = {s: n ** (1 / 5) for s, n in sizes.items()}
    assert t5["sources"]["tiny"]["sampling_share"] == pytest.approx(root["tiny"] / sum(root.values()))
    _, none = sample(MixtureSpec(weights=weights, token_budget=3000))
    assert none["sources"]["tiny"]["sampling_share"] == 0.5
    shares = [s["sources"]["tiny"]["sampling_share"] for s in (t1, t5, none)]
    assert shares == sorted(shares)  # higher temperature, closer to the weights
    # the raw (available) share is reported beside the sampled one
    assert t1["sources"]["tiny"]["raw_share"] == pytest.approx(sizes["tiny"] / t1["totals"]["available_tokens"])


def stats_available(sid: str) -> int:
    return sum(t for s, t, ok in zip(DOCS.column("source_id").to_pylist(), TOKENS, ALLOWED, strict=True)
               if s == sid and ok)  # fmt: skip


def test_sampling_weights_do_not_overflow_at_low_temperature() -> None:
    p = sampling_weights({"a": 1.0, "b": 1.0, "c": 0.0}, {"a": 10**9, "b": 10**8, "c": 10**9}, 0.01)
    assert p["a"] == 1.0 and 0 <= p["b"] < 1e-90 and p["c"] == 0.0
    assert all(math.isfinite(v) for v in p.values())


def test_max_tokens_is_a_hard_cap_and_max_docs_counts_distinct_documents() -> None:
    spec = MixtureSpec(weights={"py": 1, "js": 1}, max_tokens={"py": 1234}, token_budget=6000, seed=3)
    out, stats = sample(spec)
    assert 1234 - 150 < stats["sources"]["py"]["tokens"] <= 1234
    assert stats["sources"]["py"]["stop_reason"] == "max_tokens"
    assert stats["sources"]["py"]["shortfall_tokens"] == 3000 - stats["sources"]["py"]["tokens"]
    assert sum(rows_of(out, "py").column("tokens").to_pylist()) <= 1234
    spec = MixtureSpec(weights={"tiny": 1}, max_docs={"tiny": 4}, max_epochs={"tiny": 3}, token_budget=5000)
    out, stats = sample(spec)
    assert stats["sources"]["tiny"]["unique_docs"] == 4 and stats["sources"]["tiny"]["docs"] == 12
    assert stats["sources"]["tiny"]["stop_reason"] == "max_docs"


def test_floors_are_reserved_before_the_weights_split_the_rest() -> None:
    spec = MixtureSpec(weights={"py": 3, "news": 1}, min_tokens={"other": 800, "news": 200}, token_budget=5000)
    _, stats = sample(spec)
    src = stats["sources"]
    # 1000 reserved; 4000 split 3:1
    assert (src["py"]["target_tokens"], src["news"]["target_tokens"], src["other"]["target_tokens"]) == (
        3000,
        1200,
        800,
    )
    assert src["other"]["tokens"] >= 800 and src["other"]["floor_shortfall_tokens"] == 0
    assert stats["totals"]["target_tokens"] == 5000


def test_unmeetable_floors_are_reported_not_looped_on() -> None:
    spec = MixtureSpec(weights={"py": 1}, min_tokens={"tiny": 5000}, token_budget=8000)
    _, stats = sample(spec)
    tiny = stats["sources"]["tiny"]
    assert tiny["stop_reason"] == "exhausted" and tiny["docs"] == tiny["available_docs"]
    assert tiny["floor_shortfall_tokens"] == 5000 - tiny["tokens"] > 0
    assert any("tiny" in w and "min_tokens" in w for w in stats["warnings"])
    # floors larger than the budget are scaled to it
    spec = MixtureSpec(weights={"py": 1}, min_tokens={"py": 3000, "js": 1000}, token_budget=2000)
    _, stats = sample(spec)
    assert (stats["sources"]["py"]["target_tokens"], stats["sources"]["js"]["target_tokens"]) == (1500, 500)
    assert any("floors ask 4000" in w for w in stats["warnings"])


def test_length_buckets_weight_and_exclude_short_documents() -> None:
    layout = {"mixed": ("web", "en", 600, (5, 300))}
    docs, tokens, allowed = corpus(layout, seed=5)
    short = {d for d, t in zip(docs.column("doc_id").to_pylist(), tokens, strict=True) if t <= 60}
    plain = MixtureSpec(weights={"mixed": 1}, token_budget=15_000, seed=2)
    favour_long = [LengthBucket(max_tokens=60, weight=0.05), LengthBucket(max_tokens=None, weight=1.0)]

    def short_share(buckets: list[LengthBucket]) -> float:
        """Over a few seeds, so the comparison is about the weighting, not one draw."""
        ids = []
        for seed in range(4):
            spec = plain.model_copy(update={"length_buckets": buckets, "seed": seed})
            ids += sample_mixture(docs, tokens, spec, allowed=allowed)[0].column("doc_id").to_pylist()
        return sum(d in short for d in ids) / len(ids)

    share_plain, share_long = short_share([]), short_share(favour_long)
    assert share_plain > 0.1 and share_long < share_plain / 4
    drop_short = plain.model_copy(update={"length_buckets": [LengthBucket(max_tokens=60, weight=0.0)]})
    out, stats = sample_mixture(docs, tokens, drop_short, allowed=allowed)
    assert not short & set(out.column("doc_id").to_pylist())
    n_short_allowed = sum(1 for d, ok in zip(docs.column("doc_id").to_pylist(), allowed, strict=True)
                          if ok and d in short)  # fmt: skip
    assert stats["sources"]["mixed"]["excluded_by_length"] == n_short_allowed > 0
    assert stats["sources"]["mixed"]["drawable_tokens"] == stats["sources"]["mixed"]["available_tokens"] - sum(
        t for t, d, ok in zip(tokens, docs.column("doc_id").to_pylist(), allowed, strict=True) if ok and d in short
    )


def test_upsampling_repeats_whole_epochs_up_to_max_epochs() -> None:
    spec = MixtureSpec(weights={"tiny": 1}, max_epochs={"tiny": 3}, token_budget=2000, seed=4)
    out, stats = sample(spec)
    tiny = stats["sources"]["tiny"]
    n = tiny["available_docs"]  # 9 allowed docs of ~100 tokens: ~2.2 epochs
    assert tiny["stop_reason"] == "target" and 2000 <= tiny["tokens"] < 2000 + 110
    assert tiny["unique_docs"] == n and tiny["docs"] == out.num_rows > n
    assert tiny["repeat_factor"] == pytest.approx(out.num_rows / n)
    assert tiny["repeated_docs"] == out.num_rows - n
    occ = out.column("occurrence").to_pylist()
    assert occ == sorted(occ) and max(occ) == 2  # epoch by epoch
    ids = out.column("doc_id").to_pylist()
    assert ids[n : 2 * n] == ids[:n]  # each epoch repeats the same draw order
    assert max(Counter(ids).values()) <= 3
    # not enough even with repeats: a shortfall, never an endless loop
    spec = spec.model_copy(update={"max_epochs": {"tiny": 2}, "token_budget": 10_000})
    _, stats = sample(spec)
    assert stats["sources"]["tiny"]["stop_reason"] == "exhausted" and stats["sources"]["tiny"]["docs"] == 2 * n
    assert stats["totals"]["shortfall_tokens"] == 10_000 - stats["sources"]["tiny"]["tokens"]


def test_documents_without_tokens_are_not_repeated_forever() -> None:
    docs, _, allowed = corpus({"z": ("web", "en", 5, (1, 1))})
    spec = MixtureSpec(weights={"z": 1}, max_epochs={"z": 10**9}, token_budget=100)
    out, stats = sample_mixture(docs, [0] * 5, spec, allowed=allowed)
    assert (
        out.num_rows == stats["sources"]["z"]["docs"] == allowed.count(True)
        and stats["sources"]["z"]["stop_reason"] == "exhausted"
    )


def test_phases_split_the_budget_and_order_the_table() -> None:
    spec = MixtureSpec(
        weights={"py": 1, "news": 1},
        token_budget=9000,
        seed=5,
        phases=[PhaseSpec(name="warmup", share=1 / 3, weights={"news": 1}), PhaseSpec(name="main", share=2 / 3)],
    )
    out, stats = sample(spec)
    ph = stats["phases"]
    assert list(ph) == ["warmup", "main"]
    assert (ph["warmup"]["token_budget"], ph["main"]["token_budget"]) == (3000, 6000)
    assert set(ph["warmup"]["sources"]) == {"news"} and set(ph["main"]["sources"]) == {"news", "py"}
    assert ph["main"]["sources"]["py"]["target_tokens"] == 3000
    phases = out.column("phase").to_pylist()
    assert phases == sorted(phases, key=["warmup", "main"].index)
    warm = out.filter(pc.equal(out.column("phase"), "warmup"))
    main = out.filter(pc.equal(out.column("phase"), "main"))
    assert set(warm.column("source_id").to_pylist()) == {"news"}
    # max_epochs 1: a document is used by one phase at most
    assert not set(warm.column("doc_id").to_pylist()) & set(main.column("doc_id").to_pylist())
    assert stats["sources"]["news"]["target_tokens"] == 6000
    assert ph["warmup"]["tokens"] + ph["main"]["tokens"] == stats["totals"]["tokens"]


def test_a_document_reappears_in_a_later_phase_only_within_max_epochs() -> None:
    spec = MixtureSpec(
        weights={"tiny": 1},
        max_epochs={"tiny": 2},
        token_budget=1600,
        phases=[PhaseSpec(name="a", share=0.5), PhaseSpec(name="b", share=0.5)],
    )
    out, stats = sample(spec)
    n = stats["sources"]["tiny"]["available_docs"]
    counts = Counter(out.column("doc_id").to_pylist())
    assert max(counts.values()) == 2 and len(counts) == n
    b = out.filter(pc.equal(out.column("phase"), "b"))
    assert 0 in b.column("occurrence").to_pylist() and 1 in b.column("occurrence").to_pylist()
    assert stats["phases"]["b"]["repeated_docs"] == stats["sources"]["tiny"]["repeated_docs"]


def test_same_inputs_give_byte_identical_parquet_and_a_new_seed_keeps_targets(tmp_path) -> None:
    spec = MixtureSpec(
        weights={"py": 2, "js": 1, "news": 1, "tiny": 1},
        max_epochs={"tiny": 4},
        temperature=2.0,
        length_buckets=[LengthBucket(max_tokens=80, weight=0.5)],
        phases=[PhaseSpec(name="p1", share=0.25), PhaseSpec(name="p2", share=0.75, weights={"py": 1, "tiny": 1})],
        token_budget=12_000,
        seed=11,
    )
    (out1, stats1), (out2, stats2) = sample(spec), sample(spec)
    pq.write_table(out1, tmp_path / "a.parquet")
    pq.write_table(out2, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert json.dumps(stats1, sort_keys=True) == json.dumps(stats2, sort_keys=True)
    out3, stats3 = sample(spec.model_copy(update={"seed": 12}))
    assert out3.column("doc_id").to_pylist() != out1.column("doc_id").to_pylist()
    for sid in stats1["sources"]:
        assert stats3["sources"][sid]["target_tokens"] == stats1["sources"][sid]["target_tokens"]
    assert stats3["doc_ids_digest"] != stats1["doc_ids_digest"]


def test_group_stats_add_up_and_are_json_ready() -> None:
    spec = MixtureSpec(weights={"py": 1, "news": 1, "tiny": 1, "other": 0}, max_epochs={"tiny": 5}, token_budget=6000)
    out, stats = sample(spec)
    json.dumps(stats)  # the manifest embeds the stats as JSON
    totals = stats["totals"]
    for group in ("sources", "domains", "languages"):
        g = stats[group]
        for key in ("docs", "tokens", "unique_docs", "available_docs", "excluded_by_policy", "excluded_by_weight"):
            assert sum(v[key] for v in g.values()) == totals[key], (group, key)
        assert sum(v["effective_weight"] for v in g.values()) == pytest.approx(1.0)
    assert totals["docs"] == out.num_rows and totals["excluded_by_policy"] == ALLOWED.count(False)
    assert stats["languages"]["fr"]["repeat_factor"] > 1.0 and stats["languages"]["de"]["repeat_factor"] == 1.0
    assert set(stats["domains"]) == {"code", "web", "misc"}
    assert set(stats["phases"]) == {"all"}


def test_columns_domain_and_language_are_optional() -> None:
    docs = pa.table({"doc_id": ["a", "b"], "source_id": ["s", "s"]})
    out, stats = sample_mixture(docs, [10, 20], MixtureSpec(weights={"s": 1}, token_budget=25), allowed=[True, True])
    assert out.num_rows == 2 and set(stats["domains"]) == {"unknown"} and set(stats["languages"]) == {"unknown"}


def test_input_that_would_clash_with_added_columns_is_rejected() -> None:
    docs = pa.table({"doc_id": ["a"], "source_id": ["s"], "phase": ["x"]})
    with pytest.raises(ValueError, match=r"already has column\(s\) \['phase'\]"):
        sample_mixture(docs, [1], MixtureSpec(weights={"s": 1}, token_budget=5), allowed=[True])
