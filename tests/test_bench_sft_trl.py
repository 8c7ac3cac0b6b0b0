"""The SFT benchmark counts the same thing on both sides, so its tokens/s ratio compares like with like.

Every step holds the whole (tiny) data set, so without packing both tools read every conversation once per
step whatever their sampler's order: the real-token and label-token counts per step must then be equal, and
equal to what the tokenizer makes of the conversations independently of either tool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_sft_trl import BenchSettings, run_mixtrain
from benchmarks.mfu import mfu
from benchmarks.sft_data import check_template, select_records, synthetic_conversations
from training_assets.engine.tiny import make_tiny_model

N_RECORDS = 6
STEPS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_model(str(tmp_path_factory.mktemp("tiny")))["path"]


@pytest.fixture(scope="module")
def data(tiny: str) -> tuple[list[dict[str, Any]], list[int]]:
    from transformers import AutoTokenizer

    rows = synthetic_conversations(40, seed=3)
    rows.append({"doc_id": "no-answer", "kind": "chat", "messages": json.dumps([{"role": "user", "content": "hi"}])})
    selected = select_records(rows, AutoTokenizer.from_pretrained(tiny), max_seq_len=160)
    # The unanswered conversation and the long ones are reported, not silently dropped.
    assert selected.skipped["no labelled tokens"] == ["no-answer"]
    assert sum(len(v) for v in selected.skipped.values()) + len(selected.records) == len(rows)
    assert max(selected.lengths) <= 160
    return selected.records[:N_RECORDS], selected.lengths[:N_RECORDS]


def _expected_counts(tiny: str, records: list[dict[str, Any]]) -> tuple[int, int]:
    """Tokens and shifted label tokens of ``records``, straight from the tokenizer and the chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    tokens = labels = 0
    for r in records:
        messages = json.loads(r["messages"])
        full = tok.apply_chat_template(messages, tokenize=False)
        prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        answer = messages[-1]["content"] + "<|im_end|>"
        assert full == prompt + answer + "\n"
        tokens += len(tok(full, add_special_tokens=False)["input_ids"])
        # The answer starts a new token after "assistant\n" in this byte-level BPE, so it tokenizes alone.
        labels += len(tok(answer, add_special_tokens=False)["input_ids"])
    return tokens, labels


def _settings(packing: bool = False) -> BenchSettings:
    return BenchSettings(steps=STEPS, batch_size=N_RECORDS, max_seq_len=160, packing=packing, threads=1)


def test_mixtrain_counts_every_real_token_once_per_step(
    tiny: str, data: tuple[list[dict[str, Any]], list[int]]
) -> None:
    records, lengths = data
    result = run_mixtrain(tiny, records, _settings())
    tokens, labels = _expected_counts(tiny, records)
    assert tokens == sum(lengths)
    assert result["tokens"] == [tokens] * STEPS
    assert result["label_tokens"] == [labels] * STEPS
    assert result["tokens_per_s"] > 0 and len(result["step_s"]) == STEPS


def test_trl_counts_the_same_tokens_as_mixtrain(tiny: str, data: tuple[list[dict[str, Any]], list[int]]) -> None:
    pytest.importorskip("trl")
    from benchmarks.bench_sft_trl import run_trl

    records, _ = data
    mixtrain = run_mixtrain(tiny, records, _settings())
    trl = run_trl(tiny, records, _settings())
    assert trl["tokens"] == mixtrain["tokens"]
    assert trl["label_tokens"] == mixtrain["label_tokens"]
    assert trl["trl_num_tokens"] == sum(trl["tokens"])  # TRL's own count agrees with the benchmark's
    assert len(trl["loss"]) == STEPS and all(loss > 0 for loss in trl["loss"])


def test_trl_packing_counts_no_padding(tiny: str, data: tuple[list[dict[str, Any]], list[int]]) -> None:
    pytest.importorskip("trl")
    from benchmarks.bench_sft_trl import run_trl

    records, lengths = data
    result = run_trl(tiny, records, _settings(packing=True))
    # Padding-free: every step is the whole data set flattened, so exactly its real tokens.
    assert result["tokens"] == [sum(lengths)] * STEPS


def test_template_mismatch_is_an_error_naming_the_record(tiny: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    check_template(tok, [messages], ["ok-1"])
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ValueError, match="record odd-1: field 'messages'"):
        check_template(tok, [messages], ["odd-1"])


def test_mfu_is_six_n_tokens_over_peak_and_absent_on_cpu() -> None:
    assert mfu(100, 1000.0, 6e6) == pytest.approx(0.1)
    assert mfu(100, 1000.0, None) is None
    assert mfu(100, None, 1e12) is None


def test_demo_data_reads_as_mixture_rows(tmp_path: Path) -> None:
    from benchmarks.sft_data import read_chat_jsonl

    path = tmp_path / "chat.jsonl"
    path.write_text('{"id": "a", "messages": [{"role": "user", "content": "x"}]}\n\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"chat.jsonl:3: field 'messages'"):
        read_chat_jsonl(path)


def test_mixed_data_is_the_demo_conversations_and_synthetic_ones(tmp_path: Path) -> None:
    from benchmarks.sft_data import load_rows

    demo = tmp_path / "demo.jsonl"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    demo.write_text(json.dumps({"id": "d1", "messages": messages}) + "\n")
    rows = load_rows("mixed", 5, demo=demo)
    assert [r["doc_id"] for r in rows] == ["d1"] + [f"synthetic-{i}" for i in range(5)]
    assert load_rows("synthetic", 5, demo=demo) == rows[1:]
    assert load_rows("demo", 5, demo=demo) == rows[:1] == load_rows(str(demo), 0)


def test_records_rendering_differently_for_trl_are_skipped_and_counted(tiny: str) -> None:
    from transformers import AutoTokenizer

    from benchmarks.sft_data import TRAINING_TEMPLATE, mixture_row

    tok = AutoTokenizer.from_pretrained(tiny)
    # Like SmolLM2's template: a default system prompt when the conversation brings none.
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe helpful.<|im_end|>\n{% endif %}"
        + TRAINING_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    )
    answer = {"role": "assistant", "content": "hello"}
    rows = [
        mixture_row("with-system", [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, answer]),
        mixture_row("no-system", [{"role": "user", "content": "hi"}, answer]),
    ]
    selected = select_records(rows, tok, max_seq_len=160)
    assert [r["doc_id"] for r in selected.records] == ["with-system"]
    assert selected.skipped == {"renders differently under TRL's training template": ["no-system"]}
