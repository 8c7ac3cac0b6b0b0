"""Token counts with the training tokenizer: budgets in a mixture mean the tokens the model will see.

Why it is written this way: the counts are needed for every document of the corpus, so this is a hot loop.
Only one slice of texts at a time becomes Python strings (the column stays in Arrow), and a fast tokenizer's
Rust backend is called directly with ``encode_batch_fast`` (no offsets), which gives the ids
``tokenizer(texts, add_special_tokens=False)`` gives without building a ``BatchEncoding`` of Python lists per
call. Chat records are rendered by the chat template once each, in the same slices.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Texts per call into the tokenizer: large enough for the backend's parallel batch, small enough that one
# slice of Python strings stays a few MB.
_BATCH = 1_024


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _encoder(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token count per text, as ``tokenizer(texts, add_special_tokens=False)`` counts them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    if fast is None:  # a slow (Python) tokenizer

        def slow(texts: list[str]) -> list[int]:
            out = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
            return [len(ids) for ids in out["input_ids"]]

        return slow

    def encode(texts: list[str]) -> list[int]:
        # What the tokenizer's own __call__ sets on its backend before it encodes: no truncation or padding
        # (both would change the counts) and its split_special_tokens choice.
        if backend.truncation is not None or backend.padding is not None:
            backend.no_truncation()
            backend.no_padding()
        split = bool(getattr(tokenizer, "split_special_tokens", False))
        if backend.encode_special_tokens != split:
            backend.encode_special_tokens = split
        return [len(e) for e in fast(texts, add_special_tokens=False)]

    return encode


def token_counts(docs: pa.Table | pa.RecordBatch, tokenizer: Any) -> np.ndarray:
    """Tokens per document (int64): chat records as rendered by the chat template, text records as plain text.

    A record counts as chat when its ``kind`` is ``chat`` and it has non-empty ``messages``."""
    encode = _encoder(tokenizer)
    n = docs.num_rows
    counts = np.zeros(n, dtype=np.int64)
    messages = docs.column("messages")
    if pa.types.is_null(messages.type):
        messages = messages.cast(pa.string())
    has_messages = pc.fill_null(pc.greater(pc.utf8_length(messages), 0), False)
    is_chat = pc.and_(pc.fill_null(pc.equal(docs.column("kind"), "chat"), False), has_messages)
    chat = np.asarray(is_chat.to_numpy(zero_copy_only=False), dtype=bool) if n else np.zeros(0, dtype=bool)
    texts = docs.column("text")
    for rows, column, render in ((np.flatnonzero(~chat), texts, False), (np.flatnonzero(chat), messages, True)):
        for start in range(0, len(rows), _BATCH):
            idx = rows[start : start + _BATCH]
            values: Sequence[str] = column.take(pa.array(idx, pa.int64())).to_pylist()
            if render:
                values = [tokenizer.apply_chat_template(json.loads(m), tokenize=False) for m in values]
            counts[idx] = encode(list(values))
    return counts


def count_tokens(docs: pa.Table | pa.RecordBatch, tokenizer: Any) -> list[int]:
    """:func:`token_counts` as a list."""
    return token_counts(docs, tokenizer).tolist()
