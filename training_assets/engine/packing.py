"""Sequence packing: several tokenized examples per row, without letting them see each other.

Padding every example of a batch to the longest one wastes most of the compute when lengths vary (chat
turns next to long documents). Packing concatenates examples into rows of exactly ``max_seq_len`` tokens
instead. Done naively that changes what is learned: tokens would attend to the previous document and the
last token of one document would be trained to predict the first token of the next. So a packed row
carries, per token, its document number and a position that restarts at 0 in every document, and
:func:`packed_collate` turns those into a block-diagonal causal attention mask; the first token of each
document gets label ``IGNORE_INDEX``. The result is that every document's logits are those it gets alone
(the test suite checks this to fp32 precision).

Rows are filled best-fit-decreasing (longest example first, into the row whose free space fits it most
tightly, ties to the older row): deterministic, O(n log n), and close to the fewest rows possible. What it
saves over padding depends on the lengths: many examples far shorter than a row pack almost without waste,
while examples nearly a row long leave gaps no shorter example can fill. Rows never mix curriculum phases
when ``phase_of`` is given.

Two ways to turn a micro-batch into tensors. :func:`packed_collate` keeps the rows' fixed ``max_seq_len``
shape, padding included, with the ``T x T`` mask. :func:`flat_collate`, what SFT trains on, puts every
document of the micro-batch (packed rows' or plain examples') back to back in a single row with no padding,
and :func:`document_attention` attends within each document by itself: no position is spent on padding
and no attention score on a pair of tokens from different documents, which a block-diagonal mask would
compute and then throw away (with documents of a few hundred tokens in a row of two thousand, most of
them). Both give every document the logits it gets alone.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from training_assets.engine.examples import IGNORE_INDEX

PAD_DOC = -1  # document number of padding positions


def pack_examples(
    examples: Sequence[dict[str, Any]],
    max_seq_len: int,
    pad_id: int,
    *,
    phase_of: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pack examples into rows of exactly ``max_seq_len`` tokens; returns the rows and packing stats.

    Each row: ``input_ids``, ``labels``, ``position_ids`` and ``doc_ids`` (lists of ``max_seq_len``; padding
    has ``pad_id``, ``IGNORE_INDEX``, positions counting from 0 and document ``PAD_DOC``), ``examples`` (the
    indices of the packed examples, in row order), ``n_tokens`` (non-padding tokens) and ``phase`` (0 without
    ``phase_of``). Rows come in phase order, then in the order they were opened. Stats: ``rows``,
    ``documents``, ``tokens``, ``pad_tokens`` and ``efficiency`` (share of row positions holding real tokens).
    """
    if max_seq_len <= 1:
        raise ValueError(f"max_seq_len must be > 1, got {max_seq_len}")
    if phase_of is not None and len(phase_of) != len(examples):
        raise ValueError(f"phase_of has {len(phase_of)} entries for {len(examples)} examples")
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        if n == 0 or n > max_seq_len:
            raise ValueError(f"example {i} has {n} tokens; packing needs 1..max_seq_len={max_seq_len}")
        if len(e["labels"]) != n:
            raise ValueError(f"example {i}: {len(e['labels'])} labels for {n} input_ids")
    bins, phases, stats = pack_plan([len(e["input_ids"]) for e in examples], max_seq_len, phase_of=phase_of)
    rows = [_row(examples, members, max_seq_len, pad_id, phase) for members, phase in zip(bins, phases, strict=True)]
    return rows, stats


def pack_plan(
    lengths: Sequence[int], max_seq_len: int, *, phase_of: Sequence[int] | None = None
) -> tuple[list[list[int]], list[int], dict[str, Any]]:
    """Which examples share a row, from their lengths alone: the rows (example indices in row order), each
    row's phase, and the packing stats of :func:`pack_examples`.

    Needing only lengths is what lets a data-parallel rank plan every row of the run from a text-free index
    and read the tokens of its own rows only.
    """
    if max_seq_len <= 1:
        raise ValueError(f"max_seq_len must be > 1, got {max_seq_len}")
    if phase_of is not None and len(phase_of) != len(lengths):
        raise ValueError(f"phase_of has {len(phase_of)} entries for {len(lengths)} examples")
    for i, n in enumerate(lengths):
        if n <= 0 or n > max_seq_len:
            raise ValueError(f"example {i} has {n} tokens; packing needs 1..max_seq_len={max_seq_len}")
    phases = [0] * len(lengths) if phase_of is None else [int(p) for p in phase_of]
    rows: list[list[int]] = []
    row_phases: list[int] = []
    for phase in sorted(set(phases)):
        members = [i for i in range(len(lengths)) if phases[i] == phase]
        # Longest first; equal lengths keep example order, so the result does not depend on sort stability.
        members.sort(key=lambda i: (-lengths[i], i))
        bins: list[list[int]] = []
        free: list[tuple[int, int]] = []  # (free tokens, bin number), sorted: the tightest fit is found by bisect
        for i in members:
            n = lengths[i]
            k = bisect.bisect_left(free, (n, -1))
            if k < len(free):
                room, b = free.pop(k)
            else:
                room, b = max_seq_len, len(bins)
                bins.append([])
            bins[b].append(i)
            if room - n > 0:
                bisect.insort(free, (room - n, b))
        rows.extend(bins)
        row_phases.extend([phase] * len(bins))
    tokens = sum(lengths)
    positions = len(rows) * max_seq_len
    stats = {
        "rows": len(rows),
        "documents": len(lengths),
        "tokens": tokens,
        "pad_tokens": positions - tokens,
        "efficiency": tokens / positions if positions else 0.0,
    }
    return rows, row_phases, stats


def _row(
    examples: Sequence[dict[str, Any]], members: list[int], max_seq_len: int, pad_id: int, phase: int
) -> dict[str, Any]:
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    docs: list[int] = []
    for d, i in enumerate(members):
        e = examples[i]
        n = len(e["input_ids"])
        ids.extend(e["input_ids"])
        # The first token of a document would be "predicted" from the previous document's last token.
        labels.append(IGNORE_INDEX)
        labels.extend(e["labels"][1:])
        positions.extend(range(n))
        docs.extend([d] * n)
    used = len(ids)
    pad = max_seq_len - used
    ids.extend([pad_id] * pad)
    labels.extend([IGNORE_INDEX] * pad)
    positions.extend(range(pad))
    docs.extend([PAD_DOC] * pad)
    return {
        "input_ids": ids,
        "labels": labels,
        "position_ids": positions,
        "doc_ids": docs,
        "examples": list(members),
        "n_tokens": used,
        "phase": phase,
    }


def block_causal_mask(doc_ids: Any, dtype: Any = None) -> Any:
    """Attention mask ``(B, 1, T, T)`` letting a token see earlier tokens of its own document only.

    Boolean (True = may attend) when ``dtype`` is None, as SDPA takes it; otherwise additive in ``dtype``
    (0 where allowed, the dtype's minimum elsewhere), as eager attention adds it to the scores. Padding
    forms its own causal block, so no query row is fully masked (which would give NaN, not zeros).
    """
    import torch

    doc_ids = torch.as_tensor(doc_ids)
    t = doc_ids.shape[-1]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones((t, t), dtype=torch.bool, device=doc_ids.device).tril()
    allowed = (same & causal)[:, None]
    if dtype is None:
        return allowed
    mask = torch.zeros(allowed.shape, dtype=dtype, device=doc_ids.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def packed_collate(
    rows: Sequence[dict[str, Any]],
    device: Any = None,
    *,
    attn_implementation: str = "sdpa",
    mask_dtype: Any = None,
) -> dict[str, Any]:
    """Tensors for a batch of packed rows: ``input_ids``, ``labels``, ``position_ids``, ``doc_ids`` and,
    for ``sdpa`` / ``eager``, the 4D ``attention_mask``.

    Pass ``input_ids``, ``position_ids`` and ``attention_mask`` to the model (the positions matter: rotary
    embeddings must restart per document). ``sdpa`` gets a boolean mask; ``eager`` an additive one in
    ``mask_dtype`` (default float32, which also works under bf16 autocast). Other implementations (e.g.
    ``flash_attention_2``) get no mask: transformers then finds the documents from the restarting
    ``position_ids`` itself, but only when the forward call has no KV cache, so call the model with
    ``use_cache=False`` (transformers 5 creates a cache by default even in train mode, and with one it
    silently lets documents attend to each other). Real tokens per row are ``(doc_ids != PAD_DOC).sum(-1)``.
    """
    import torch

    out = {
        key: torch.tensor([r[key] for r in rows], dtype=torch.long)
        for key in ("input_ids", "labels", "position_ids", "doc_ids")
    }
    if attn_implementation == "sdpa":
        out["attention_mask"] = block_causal_mask(out["doc_ids"])
    elif attn_implementation == "eager":
        out["attention_mask"] = block_causal_mask(out["doc_ids"], mask_dtype or torch.float32)
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def flat_collate(items: Sequence[dict[str, Any]], *, document_lengths: bool = True) -> dict[str, Any]:
    """Every document of ``items`` back to back in one row of shape ``(1, T)``: no padding at all.

    ``items`` are examples (``input_ids``, ``labels``) or packed rows from :func:`pack_examples` (their padding
    is dropped, their documents kept). The row has ``input_ids``, ``labels`` (each document's first token
    unlabelled, as in a packed row), ``position_ids`` restarting at 0 per document, and ``n_tokens``; with
    ``document_lengths`` also the tuple of document lengths that :func:`document_attention` splits the row
    by. Without it (for attention implementations such as flash attention) transformers finds the documents
    from the restarting ``position_ids``, which it does only when there is no attention mask and no KV cache.

    The row computes what padded batches compute, with no work spent on padding: every token is a real one,
    and attention runs document by document.
    """
    import torch

    ids: list[int] = []
    labels: list[int] = []
    lengths: list[int] = []
    for item in items:
        if "position_ids" in item:  # a packed row: documents start where the position restarts at 0
            used = item["n_tokens"]
            ids.extend(item["input_ids"][:used])
            labels.extend(item["labels"][:used])
            starts = [p for p, pos in enumerate(item["position_ids"][:used]) if pos == 0]
            lengths.extend(b - a for a, b in zip(starts, [*starts[1:], used], strict=True))
        else:
            n = len(item["input_ids"])
            if n == 0 or len(item["labels"]) != n:
                raise ValueError(f"example with {n} input_ids and {len(item['labels'])} labels cannot be collated")
            ids.extend(item["input_ids"])
            labels.append(IGNORE_INDEX)  # would be predicted from the previous document's last token
            labels.extend(item["labels"][1:])
            lengths.append(n)
    positions = [p for n in lengths for p in range(n)]
    out: dict[str, Any] = {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "n_tokens": len(ids),
    }
    if document_lengths:
        out["document_lengths"] = tuple(lengths)
    return out


DOCUMENT_ATTENTION = "mixtrain_documents"


def document_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """Causal attention within each document of a :func:`flat_collate` row, one SDPA call per document.

    transformers' own route for such a row under SDPA builds a ``T x T`` block-diagonal mask and attends over
    all of it, so attention costs grow with the square of the whole row and SDPA cannot use its causal
    kernels; per document the cost is the square of each document's length, and every call is plainly causal.
    Registered under :data:`DOCUMENT_ATTENTION` by :func:`document_attention_for`; the model's forward must be
    given ``document_lengths``, and without them this refuses to run rather than let documents see each other.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lengths = kwargs.pop("document_lengths", None)
    if lengths is None or query.shape[0] != 1 or sum(lengths) != query.shape[2]:
        got = "none" if lengths is None else f"{sum(lengths)} tokens in {len(lengths)} documents"
        raise ValueError(
            f"{DOCUMENT_ATTENTION} attention needs one flat row and its document_lengths "
            f"(query {tuple(query.shape)}, document_lengths: {got}); use packing.flat_collate"
        )
    if attention_mask is not None:
        raise ValueError(f"{DOCUMENT_ATTENTION} attention takes no attention mask; documents are its mask")
    outputs = []
    start = 0
    for n in lengths:
        part = slice(start, start + n)
        out, _ = sdpa_attention_forward(
            module, query[:, :, part], key[:, :, part], value[:, :, part], None, is_causal=True, **kwargs
        )
        outputs.append(out)
        start += n
    return torch.cat(outputs, dim=1), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """The mask function for :data:`DOCUMENT_ATTENTION`: document boundaries replace the mask."""
    return None


@contextlib.contextmanager
def document_attention_for(model: Any) -> Iterator[bool]:
    """Run ``model`` with :func:`document_attention` while inside; yields whether it does.

    Only models on ``sdpa`` or ``eager`` attention are switched (both compute exactly what per-document SDPA
    computes); others, such as flash attention, keep their own implementation, which handles flat rows from
    their ``position_ids``. The original implementation is restored on exit, so nothing saved afterwards
    names this one.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT wrapper
    original = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if original not in ("sdpa", "eager") or not hasattr(model, "set_attn_implementation"):
        yield False
        return
    AttentionInterface.register(DOCUMENT_ATTENTION, document_attention)
    AttentionMaskInterface.register(DOCUMENT_ATTENTION, _no_mask)
    model.set_attn_implementation(DOCUMENT_ATTENTION)
    try:
        yield True
    finally:
        model.set_attn_implementation(original)


def pad_collate(examples: Sequence[dict[str, Any]], pad_id: int, device: Any = None) -> dict[str, Any]:
    """Right-pad to the longest example; padding gets attention 0 and label IGNORE_INDEX (no packing)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
