"""Manifest diffs and drift: explaining how one mixture differs from the last, from manifests alone."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from mixassets.engine.mixture import sample_mixture
from mixassets.engine.mixture_diff import diff_manifests, drift, render_diff_markdown
from mixassets.engine.mixture_manifest import build_manifest
from mixtrain.config.data import MixtureSpec
from mixtrain.identity import spec_hash


def corpus() -> tuple[pa.Table, list[int]]:
    rng = random.Random(1)
    rows = [
        {"doc_id": f"{s}-{i:03d}", "source_id": s, "domain": d, "language": "en"}
        for s, d, n in (("py", "code", 120), ("web", "web", 120), ("docs", "docs", 60))
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows), [rng.randint(40, 120) for _ in rows]


DOCS, TOKENS = corpus()


def build(spec: MixtureSpec, table: pa.Table, stats: dict, **fields) -> dict:
    """``build_manifest`` with the tokenizer and shard every manifest here shares."""
    return build_manifest(
        spec,
        table,
        stats,
        tokenizer="tok",
        shards=[{"path": "mixture/part-00000.parquet", "sha256": stats["doc_ids_digest"], "rows": 0}],
        **fields,
    )


def manifest(spec: MixtureSpec, *, input_partitions: dict, rules_version: dict) -> tuple[dict, list[str]]:
    """A manifest built the way the mixture asset builds it."""
    table, stats = sample_mixture(DOCS, TOKENS, spec, allowed=[True] * DOCS.num_rows)
    inputs = {"screened_corpus": "aaaa", "base_model": "bbbb", "mixture_spec": spec_hash(spec)}
    m = build(spec, table, stats, inputs=inputs, input_partitions=input_partitions, rules_version=rules_version)
    return m, table.column("doc_id").to_pylist()


OLD_SPEC = MixtureSpec(weights={"py": 1, "web": 1}, token_budget=6000, seed=3)
NEW_SPEC = MixtureSpec(weights={"py": 1, "web": 1, "docs": 2}, max_tokens={"web": 900}, token_budget=8000, seed=3)


@pytest.fixture(scope="module")
def pair():
    old, old_ids = manifest(OLD_SPEC, input_partitions={"py": "p1", "web": "w1"}, rules_version={"quality": 1})
    new, new_ids = manifest(
        NEW_SPEC, input_partitions={"py": "p1", "web": "w2", "docs": "d1"}, rules_version={"quality": 2}
    )
    return old, old_ids, new, new_ids


def test_diff_names_spec_fields_and_upstream_changes(pair) -> None:
    old, _, new, _ = pair
    d = diff_manifests(old, new)
    json.dumps(d)
    changed = {c["field"]: (c["old"], c["new"]) for c in d["spec_changes"]}
    assert changed == {"weights.docs": (None, 2.0), "max_tokens.web": (None, 900), "token_budget": (6000, 8000)}
    assert [c["input"] for c in d["input_changes"]] == ["mixture_spec"]
    assert d["partition_changes"] == [
        {"source": "docs", "old": None, "new": "d1"},
        {"source": "web", "old": "w1", "new": "w2"},
    ]
    assert d["rules_version_changes"] == [{"rule": "quality", "old": 1, "new": 2}]
    assert not d["identical"] and d["shards_changed"]


def test_diff_share_and_count_deltas_match_the_stats(pair) -> None:
    old, _, new, _ = pair
    d = diff_manifests(old, new)
    for sid in ("py", "web", "docs"):
        a = old["composition"]["sources"][sid]
        b = new["composition"]["sources"][sid]
        row = d["sources"][sid]
        assert row["share_change"] == pytest.approx(b["effective_weight"] - a["effective_weight"])
        assert (row["docs_delta"], row["tokens_delta"]) == (b["docs"] - a["docs"], b["tokens"] - a["tokens"])
    assert d["sources"]["docs"]["old_share"] == 0 and d["sources"]["docs"]["new_share"] > 0.4
    assert d["domains"]["docs"]["status"] == "kept"  # present (with 0 tokens) in both compositions
    assert (
        d["totals"]["tokens_delta"] == new["composition"]["totals"]["tokens"] - old["composition"]["totals"]["tokens"]
    )


def test_documents_added_and_removed_from_id_lists_or_digests(pair) -> None:
    old, old_ids, new, new_ids = pair
    d = diff_manifests(old, new, doc_ids_a=old_ids, doc_ids_b=new_ids)
    docs = d["documents"]
    assert docs["added"] == len(set(new_ids) - set(old_ids)) > 0
    assert docs["removed"] == len(set(old_ids) - set(new_ids)) > 0
    assert docs["kept"] == len(set(old_ids) & set(new_ids))
    assert docs["added_examples"] == sorted(set(new_ids) - set(old_ids))[:10]
    assert diff_manifests(old, new)["documents"] == {"same_set": False}
    assert diff_manifests(old, dict(old))["documents"] == {"same_set": True}


def test_identical_manifests_and_old_manifests_without_new_keys(pair) -> None:
    old, *_ = pair
    same = diff_manifests(old, json.loads(json.dumps(old)))
    assert same["identical"] and not same["spec_changes"] and not same["input_changes"]
    assert all(r["share_change"] == 0 for r in same["sources"].values())
    legacy = {"manifest_id": "x", "spec": {"weights": {"py": 1}}, "composition": {"sources": {"py": {"docs": 3}}}}
    d = diff_manifests(legacy, old)
    assert d["documents"] is None and d["partition_changes"][0]["old"] is None
    assert d["sources"]["py"]["old_docs"] == 3
    render_diff_markdown(d)


def test_manifest_id_and_chaining(pair) -> None:
    old, _, new, _ = pair
    assert old["manifest_id"] != new["manifest_id"]
    table, stats = sample_mixture(DOCS, TOKENS, NEW_SPEC, allowed=[True] * DOCS.num_rows)
    upstream = {k: new[k] for k in ("inputs", "input_partitions", "rules_version")}
    again = build(NEW_SPEC, table, stats, **upstream, previous={**new, "previous_manifest_id": old["manifest_id"]})
    # The same mixture written again keeps its id and its link to the last different one.
    assert again["manifest_id"] == new["manifest_id"] and again["previous_manifest_id"] == old["manifest_id"]
    # A spec edit or an upstream rerun that leaves the rows byte-identical is the same data: same id, so the
    # models trained on it stay fresh, and the chain still points at the last different mixture.
    respelled = build(
        NEW_SPEC.model_copy(update={"token_budget": 9000}),
        table,
        stats,
        **{**upstream, "inputs": {**new["inputs"], "screened_corpus": "cccc", "mixture_spec": "dddd"}},
        previous=again,
    )
    assert respelled["manifest_id"] == new["manifest_id"] and respelled["previous_manifest_id"] == old["manifest_id"]
    assert respelled["spec"]["token_budget"] == 9000  # recorded for `mixture diff`, not part of the id
    # Different bytes (one shard checksum) are a new mixture, chained to the one before.
    chained = dict(again, previous_manifest_id=None)
    other_bytes = build_manifest(
        NEW_SPEC,
        table,
        stats,
        tokenizer="tok",
        shards=[{"path": "mixture/part-00000.parquet", "sha256": "f" * 64, "rows": 0}],
        **upstream,
        previous=chained,
    )
    assert other_bytes["manifest_id"] != new["manifest_id"]
    assert other_bytes["previous_manifest_id"] == new["manifest_id"]


def test_markdown_report(pair) -> None:
    old, old_ids, new, new_ids = pair
    md = render_diff_markdown(diff_manifests(old, new, doc_ids_a=old_ids, doc_ids_b=new_ids))
    assert md.startswith(f"# Mixture diff: {old['manifest_id']} → {new['manifest_id']}")
    assert "| weights.docs | — | 2.0 |" in md
    assert "| web | w1 | w2 |" in md and "| quality | 1 | 2 |" in md
    assert "## Sources" in md and "## Domains" in md and "## Documents added (first)" in md
    docs_row = next(line for line in md.splitlines() if line.startswith("| docs | 0.00% |"))
    assert "| added |" not in docs_row and "pp" in docs_row


def test_drift_lists_sources_beyond_tolerance(pair) -> None:
    old, _, new, _ = pair
    shares = {
        sid: (
            old["composition"]["sources"][sid]["effective_weight"],
            new["composition"]["sources"][sid]["effective_weight"],
        )
        for sid in ("py", "web", "docs")
    }
    moved = drift(old, new, 0.05)
    assert [m[0] for m in moved] == sorted(
        (s for s, (a, b) in shares.items() if abs(b - a) > 0.05), key=lambda s: -abs(shares[s][1] - shares[s][0])
    )
    assert moved[0] == ("docs", 0.0, shares["docs"][1])
    assert drift(old, new, 1.0) == [] and drift(old, old, 0.0) == []
    with pytest.raises(ValueError, match="tolerance"):
        drift(old, new, -0.1)
