"""Held-out documents: per source, only what the policy admits, stable by seed and id, never in the mixture."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine.heldout import heldout_mask, heldout_table


def _docs(n_per_source: dict[str, int]) -> pa.Table:
    rows = [
        {"doc_id": f"{sid}-{i}", "source_id": sid, "domain": f"d-{sid}", "text": f"text {sid} {i}"}
        for sid, n in n_per_source.items()
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_holds_out_n_allowed_documents_per_source():
    docs = _docs({"a": 10, "b": 3, "c": 5})
    allowed = [r["source_id"] != "c" for r in docs.to_pylist()]
    mask = heldout_mask(docs, 2, seed=0, allowed=allowed)
    held = heldout_table(docs, mask, 0)
    assert sorted(held.column("source_id").to_pylist()) == ["a", "a", "b", "b"]  # c is not admitted
    assert held.column_names == ["doc_id", "source_id", "domain", "text"]
    assert heldout_mask(docs, 0, seed=0, allowed=allowed).sum() == 0


def test_choice_is_stable_when_other_documents_come_and_go_and_moves_with_the_seed():
    docs = _docs({"a": 50})
    held = set(heldout_table(docs, heldout_mask(docs, 3, seed=7, allowed=[True] * 50), 7)["doc_id"].to_pylist())
    # drop ten documents that were not held out: the same three stay held out
    keep = [i for i, d in enumerate(docs["doc_id"].to_pylist()) if d in held or i % 5]
    sub = docs.take(pa.array(keep))
    again = set(heldout_table(sub, heldout_mask(sub, 3, seed=7, allowed=[True] * len(keep)), 7)["doc_id"].to_pylist())
    assert again == held
    other = set(heldout_table(docs, heldout_mask(docs, 3, seed=8, allowed=[True] * 50), 8)["doc_id"].to_pylist())
    assert other != held


def test_every_copy_of_a_held_out_doc_id_is_held_out():
    docs = pa.concat_tables([_docs({"a": 4}), _docs({"a": 4})])
    mask = heldout_mask(docs, 1, seed=0, allowed=[True] * 8)
    assert mask.sum() == 2 and len(set(docs.filter(pa.array(mask))["doc_id"].to_pylist())) == 1


def test_rows_go_round_robin_over_sources_so_a_limit_covers_every_source():
    docs = _docs({"a": 6, "b": 6, "c": 6})
    held = heldout_table(docs, heldout_mask(docs, 3, seed=0, allowed=[True] * 18), 0)
    assert held.column("source_id").to_pylist() == ["a", "b", "c"] * 3
