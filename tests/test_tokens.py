"""Token counts of the fast path equal what the tokenizer's own ``__call__`` gives."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mixassets.engine import tokens
from mixassets.engine.tokens import count_tokens, load_tokenizer, token_counts
from mixtrain.schema import DOCUMENT_SCHEMA


def _docs() -> pa.Table:
    chat = [
        {"role": "user", "content": "Write add(a, b)."},
        {"role": "assistant", "content": "def add(a, b): return a + b"},
    ]
    rows = [
        {"kind": "text", "text": "The harbour reopened on Monday after the storm.", "messages": None},
        {"kind": "chat", "text": "flattened chat text", "messages": json.dumps(chat)},
        {"kind": "chat", "text": "a chat record without messages counts its text", "messages": None},
        {"kind": "chat", "text": "empty messages too", "messages": ""},
        {"kind": "text", "text": "", "messages": None},
        {"kind": "text", "text": "<|im_start|> special-looking text ünïcödé " * 40, "messages": None},
    ]
    rows = [{**r, "doc_id": f"d{i}", "source_id": "s", "locator": f"f:{i}"} for i, r in enumerate(rows * 300)]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def _expected(docs: pa.Table, tokenizer) -> list[int]:
    out = []
    for row in docs.to_pylist():
        if row["kind"] == "chat" and row["messages"]:
            text = tokenizer.apply_chat_template(json.loads(row["messages"]), tokenize=False)
        else:
            text = row["text"]
        out.append(len(tokenizer([text], add_special_tokens=False)["input_ids"][0]))
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def test_counts_equal_the_tokenizer_call(tokenizer) -> None:
    docs = _docs()
    want = _expected(docs, tokenizer)
    assert count_tokens(docs, tokenizer) == want
    assert [n for b in docs.to_batches(max_chunksize=97) for n in count_tokens(b, tokenizer)] == want


def test_backend_truncation_left_on_does_not_change_counts(tokenizer) -> None:
    docs = _docs().slice(0, 12)
    want = _expected(docs, tokenizer)
    tokenizer.backend_tokenizer.enable_truncation(max_length=3)
    assert token_counts(docs, tokenizer).tolist() == want


def test_a_slow_tokenizer_is_called_as_before() -> None:
    """Without a Rust backend the counts come from ``tokenizer(...)`` itself."""

    class Slow:
        def __call__(self, texts, **kwargs):
            return {"input_ids": [t.split() for t in texts]}

        def apply_chat_template(self, messages, tokenize):
            return " ".join(m["content"] for m in messages)

    docs = _docs().slice(0, 6)
    got = count_tokens(docs, Slow())
    assert got[0] == 8  # words of the first text
    assert got[1] == 10  # words of the rendered chat
    assert tokens._encoder(Slow())(["a b", ""]) == [2, 0]
