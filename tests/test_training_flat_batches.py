"""Flat (padding-free) micro-batches: every document's logits and loss are those it gets alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import alone_logits, make_examples, moved_lora_model
from training_assets.engine.examples import IGNORE_INDEX
from training_assets.engine.packing import (
    DOCUMENT_ATTENTION,
    document_attention_for,
    flat_collate,
    pack_examples,
    pad_collate,
)
from training_assets.engine.sft import causal_lm_loss

PAD = 0


def test_examples_go_back_to_back_with_restarting_positions() -> None:
    examples = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE_INDEX, 9]}]
    batch = flat_collate(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["document_lengths"] == (3, 2) and batch["n_tokens"] == 5
    assert "document_lengths" not in flat_collate(examples, document_lengths=False)


def test_packed_rows_flatten_to_their_documents_without_padding() -> None:
    examples = make_examples([7, 30, 3, 12, 25, 9, 16, 1, 20], seed=4)
    rows, stats = pack_examples(examples, 32, PAD)
    assert stats["pad_tokens"] >= 0
    from_rows = flat_collate(rows)
    in_row_order = [examples[i] for r in rows for i in r["examples"]]
    from_examples = flat_collate(in_row_order)
    for key in ("input_ids", "labels", "position_ids"):
        assert torch.equal(from_rows[key], from_examples[key])
    assert from_rows["document_lengths"] == tuple(len(e["input_ids"]) for e in in_row_order)
    assert from_rows["n_tokens"] == stats["tokens"]


def test_bad_example_is_refused() -> None:
    with pytest.raises(ValueError, match="2 input_ids and 1 labels"):
        flat_collate([{"input_ids": [1, 2], "labels": [1]}])


def test_each_document_gets_the_logits_it_gets_alone(attention_model) -> None:
    model = attention_model
    examples = make_examples([11, 5, 17, 1, 8, 14], seed=1)
    batch = flat_collate(examples)
    with document_attention_for(model) as by_document, torch.no_grad():
        assert by_document and model.config._attn_implementation == DOCUMENT_ATTENTION
        logits = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            document_lengths=batch["document_lengths"],
            use_cache=False,
        ).logits[0]
    start = 0
    for e in examples:
        n = len(e["input_ids"])
        torch.testing.assert_close(logits[start : start + n], alone_logits(model, e["input_ids"]), atol=1e-5, rtol=1e-5)
        start += n
    # Sanity: the same row with plain causal attention (documents seeing each other) does differ.
    with torch.no_grad():
        naive = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert not torch.allclose(naive[5:16], logits[5:16], atol=1e-3)


def test_without_document_attention_transformers_separates_documents_itself(attention_model) -> None:
    model = attention_model
    """The route left to other attention implementations: no mask, no cache, restarting positions."""
    examples = make_examples([9, 4, 13], seed=5)
    batch = flat_collate(examples, document_lengths=False)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    torch.testing.assert_close(logits[13:], alone_logits(model, examples[2]["input_ids"]), atol=1e-5, rtol=1e-5)


def test_flat_loss_and_gradients_equal_padded_ones(tiny_model_dir: Path) -> None:
    model = moved_lora_model(tiny_model_dir)
    examples = make_examples([9, 4, 13, 6], seed=2)

    def loss_and_grads(batch: dict) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
        model.zero_grad()
        loss, n = causal_lm_loss(model, batch)
        loss.backward()
        return loss.detach(), n, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    padded = loss_and_grads(pad_collate(examples, PAD))
    with document_attention_for(model) as by_document:
        assert by_document
        flat = loss_and_grads(flat_collate(examples))
    assert model.get_base_model().config._attn_implementation == "sdpa", "the original implementation is restored"
    assert flat[1] == padded[1] == sum(1 for e in examples for lab in e["labels"][1:] if lab != IGNORE_INDEX)
    torch.testing.assert_close(flat[0], padded[0], atol=1e-4, rtol=1e-5)
    for a, b in zip(flat[2], padded[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_document_attention_refuses_a_row_without_document_lengths(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    batch = flat_collate(make_examples([5, 6]))
    with document_attention_for(model), torch.no_grad(), pytest.raises(ValueError, match="document_lengths: none"):
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    with document_attention_for(model), torch.no_grad(), pytest.raises(ValueError, match="11 tokens in 3 documents"):
        model(input_ids=batch["input_ids"][:, :10], document_lengths=(5, 5, 1), use_cache=False)


def test_other_attention_implementations_are_left_alone(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model.config._attn_implementation_internal = "flash_attention_2"  # as loaded on a GPU with flash-attn
    with document_attention_for(model) as by_document:
        assert not by_document and model.config._attn_implementation == "flash_attention_2"
