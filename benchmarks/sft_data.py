"""The conversations :mod:`benchmarks.bench_sft_trl` trains both tools on: the demo's chat JSONL or synthetic
chats as mixture rows, the TRL training template both must render alike under, and the selection of records
both tools can train on whole (with what was left out and why)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "examples" / "demo" / "data" / "signature_sft.jsonl"

# ChatML (SmolLM2's and the tiny model's rendering) with the assistant reply and its end-of-turn token inside
# generation markers, so TRL's assistant mask covers exactly what mixtrain labels. No default system prompt:
# conversations that would get one from SmolLM2's template fail the render check instead of differing silently.
TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class SelectedData:
    """The records both tools train on, and what was left out and why (nothing disappears unreported)."""

    records: list[dict[str, Any]]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> record ids
    lengths: list[int] = field(default_factory=list)  # tokens per kept conversation

    def summary(self) -> dict[str, Any]:
        n = sorted(self.lengths)
        return {
            "records": len(self.records),
            "skipped": {reason: len(ids) for reason, ids in self.skipped.items()},
            "skipped_ids": self.skipped,
            "tokens": sum(n),
            "min_tokens": n[0] if n else 0,
            "median_tokens": n[len(n) // 2] if n else 0,
            "max_tokens": n[-1] if n else 0,
        }


def mixture_row(record_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat conversation in the mixture table's shape: messages as a JSON string, text their joined contents."""
    text = "\n\n".join(str(m.get("content", "")) for m in messages)
    return {"doc_id": record_id, "kind": "chat", "messages": json.dumps(messages), "text": text}


def read_chat_jsonl(path: Path) -> list[dict[str, Any]]:
    """``{"id", "messages": [...]}`` lines as mixture rows; a malformed line is an error naming file and line."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from exc
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list):
                raise ValueError(f"{path}:{n}: field 'messages': expected a list of messages")
            rows.append(mixture_row(str(record.get("id", f"{path.name}:{n}")), messages))
    return rows


_WORDS = (
    "the",
    "model",
    "learns",
    "from",
    "a",
    "carefully",
    "mixed",
    "corpus",
    "of",
    "code",
    "and",
    "prose",
    "small",
    "data",
    "gated",
    "deduplicated",
    "screened",
    "function",
    "returns",
    "value",
    "list",
    "dict",
    "string",
    "number",
    "answer",
    "question",
    "please",
    "json",
    "parse",
    "text",
    "training",
    "step",
    "batch",
    "token",
    "loss",
    "rate",
    "adapter",
    "capital",
    "France",
    "Paris",
    "hello",
    "world",
    "add",
    "name",
    "count",
    "items",
    "ok",
    "missing",
)


def synthetic_conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat rows of widely varying length (a few words to a few hundred), seeded: the length spread
    real mixtures have and the demo's signature task lacks, which is what packing is for."""
    import random

    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        k = round(lo * (hi / lo) ** rng.random())  # log-uniform: many short, some long
        return " ".join(rng.choice(_WORDS) for _ in range(k))

    rows = []
    for i in range(n):
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": words(3, 180) + "?"},
            {"role": "assistant", "content": words(2, 120) + "."},
        ]
        rows.append(mixture_row(f"synthetic-{i}", messages))
    return rows


def load_rows(data: str, synthetic_records: int, demo: Path = DEMO_DATA) -> list[dict[str, Any]]:
    """The rows of ``--data``: the demo's conversations, synthetic ones, both ('mixed'), or a chat JSONL file."""
    if data == "synthetic":
        return synthetic_conversations(synthetic_records)
    if data == "mixed":
        return read_chat_jsonl(demo) + synthetic_conversations(synthetic_records)
    return read_chat_jsonl(demo if data == "demo" else Path(data))


def select_records(records: Sequence[dict[str, Any]], tokenizer: Any, max_seq_len: int) -> SelectedData:
    """The records both tools can train on whole: mixtrain's example preparation accepts them, they have
    labelled tokens, they render alike under TRL's training template (so both read the same text) and they fit
    in ``max_seq_len`` (so neither tool truncates). The rest are reported."""
    from training_assets.engine.examples import RecordError, prepare_examples

    selected = SelectedData(records=[])
    for record in records:
        rid = str(record.get("doc_id"))
        try:
            prepared = prepare_examples([record], tokenizer, max_seq_len=1_000_000)
        except RecordError as exc:
            selected.skipped.setdefault(f"refused: {str(exc).split(': ', 1)[-1][:80]}", []).append(rid)
            continue
        if not prepared.examples:
            selected.skipped.setdefault("no labelled tokens", []).append(rid)
            continue
        if not renders_alike(tokenizer, json.loads(record["messages"])):
            selected.skipped.setdefault("renders differently under TRL's training template", []).append(rid)
            continue
        n = len(prepared.examples[0]["input_ids"])
        if n > max_seq_len:
            selected.skipped.setdefault(f"longer than max_seq_len={max_seq_len}", []).append(rid)
            continue
        selected.records.append(record)
        selected.lengths.append(n)
    return selected


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def renders_alike(tokenizer: Any, messages: list[dict[str, Any]]) -> bool:
    """Whether ``messages`` render to the same text under :data:`TRAINING_TEMPLATE` as under the tokenizer's own
    template (SmolLM2's adds a default system prompt, for one, when the first turn is not a system one)."""
    own = tokenizer.apply_chat_template(messages, tokenize=False)
    return bool(own == tokenizer.apply_chat_template(messages, tokenize=False, chat_template=TRAINING_TEMPLATE))


def check_template(tokenizer: Any, conversations: Sequence[list[dict[str, Any]]], ids: Sequence[str]) -> None:
    """Every conversation must render identically under :data:`TRAINING_TEMPLATE` and the tokenizer's own
    template, or TRL would be trained on different text from mixtrain."""
    for rid, messages in zip(ids, conversations, strict=True):
        if not renders_alike(tokenizer, messages):
            raise ValueError(
                f"record {rid}: field 'messages': renders differently under the benchmark's TRL training "
                "template than under the tokenizer's chat template; TRL and mixtrain would see different text"
            )
