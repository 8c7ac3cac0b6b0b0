"""The mixture as training reads it: a streamed, text-free index; each rank loads only its own examples."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from training_assets.engine.batching import StepBatches, phase_indices
from training_assets.engine.examples import RecordError, prepare_examples
from training_assets.engine.shards import record_batches, scan_mixture


def _rows(n: int = 23) -> list[dict]:
    rows = []
    for i in range(n):
        phase = ["warmup", "main", "tail"][(i * 7 // n) % 3] if i % 5 else None
        if i % 4 == 0:
            rows.append(
                {
                    "kind": "chat",
                    "text": "",
                    "messages": json.dumps([{"role": "user", "content": "hi"}]),
                    "phase": phase,
                }
            )  # fmt: skip  (no assistant turn: counted, no example)
        elif i % 2:
            msgs = [{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": str(i + 1)}]
            rows.append({"kind": "chat", "text": "", "messages": json.dumps(msgs), "phase": phase})
        else:
            rows.append({"kind": "text", "text": f"Document {i}. " * (1 + i % 6), "messages": None, "phase": phase})
    return rows


@pytest.fixture
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_streamed_index_equals_the_whole_table_read_at_once(tokenizer, tmp_path: Path) -> None:
    rows = _rows()
    path = tmp_path / "mixture.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    whole = prepare_examples(rows, tokenizer, 48)
    record_phase, names = phase_indices(rows)
    for source in (str(path), rows):
        index = scan_mixture(source, tokenizer, 48, batch_rows=4)  # six batches, phases first seen in later ones
        assert index.records == len(rows)
        assert index.stats == whole.stats and index.phase_names == names
        assert index.example_records == [e["record"] for e in whole.examples]
        assert index.lengths == [len(e["input_ids"]) for e in whole.examples]
        assert index.phases == [record_phase[e["record"]] for e in whole.examples]
        assert [index.example(i) for i in range(len(whole.examples))] == whole.examples
        assert index.templates_manifest() == whole.templates_manifest()
    assert [first for first, _ in record_batches(str(path), 4)] == [0, 4, 8, 12, 16, 20]


def test_a_rank_loads_only_the_examples_of_its_micro_batches(tokenizer, tmp_path: Path) -> None:
    rows = _rows(40)
    path = str(tmp_path / "mixture.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    full = scan_mixture(path, tokenizer, 48)
    plan = StepBatches(full.phases, full.lengths, lambda ids: {"ids": ids}, batch_size=2, steps=6, seed=1, grad_accum=2)
    shares = [plan.items_of_rank(rank, 2) for rank in (0, 1)]
    assert shares[0] and shares[1] and shares[0] | shares[1] == plan.items_of_rank(0, 1)
    step = plan(0)
    assert [b["ids"] for b in step[0::2]] == [step.ids[0]]  # a rank's slice builds only its own micro-batches

    rank0 = scan_mixture(path, tokenizer, 48, keep_tokens=False)
    with pytest.raises(KeyError, match="not loaded by this process"):
        rank0.example(0)
    rank0.load(path, tokenizer, shares[0], batch_rows=8)
    for i in range(len(full.lengths)):
        if i in shares[0]:
            assert rank0.example(i) == full.example(i)
        else:
            with pytest.raises(KeyError):
                rank0.example(i)


def test_a_bad_record_is_named_by_its_place_in_the_mixture(tokenizer, tmp_path: Path) -> None:
    rows = _rows(12)
    rows[9] = {"kind": "poem", "text": "x", "messages": None, "phase": None}
    with pytest.raises(RecordError, match="record 9"):
        scan_mixture(rows, tokenizer, 48, batch_rows=4)
    with pytest.raises(ValueError, match=r"record 0: .*records 0\.\.3 of the mixture"):
        scan_mixture(_rows(12), tokenizer, 48, phase_order=["warmup", "main"], batch_rows=4)
