"""Token counts with the training tokenizer: budgets in a mixture mean the tokens the model will see."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

_BATCH = 512


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def count_tokens(docs: pa.Table, tokenizer) -> list[int]:
    """Tokens per document: chat records as rendered by the chat template, text records as plain text."""
    kinds: Sequence[str] = docs.column("kind").to_pylist()
    texts: Sequence[str] = docs.column("text").to_pylist()
    messages: Sequence[str | None] = docs.column("messages").to_pylist()
    counts = [0] * docs.num_rows
    plain = [i for i, k in enumerate(kinds) if k != "chat" or not messages[i]]
    for start in range(0, len(plain), _BATCH):
        idx = plain[start : start + _BATCH]
        enc = tokenizer([texts[i] for i in idx], add_special_tokens=False)["input_ids"]
        for i, ids in zip(idx, enc, strict=True):
            counts[i] = len(ids)
    chat = [i for i, k in enumerate(kinds) if k == "chat" and messages[i]]
    rendered = [tokenizer.apply_chat_template(json.loads(messages[i]), tokenize=False) for i in chat]
    for start in range(0, len(chat), _BATCH):
        enc = tokenizer(rendered[start : start + _BATCH], add_special_tokens=False)["input_ids"]
        for i, ids in zip(chat[start : start + _BATCH], enc, strict=True):
            counts[i] = len(ids)
    return counts
