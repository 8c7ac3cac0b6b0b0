"""The mixture built on a text-free index and joined back from a stream equals sampling the whole table."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from upath import UPath

from mixassets.engine.heldout import heldout_mask, heldout_table
from mixassets.engine.licenses import policy_allows
from mixassets.engine.mixture import sample_mixture
from mixassets.engine.mixture_build import build_mixture, corpus_index, plan_mixture, write_mixture
from mixassets.engine.row_gather import gather_rows
from mixassets.engine.tokens import count_tokens
from mixtrain.config.data import MixtureSpec
from mixtrain.schema import DOCUMENT_SCHEMA, with_row_ids
from mixtrain.tables import PendingTable, TableWriter

SPEC = MixtureSpec.model_validate(
    {
        "weights": {"py": 2, "news": 1, "chat": 1, "tiny": 1},
        "max_epochs": {"tiny": 3},
        "phases": [{"name": "warm", "share": 0.3}, {"name": "main", "share": 0.7}],
        "token_budget": 60_000,
        "heldout_docs": 3,
        "seed": 11,
    }
)


class WordTokenizer:
    """Whitespace words: a tokenizer without a Rust backend, enough to give the documents distinct lengths."""

    def __call__(self, texts, **kwargs):
        return {"input_ids": [t.split() for t in texts]}

    def apply_chat_template(self, messages, tokenize):
        return "\n".join(f"<{m['role']}> {m['content']}" for m in messages)


def _corpus(seed: int = 5) -> pa.Table:
    rng = random.Random(seed)
    layout = {
        "py": ("code", "en", 300),
        "news": ("web", "de", 250),
        "chat": ("chat", "en", 120),
        "tiny": ("web", "fr", 8),
    }
    rows = []
    for sid, (domain, lang, n) in layout.items():
        for i in range(n):
            words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(20, 400)))
            row = {
                "doc_id": f"{sid}-{i:04d}",
                "source_id": sid,
                "locator": f"{sid}:{i}",
                "kind": "text",
                "text": words,
                "license": "CC-BY-NC-4.0" if i % 11 == 3 else "MIT",
                "domain": domain,
                "language": lang,
                "rights_tags": ["x"] if i % 2 else [],
            }
            if sid == "chat":
                messages = [{"role": "user", "content": words[:50]}, {"role": "assistant", "content": words}]
                row.update(kind="chat", messages=json.dumps(messages))
            rows.append(row)
    rng.shuffle(rows)  # corpus order is not the mixture's order
    return with_row_ids(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))


def _reference(corpus: pa.Table, tokens: list[int]) -> tuple[pa.Table, dict, pa.Table]:
    """What the mixture asset computed before it streamed: everything on the whole table."""
    allowed = np.array([policy_allows(lic, SPEC.release_policy) for lic in corpus.column("license").to_pylist()])
    held = heldout_mask(corpus, SPEC.heldout_docs, SPEC.seed, allowed=allowed.tolist())
    heldout = heldout_table(corpus, held, SPEC.seed)
    rest = ~held
    table, composition = sample_mixture(
        corpus.filter(pa.array(rest)), np.asarray(tokens)[rest].tolist(), SPEC, allowed=allowed[rest].tolist()
    )
    return table, composition, heldout


def test_gather_rows_in_any_order_with_repeats(tmp_path: Path) -> None:
    table = pa.table({"i": list(range(1000)), "s": [f"row {i}" for i in range(1000)]})
    rng = np.random.default_rng(0)
    positions = np.concatenate([rng.permutation(1000)[:600], rng.integers(0, 1000, 300)])
    chunks = list(gather_rows(table.to_batches(max_chunksize=77), positions, ["s"], spill=tmp_path, chunk_rows=64))
    assert [c.num_rows for c in chunks[:-1]] == [64] * (len(chunks) - 1)
    assert pa.concat_tables(chunks).column("s").to_pylist() == [f"row {i}" for i in positions]
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="past the stream"):
        list(gather_rows(table.to_batches(), np.array([1000]), ["s"], spill=tmp_path, chunk_rows=64))


def test_streamed_mixture_equals_the_whole_table_build(tmp_path: Path) -> None:
    corpus = _corpus()
    tokens = count_tokens(corpus, WordTokenizer())
    table, composition, heldout = _reference(corpus, tokens)
    assert len(set(table.column("doc_id").to_pylist())) < table.num_rows  # "tiny" repeats: occurrences > 0

    stored = PendingTable.of(corpus, rows_per_part=200).commit(UPath(tmp_path / "corpus"))
    index, counts = corpus_index(stored.batches(batch_size=64), stored.schema, WordTokenizer())
    assert counts.tolist() == tokens
    assert "text" not in index.column_names and "messages" not in index.column_names
    plan = plan_mixture(index, counts, SPEC)
    assert plan.composition == composition
    writer = TableWriter(str(tmp_path / "mixture"), table.schema, rows_per_part=500)
    spill = tmp_path / "spill"
    spill.mkdir()
    got_heldout = write_mixture(
        stored.batches(batch_size=100), stored.schema, plan, writer.write, spill=spill, chunk_rows=90
    )
    written = writer.finish()
    assert got_heldout.equals(heldout)
    assert written.version == PendingTable.of(table, rows_per_part=500).version  # same parts, same shards
    assert written.rows == table.num_rows


def test_build_mixture_in_memory_is_the_same_build() -> None:
    corpus = _corpus(seed=9)
    tokens = count_tokens(corpus, WordTokenizer())
    table, composition, heldout = _reference(corpus, tokens)
    built = build_mixture(corpus, tokens, SPEC, batch_rows=70)
    assert built.table.equals(table)
    assert built.heldout.equals(heldout)
    assert built.composition == composition
    assert built.plan.metadata()["documents"] == table.num_rows
