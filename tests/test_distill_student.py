"""Student construction (layer subsets, loading) and the vocabulary check that guards logit distillation."""

from __future__ import annotations

import json
import os
import re

import pytest

torch = pytest.importorskip("torch")

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from training_assets.engine.student import (  # noqa: E402
    VocabMismatchError,
    build_layer_subset,
    check_same_vocab,
    choose_layers,
    layer_subset_student,
    load_student,
    vocab_sha256,
)


def ids(tokenizer, text: str = "def add(a, b): return a + b") -> torch.Tensor:
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def test_choose_layers() -> None:
    assert choose_layers(4, keep_every=2) == [0, 2]
    assert choose_layers(5, keep_every=2) == [0, 2, 4]
    assert choose_layers(4, keep_every=1) == [0, 1, 2, 3]
    assert choose_layers(4, layers=[0, 3]) == [0, 3]
    for bad in ({"layers": [0, 4]}, {"layers": []}, {"layers": [2, 1]}, {"layers": [1, 1]}, {"keep_every": 0}, {}):
        with pytest.raises(ValueError):
            choose_layers(4, **bad)
    with pytest.raises(ValueError, match="exactly one"):
        choose_layers(4, keep_every=2, layers=[0])


def test_layer_subset_copies_teacher_weights(teacher_dir: str, tmp_path) -> None:
    info = layer_subset_student(teacher_dir, str(tmp_path / "s"), layers=[1, 3])
    assert info["kept_layers"] == [1, 3] and info["teacher_layers"] == 4
    assert info["n_params"] < info["teacher_n_params"]
    assert AutoConfig.from_pretrained(tmp_path / "s").num_hidden_layers == 2
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    t_state, s_state = teacher.state_dict(), student.state_dict()
    mapping = {0: 1, 1: 3}
    for name, value in s_state.items():
        m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
        src = f"model.layers.{mapping[int(m.group(1))]}.{m.group(2)}" if m else name
        torch.testing.assert_close(value, t_state[src], rtol=0, atol=0, msg=f"{name} <- {src}")
    # The saved tokenizer is the teacher's.
    assert vocab_sha256(AutoTokenizer.from_pretrained(tmp_path / "s")) == vocab_sha256(
        AutoTokenizer.from_pretrained(teacher_dir)
    )
    assert info["weights_sha256"] and os.path.isfile(tmp_path / "s" / "model.safetensors")


def test_keeping_every_layer_reproduces_the_teacher(teacher_dir: str) -> None:
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    full = build_layer_subset(teacher, [0, 1, 2, 3]).eval()
    half = build_layer_subset(teacher, [0, 2]).eval()
    x = ids(tok)
    with torch.no_grad():
        t = teacher(input_ids=x).logits
        torch.testing.assert_close(full(input_ids=x).logits, t, rtol=0, atol=0)
        assert not torch.allclose(half(input_ids=x).logits, t, atol=1e-3)
    # The student's parameters are its own: training it must not move the teacher.
    before = teacher.model.layers[0].self_attn.q_proj.weight.clone()
    with torch.no_grad():
        half.model.layers[0].self_attn.q_proj.weight.add_(1.0)
    torch.testing.assert_close(teacher.model.layers[0].self_attn.q_proj.weight, before)


def test_load_student_pretrained_and_from_config(teacher_dir: str, tmp_path) -> None:
    _, tok, info = load_student(teacher_dir)
    assert info["init"] == "pretrained" and info["weights_sha256"]
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    config = AutoConfig.from_pretrained(teacher_dir)
    config.num_hidden_layers = 1
    config.save_pretrained(cfg_dir)
    a, _, info_a = load_student(str(cfg_dir), tokenizer_from=teacher_dir, seed=3)
    b, tok_b, _ = load_student(str(cfg_dir), tokenizer_from=teacher_dir, seed=3)
    c, _, _ = load_student(str(cfg_dir), tokenizer_from=teacher_dir, seed=4)
    assert info_a["init"] == "random_from_config" and a.config.num_hidden_layers == 1
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    check_same_vocab(tok, tok_b)
    with pytest.raises(ValueError, match="could not be loaded"):
        load_student(str(tmp_path / "missing"))


def _tokenizer_with(tok, edit) -> PreTrainedTokenizerFast:
    """A copy of ``tok`` whose BPE vocabulary went through ``edit`` (a function of the vocab dict)."""
    from tokenizers import Tokenizer

    data = json.loads(tok.backend_tokenizer.to_str())
    data["model"]["vocab"] = edit(dict(data["model"]["vocab"]))
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), eos_token=tok.eos_token)


def test_check_same_vocab(teacher_dir: str) -> None:
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    assert check_same_vocab(tok, AutoTokenizer.from_pretrained(teacher_dir)) == vocab_sha256(tok)

    by_id = {i: t for t, i in tok.get_vocab().items()}
    a, b = by_id[100], by_id[200]

    def swap(v: dict[str, int]) -> dict[str, int]:
        v[a], v[b] = v[b], v[a]
        return v

    swapped = _tokenizer_with(tok, swap)
    assert len(swapped) == len(tok)
    with pytest.raises(VocabMismatchError) as e:
        check_same_vocab(tok, swapped)
    msg = str(e.value)
    assert repr(a) in msg and repr(b) in msg and f"teacher {len(tok.get_vocab())} tokens" in msg

    bigger = AutoTokenizer.from_pretrained(teacher_dir)
    bigger.add_tokens(["<|tool_call|>"])
    with pytest.raises(VocabMismatchError) as e:
        check_same_vocab(tok, bigger)
    msg = str(e.value)
    assert f"teacher {len(tok)} tokens" in msg and f"student {len(bigger)} tokens" in msg and "<|tool_call|>" in msg
