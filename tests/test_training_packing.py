"""Packing: documents in a packed row behave exactly as if run alone; no cross-document supervision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import alone_logits, make_examples
from training_assets.engine.examples import IGNORE_INDEX
from training_assets.engine.packing import PAD_DOC, block_causal_mask, pack_examples, packed_collate, pad_collate

PAD = 0


def test_rows_are_full_width_and_hold_every_example_once() -> None:
    examples = make_examples([7, 30, 3, 12, 25, 9, 16, 1, 20])
    rows, stats = pack_examples(examples, 32, PAD)
    assert all(len(r[k]) == 32 for r in rows for k in ("input_ids", "labels", "position_ids", "doc_ids"))
    assert sorted(i for r in rows for i in r["examples"]) == list(range(len(examples)))
    total = sum(len(e["input_ids"]) for e in examples)
    assert stats["tokens"] == total == sum(r["n_tokens"] for r in rows)
    assert stats["pad_tokens"] == 32 * len(rows) - total
    assert stats["efficiency"] == pytest.approx(total / (32 * len(rows)))
    assert len(rows) == -(-total // 32)  # these lengths fit the lower bound exactly
    for r in rows:
        for d, i in enumerate(r["examples"]):
            span = [p for p, doc in enumerate(r["doc_ids"]) if doc == d]
            assert span == list(range(span[0], span[0] + len(examples[i]["input_ids"])))  # contiguous
            assert [r["input_ids"][p] for p in span] == examples[i]["input_ids"]
            assert [r["position_ids"][p] for p in span] == list(range(len(span)))
        pad = [p for p, doc in enumerate(r["doc_ids"]) if doc == PAD_DOC]
        assert all(r["input_ids"][p] == PAD and r["labels"][p] == IGNORE_INDEX for p in pad)
    assert pack_examples(examples, 32, PAD) == (rows, stats), "packing must be deterministic"


def test_no_document_is_trained_to_predict_the_next_ones_first_token() -> None:
    examples = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    (row,), _ = pack_examples(examples, 8, PAD)
    assert row["input_ids"] == [5, 6, 7, 8, 9, PAD, PAD, PAD]
    assert row["labels"] == [IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9] + [IGNORE_INDEX] * 3
    assert row["position_ids"] == [0, 1, 2, 0, 1, 0, 1, 2]
    assert row["doc_ids"] == [0, 0, 0, 1, 1, PAD_DOC, PAD_DOC, PAD_DOC]
    # In general: every document start (and every pad) is unlabelled.
    rows, _ = pack_examples(make_examples([5, 9, 4, 11, 2], seed=3), 16, PAD)
    for r in rows:
        for p, pos in enumerate(r["position_ids"]):
            if pos == 0 or r["doc_ids"][p] == PAD_DOC:
                assert r["labels"][p] == IGNORE_INDEX


def test_phases_are_never_mixed_within_a_row() -> None:
    examples = make_examples([4, 4, 4, 4, 4, 4])
    rows, _ = pack_examples(examples, 16, PAD, phase_of=[1, 0, 1, 0, 1, 0])
    assert [r["phase"] for r in rows] == [0, 1]
    assert [sorted(r["examples"]) for r in rows] == [[1, 3, 5], [0, 2, 4]]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="example 1 has 9 tokens"):
        pack_examples(make_examples([3, 9]), 8, PAD)
    with pytest.raises(ValueError, match="phase_of has 1 entries"):
        pack_examples(make_examples([3, 4]), 8, PAD, phase_of=[0])


def test_mask_is_block_diagonal_causal() -> None:
    doc = torch.tensor([[0, 0, 1, 1, 1, PAD_DOC]])
    m = block_causal_mask(doc)
    assert m.shape == (1, 1, 6, 6) and m.dtype == torch.bool
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m[0, 0], expected)
    additive = block_causal_mask(doc, torch.float32)
    assert torch.equal(additive[0, 0] == 0, expected)
    assert (additive[0, 0][~expected] == torch.finfo(torch.float32).min).all()


def test_packed_logits_equal_each_document_run_alone(attention_model) -> None:
    model = attention_model
    examples = make_examples([11, 5, 17, 3, 8, 14, 6, 9], seed=1)
    rows, stats = pack_examples(examples, 24, PAD)
    assert stats["rows"] == 4 and stats["efficiency"] == pytest.approx(73 / 96)  # 73 tokens need >= 4 rows of 24
    impl = model.config._attn_implementation
    batch = packed_collate(rows, attn_implementation=impl)
    assert batch["attention_mask"].shape == (len(rows), 1, 24, 24)
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).logits
    checked = 0
    for r, row in enumerate(rows):
        for d, i in enumerate(row["examples"]):
            span = (batch["doc_ids"][r] == d).nonzero().squeeze(-1)
            alone = alone_logits(model, examples[i]["input_ids"])
            torch.testing.assert_close(logits[r, span], alone, atol=1e-5, rtol=1e-5)
            checked += 1
    assert checked == len(examples)

    # Sanity: the same rows with a plain causal mask (documents seeing each other) do differ.
    with torch.no_grad():
        by_positions = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        naive = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"])).logits
    multi = next(r for r, row in enumerate(rows) if len(row["examples"]) > 1)
    second = batch["doc_ids"][multi] == 1
    assert not torch.allclose(naive[multi, second], logits[multi, second], atol=1e-3)
    if impl == "sdpa":
        # Without a mask (and without a KV cache) transformers finds the documents from the restarting
        # position_ids itself, the route packed_collate leaves to other attention implementations.
        real = batch["doc_ids"] != PAD_DOC
        torch.testing.assert_close(by_positions.logits[real], logits[real], atol=1e-5, rtol=1e-5)


def test_packed_loss_equals_the_loss_of_the_documents_alone(attention_model) -> None:
    model = attention_model
    examples = make_examples([9, 4, 13, 6], seed=2)
    rows, _ = pack_examples(examples, 16, PAD)
    batch = packed_collate(rows, attn_implementation=model.config._attn_implementation)
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).logits
    packed = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1), reduction="sum"
    )
    padded = pad_collate(examples, PAD)
    with torch.no_grad():
        plogits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    reference = F.cross_entropy(
        plogits[:, :-1].reshape(-1, plogits.size(-1)), padded["labels"][:, 1:].reshape(-1), reduction="sum"
    )
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(packed, reference, atol=1e-4, rtol=1e-5)


def test_pad_collate_pads_right_with_ignored_labels() -> None:
    b = pad_collate([{"input_ids": [4, 5, 6], "labels": [4, 5, 6]}, {"input_ids": [7], "labels": [IGNORE_INDEX]}], 1)
    assert b["input_ids"].tolist() == [[4, 5, 6], [7, 1, 1]]
    assert b["labels"].tolist() == [[4, 5, 6], [IGNORE_INDEX] * 3]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
