"""Teacher top-k store, sequence-level KD data and end-to-end distillation on a tiny 4-layer teacher."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from mixtrain.config.training import DistillRecipe  # noqa: E402
from training_assets.engine.config import DistillConfig  # noqa: E402
from training_assets.engine.distill import distill_student  # noqa: E402
from training_assets.engine.examples import tokenize_records  # noqa: E402
from training_assets.engine.kd_losses import teacher_topk  # noqa: E402
from training_assets.engine.packing import pad_collate  # noqa: E402
from training_assets.engine.run_manifest import RUN_MANIFEST_FILE  # noqa: E402
from training_assets.engine.sequence_kd import generate_sequence_kd, prompt_messages  # noqa: E402
from training_assets.engine.teacher_logits import (  # noqa: E402
    TeacherStoreError,
    TopKStore,
    label_positions,
    precompute_teacher_topk,
)

QA = [
    ("Capital of France?", "Paris"),
    ("Add 1 and 2", "3"),
    ("Say hello", "Hello world!"),
    ("JSON please", '{"ok": true}'),
    ("Count to three", "1, 2, 3"),
    ("Name a fox", "The quick brown fox"),
    ("Return a + b", "return a + b"),
    ("Is null true?", '{"missing": null}'),
]


def chat(q: str, a: str, i: int) -> dict:
    messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"doc_id": f"d{i}", "kind": "chat", "text": f"{q}\n\n{a}", "messages": json.dumps(messages)}


RECORDS = [chat(q, a, i) for i, (q, a) in enumerate(QA)]


@pytest.fixture(scope="module")
def teacher(teacher_dir: str):
    return AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer(teacher_dir: str):
    return AutoTokenizer.from_pretrained(teacher_dir)


@pytest.fixture(scope="module")
def examples(tokenizer) -> list[dict]:
    ex, stats = tokenize_records(RECORDS, tokenizer, 32)
    assert stats["examples"] == len(RECORDS)
    return ex


def recipe(**overrides) -> dict:
    r = {
        "steps": 8,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_steps": 0,
        "max_seq_len": 32,
        "dtype": "fp32",
        "kd_ratio": 1.0,
        "temperature": 1.0,
    }
    r.update(overrides)
    return r


def distill(teacher_dir, adapter_dir, student, records, recipe_or_config, out_dir, *, mode="logit", **kw) -> dict:
    """``distill_student`` with the config built from a recipe, a student and a mode (or given as is)."""
    config = recipe_or_config
    if not isinstance(config, DistillConfig):
        config = DistillConfig.from_recipe(recipe_or_config, student=student, mode=mode)
    return distill_student(teacher_dir, adapter_dir, records, config, out_dir, **kw)


# -- teacher top-k store ------------------------------------------------------------------------------


def test_store_round_trip_matches_on_the_fly(teacher, tokenizer, examples, tmp_path) -> None:
    out = tmp_path / "store"
    # A tiny shard size forces several shards, so lookups across shard boundaries are exercised.
    index = precompute_teacher_topk(
        teacher, examples, str(out), k=8, temperature=2.0, batch_size=3, pad_id=0, shard_max_tokens=20
    )
    assert len(index["shards"]) > 1
    assert index["n_tokens"] == sum(len(label_positions(e["labels"])) for e in examples)
    assert index["bytes_per_token"] == 8 * 8 + 4 and index["full_vocab_fp32_bytes_per_token"] == 4 * len(tokenizer)
    store = TopKStore(str(out))
    assert len(store) == len(examples) and store.k == 8 and store.temperature == 2.0

    order = [5, 0, 7]
    chosen = [examples[i] for i in order]
    batch = pad_collate(chosen, tokenizer.pad_token_id)
    stored = store.batch(order, chosen, batch["input_ids"].size(1))
    with torch.no_grad():
        live = teacher_topk(teacher(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits, 8, 2.0)
    for row, ex in enumerate(chosen):
        pos = torch.as_tensor(label_positions(ex["labels"]), dtype=torch.long)
        torch.testing.assert_close(stored.logprobs[row, pos], live.logprobs[row, pos], rtol=1e-5, atol=1e-5)
        assert torch.equal(stored.indices[row, pos], live.indices[row, pos])

    # A store is refused for examples it was not computed for ...
    with pytest.raises(TeacherStoreError, match="example 5 was stored for different tokens"):
        store.batch([5], [examples[6]], 32)
    # ... and when a file was damaged.
    victim = out / index["shards"][0]["name"] / "logprobs.npy"
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(TeacherStoreError, match="checksum"):
        TopKStore(str(out))


def test_store_is_written_atomically(teacher, examples, tmp_path) -> None:
    bad = [*examples[:3], {"input_ids": [10**6, 1, 2], "labels": [10**6, 1, 2]}]  # id beyond the embedding table
    with pytest.raises(IndexError):
        precompute_teacher_topk(teacher, bad, str(tmp_path / "s"), k=4, batch_size=2, shard_max_tokens=1)
    assert not (tmp_path / "s").exists() and os.listdir(tmp_path) == []


# -- sequence-level KD ----------------------------------------------------------------------------------


def test_prompt_messages() -> None:
    assert prompt_messages(RECORDS[0]) == [{"role": "user", "content": "Capital of France?"}]
    assert prompt_messages({"kind": "text", "text": "x"}) is None
    only_assistant = {"kind": "chat", "messages": json.dumps([{"role": "assistant", "content": "x"}])}
    assert prompt_messages(only_assistant) is None


def test_sequence_kd_counts_and_reproducibility(teacher, tokenizer) -> None:
    calls: list[str] = []

    def verifier(answer: str, record: dict) -> str | None:
        calls.append(record["doc_id"])
        if record["doc_id"] == "d1":
            raise RuntimeError("verifier bug")
        return None if len(answer) % 2 == 0 else "odd_length"

    kwargs = {"n_candidates": 3, "temperature": 1.0, "top_p": 0.9, "max_new_tokens": 6, "seed": 7, "batch_size": 3}
    records = [*RECORDS[:4], {"doc_id": "t", "kind": "text", "text": "not a prompt"}]
    kept, counts = generate_sequence_kd(teacher, tokenizer, records, verifier=verifier, require_eos=False, **kwargs)
    assert counts["prompts"] == 4 and counts["skipped_records"] == 1 and counts["generated"] == 12
    assert counts["kept"] == len(kept) and counts["kept"] + counts["dropped"] == 12
    assert sum(counts["by_reason"].values()) == counts["dropped"]
    assert counts["by_reason"].get("verifier_raised:RuntimeError", 0) == calls.count("d1") > 0
    assert counts["by_reason"].get("verifier:odd_length", 0) > 0 and counts["kept"] > 0
    for rec in kept:
        messages = json.loads(rec["messages"])
        assert messages[-1]["role"] == "assistant" and len(messages[-1]["content"]) % 2 == 0
        assert rec["kind"] == "chat" and rec["locator"].startswith(("d0#", "d2#", "d3#"))
    assert counts["settings"]["seed"] == 7 and counts["settings"]["verifier"] == "verifier"

    again, _ = generate_sequence_kd(teacher, tokenizer, records, verifier=verifier, require_eos=False, **kwargs)
    assert again == kept
    other, _ = generate_sequence_kd(
        teacher, tokenizer, records, verifier=verifier, require_eos=False, **{**kwargs, "seed": 8}
    )
    assert other != kept
    # A random tiny model almost never closes its turn within 6 tokens: require_eos drops those answers.
    _, strict = generate_sequence_kd(teacher, tokenizer, records, **kwargs)
    assert strict["by_reason"].get("no_eos", 0) + strict["kept"] + strict["by_reason"].get("duplicate", 0) == 12


# -- distillation end to end ------------------------------------------------------------------------------


def test_recipe_validation() -> None:
    with pytest.raises(ValueError, match="set top_k"):
        DistillRecipe.model_validate({"teacher_logits": "precomputed"})
    with pytest.raises(ValueError):
        DistillRecipe.model_validate({"kd_ratio": 1.5})
    assert DistillConfig.from_recipe(recipe(), student={"keep_every": 2}).sft_baseline().kd_ratio == 0.0


def test_kd_moves_the_student_towards_the_teacher_more_than_sft(teacher_dir: str, tmp_path) -> None:
    """Same student init, data, order and steps: KD lowers the KL to the teacher, SFT-only lowers the gold CE.

    Each run beats the other on its own objective, so the test fails if the KD term were not wired to the
    teacher (KD would then behave like SFT) or if kd_ratio = 0 still used it.
    """
    student = {"init": "layer_subset", "keep_every": 2}
    kd = distill(
        teacher_dir,
        None,
        student,
        RECORDS,
        recipe(),
        str(tmp_path / "kd"),
        data_manifest_id="m1",
        eval_records=RECORDS,
    )
    sft = distill(
        teacher_dir,
        None,
        student,
        RECORDS,
        DistillConfig.from_recipe(recipe(), student=student).sft_baseline(),
        str(tmp_path / "sft"),
        data_manifest_id="m1",
        eval_records=RECORDS,
    )
    kd_eval, sft_eval = kd["evaluation"], sft["evaluation"]
    assert kd_eval["before"] == sft_eval["before"]  # same init
    assert kd_eval["after"]["kd"] < 0.5 * kd_eval["before"]["kd"]
    assert kd_eval["after"]["kd"] < sft_eval["after"]["kd"]
    assert sft_eval["after"]["ce"] < kd_eval["after"]["ce"]
    assert sft["distillation"]["baseline"] == "sft_only" and kd["distillation"]["baseline"] is None
    assert all(m["kd"] == 0.0 for m in sft["metrics"]) and all(m["kd"] > 0 for m in kd["metrics"])

    # The output directory is a loadable student with the teacher's tokenizer and a complete manifest.
    out = tmp_path / "kd"
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.num_hidden_layers == 2
    on_disk = json.loads((out / RUN_MANIFEST_FILE).read_text())
    d = on_disk["distillation"]
    assert d["loss"] == "forward_kl" and d["temperature"] == 1.0 and d["kd_ratio"] == 1.0 and d["top_k"] is None
    assert d["teacher"]["weights_sha256"] and d["teacher"]["vocab_sha256"]
    assert d["student"] == {
        "init": "layer_subset",
        "kept_layers": [0, 2],
        "teacher_layers": 4,
        "keep_every": 2,
        "n_params": d["student"]["n_params"],
    }
    assert on_disk["output_weights_sha256"] == kd["output_weights_sha256"] and on_disk["steps"] == 8


def test_precomputed_top_k_trains_like_on_the_fly_top_k(teacher_dir: str, tmp_path) -> None:
    common = recipe(steps=3, top_k=8, temperature=2.0, kd_ratio=0.7, loss="jsd")
    student = {"init": "layer_subset", "layers": [0, 3]}
    precomputed = {**common, "teacher_logits": "precomputed"}
    live = distill(teacher_dir, None, student, RECORDS, common, str(tmp_path / "a"), data_manifest_id="m")
    pre = distill(teacher_dir, None, student, RECORDS, precomputed, str(tmp_path / "b"), data_manifest_id="m")
    np.testing.assert_allclose(pre["loss"], live["loss"], rtol=1e-4)
    store = pre["distillation"]["teacher_store"]
    assert store["k"] == 8 and not store["reused"] and store["bytes_per_token"] == 68
    again = distill(teacher_dir, None, student, RECORDS, precomputed, str(tmp_path / "b"), data_manifest_id="m")
    assert again["distillation"]["teacher_store"]["reused"] and again["loss"] == pre["loss"]


def test_sequence_mode_trains_on_verified_teacher_answers(teacher_dir: str, tmp_path) -> None:
    seq = {"n_candidates": 2, "max_new_tokens": 5, "temperature": 1.0, "require_eos": False, "seed": 1}
    manifest = distill(
        teacher_dir,
        None,
        {"init": "layer_subset", "keep_every": 2},
        RECORDS[:4],
        recipe(steps=2, sequence=seq, kd_ratio=0.5),
        str(tmp_path / "s"),
        data_manifest_id="m",
        mode="sequence",
        verifier=lambda answer, record: None if answer.strip() else "blank",
    )
    d = manifest["distillation"]
    counts = d["sequence_kd"]
    assert counts["prompts"] == 4 and counts["generated"] == 8 and counts["kept"] + counts["dropped"] == 8
    assert d["effective_kd_ratio"] == 0.0 and d["kd_ratio"] == 0.5 and d["teacher_logits"] is None
    # "augment": gold records plus the kept teacher answers (some may be dropped if truncation empties them).
    assert manifest["examples"]["examples"] + manifest["examples"]["dropped_no_labels"] == 4 + counts["kept"]


def test_teacher_adapter_is_merged_before_the_student_is_built(teacher_dir: str, teacher, tmp_path) -> None:
    """A student keeping every layer of the adapted teacher starts at KL 0 from it (and not from the bare base)."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(teacher_dir), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"])
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    peft_model.save_pretrained(tmp_path / "adapter")
    manifest = distill(
        teacher_dir,
        str(tmp_path / "adapter"),
        {"init": "layer_subset", "keep_every": 1},
        RECORDS,
        recipe(steps=1, lr=1e-6),
        str(tmp_path / "s"),
        data_manifest_id="m",
        eval_records=RECORDS,
    )
    assert manifest["evaluation"]["before"]["kd"] < 1e-6
    teacher_id = manifest["distillation"]["teacher"]
    assert teacher_id["adapter_weights_sha256"] and teacher_id["adapter_path"].endswith("adapter")
    # The same student measured against the bare base is far from it: the adapter really changed the teacher.
    from training_assets.engine.distill import teacher_student_divergence

    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    ex, _ = tokenize_records(RECORDS, AutoTokenizer.from_pretrained(teacher_dir), 32)
    assert teacher_student_divergence(teacher, student, ex, pad_id=0)["kd"] > 1e-2
