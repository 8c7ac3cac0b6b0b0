"""What the gate compares with (the live release, else the base) and when stored rows may stand in for a fresh
evaluation: only when they were computed on the same items and settings."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from eval_assets.engine import behaviour_sets as bs
from eval_assets.engine.live import (
    LIVE,
    gate_baseline,
    reusable,
    run_fingerprint,
    snapshot_record,
    stored_rows,
    with_provenance,
)
from eval_assets.engine.suites import RUN_ITEM_SCHEMA, EvalSettings


def test_the_gate_baseline_is_the_live_release_when_there_is_one():
    assert gate_baseline(None).label == "base" and "no model is released" in gate_baseline(None).why
    live = gate_baseline({"current": {"model": "sft_adapter", "version": "v7"}})
    assert (live.label, live.model) == (LIVE, "sft_adapter@v7") and "is live" in live.why


def test_the_fingerprint_follows_items_and_the_settings_that_decide_a_row():
    items = {"sentinel": bs.sentinel_set(), "refusal": bs.refusal_set()}
    settings = EvalSettings(limit=3)
    fp = run_fingerprint(items, settings)
    assert fp == run_fingerprint(dict(reversed(items.items())), settings)  # suite order is irrelevant
    # intervals and time limits change no row; the budget, the item limit and the items do
    assert fp == run_fingerprint(items, dataclasses.replace(settings, n_resamples=5, seed=9, generation_timeout_s=9))
    assert fp != run_fingerprint(items, dataclasses.replace(settings, max_new_tokens=7))
    assert fp != run_fingerprint(items, dataclasses.replace(settings, limit=4))
    sentinel = bs.sentinel_set()
    at = sentinel.schema.get_field_index("prompt")
    changed = sentinel.set_column(at, sentinel.schema.field(at), pa.array(["x"] * sentinel.num_rows))
    assert fp != run_fingerprint({**items, "sentinel": changed}, settings)


def test_stored_rows_are_reused_only_for_the_same_fingerprint():
    rows = pa.Table.from_pylist(
        [{"suite": "sentinel", "eval_set": "s", "model": "base", "item_id": "i", "prompt": "p"}], schema=RUN_ITEM_SCHEMA
    )
    tagged = with_provenance(rows, {"vocab_sha256": "abc"}, "fp1")
    got = stored_rows(tagged, "fp1")
    assert got is not None and got[0].equals(rows) and got[1] == {"vocab_sha256": "abc"}
    assert stored_rows(tagged, "fp2") is None
    assert stored_rows(rows, "fp1") is None  # no provenance: evaluate again
    assert stored_rows(with_provenance(rows.slice(0, 0), {}, "fp1"), "fp1") is None  # the model produced nothing

    assert reusable(None, "fp1").startswith("the release stored no evaluation")
    assert reusable({"fingerprint": "fp0"}, "fp1").startswith("the eval items or settings changed")
    assert reusable({"fingerprint": "fp1"}, "fp1") is None
    record = {"models": {"sft_adapter": {"vocab_sha256": "v", "base_dir": "/x", "generation_budget": {}}}}
    assert snapshot_record(record, "sft_adapter") == {"vocab_sha256": "v", "generation_budget": {}}
