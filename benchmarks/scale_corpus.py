"""A synthetic corpus of any size, written chunk by chunk as a v2 table, for the scale benchmark.

Why not the labelled generators: they build every row as a Python dict first, which at 10^6 documents of ~2 KB
costs more memory and minutes than the stages they are meant to measure. Here each chunk of 20k documents is
drawn with NumPy, planted with exact and near copies of earlier documents of the same chunk (so duplicates
exist at every size in the same proportion), and handed to a :class:`~mixtrain.tables.TableWriter`; memory
holds one chunk. Doc ids are mixtrain's (hex of sha256), so row ids are the real ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mixtrain.schema import DOCUMENT_SCHEMA, row_ids_for
from mixtrain.tables import MissingTableError, TableWriter, open_table

CHUNK = 20_000
SOURCES = ("web", "books", "forum", "code")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
EXACT_SHARE, NEAR_SHARE = 0.03, 0.10


def _vocab(rng: np.random.Generator, size: int = 30_000) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(2, 11, size)
    letters = rng.integers(0, 26, int(lengths.sum())).astype(np.uint8) + ord("a")
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    raw = letters.tobytes().decode()
    words = np.array([raw[cuts[i] : cuts[i + 1]] for i in range(size)])
    weights = 1.0 / np.arange(1, size + 1) ** 1.05
    return words, np.cumsum(weights / weights.sum())


def _render(words: np.ndarray, rng: np.random.Generator) -> str:
    """Words into sentences of 8-19 words with a capital and a full stop (what prose rules look at)."""
    out, start = [], 0
    while start < len(words):
        end = min(len(words), start + int(rng.integers(8, 20)))
        sentence = " ".join(words[start:end])
        out.append(sentence[:1].upper() + sentence[1:] + ".")
        start = end
    return " ".join(out)


def _chunk(index: int, n: int, seed: int, vocab: np.ndarray, cdf: np.ndarray, words_per_doc: int) -> pa.Table:
    rng = np.random.default_rng([seed, index])
    n_exact, n_near = int(n * EXACT_SHARE), int(n * NEAR_SHARE)
    n_orig = n - n_exact - n_near
    draws: list[np.ndarray] = []
    texts: list[str] = []
    for _ in range(n_orig):
        count = int(rng.integers(int(words_per_doc * 0.9), int(words_per_doc * 1.1)))
        picked = np.minimum(np.searchsorted(cdf, rng.random(count)), len(vocab) - 1)
        draws.append(picked)
        texts.append(_render(vocab[picked], rng))
    for _ in range(n_exact):
        texts.append(texts[int(rng.integers(n_orig))])
    for _ in range(n_near):
        picked = draws[int(rng.integers(n_orig))].copy()
        swap = rng.choice(len(picked), size=max(1, len(picked) // 60), replace=False)
        picked[swap] = rng.integers(0, len(vocab), swap.size)
        texts.append(_render(vocab[picked], rng))
    order = rng.permutation(n)
    first = index * CHUNK
    sources = [SOURCES[int(s)] for s in rng.integers(0, len(SOURCES), n)]
    locators = [f"{sources[i]}.jsonl:{first + i + 1}" for i in range(n)]
    doc_ids = [
        hashlib.sha256(f"{s}\x00{loc}".encode()).hexdigest()[:20] for s, loc in zip(sources, locators, strict=True)
    ]
    days = rng.integers(0, 100, n)
    table = pa.table(
        {
            "doc_id": doc_ids,
            "row_id": row_ids_for(pa.array(doc_ids)),
            "source_id": sources,
            "locator": locators,
            "kind": ["text"] * n,
            "text": [texts[i] for i in order],
            "messages": pa.nulls(n, pa.string()),
            "license": ["CC-BY-4.0"] * n,
            "rights_tags": pa.array([[]] * n, pa.list_(pa.string())),
            "attribution": pa.nulls(n, pa.string()),
            "domain": ["general"] * n,
            "language": ["en"] * n,
            "capture_time": [T0 + dt.timedelta(days=int(d)) for d in days],
        }
    )
    return table.cast(DOCUMENT_SCHEMA)


def write_corpus(location: Path, docs: int, *, seed: int = 0, words_per_doc: int = 300) -> dict[str, Any]:
    """The corpus at ``location`` (made once: an existing table with the same row count is reused), and
    its size: documents and UTF-8 bytes of text."""
    with contextlib.suppress(MissingTableError):  # made by an earlier run: reuse it when it is the same size
        if open_table(location).rows == docs:
            return describe(location)
    rng = np.random.default_rng(seed)
    vocab, cdf = _vocab(rng)
    writer = TableWriter(str(location), DOCUMENT_SCHEMA)
    chunks = ((i, min(CHUNK, docs - i * CHUNK)) for i in range((docs + CHUNK - 1) // CHUNK))
    pending = writer.write_all(_chunk(i, n, seed, vocab, cdf, words_per_doc) for i, n in chunks)
    pending.commit(writer.location)
    return describe(location)


def describe(location: Path) -> dict[str, Any]:
    stored = open_table(str(location))
    text_bytes = 0
    for batch in stored.batches(columns=["text"]):
        text_bytes += int(pa.compute.sum(pa.compute.binary_length(batch.column(0))).as_py() or 0)
    return {"docs": stored.rows, "text_mb": round(text_bytes / 1e6, 1), "version": stored.version}
