"""Student models for distillation: a layer subset of the teacher, or any Hugging Face causal LM.

The subset is a stride (``keep_every``), a list (``layers``), or the teacher less its ``drop_layers`` least
influential layers, scored by ``block_influence`` on sample data.

A layer-subset student (as in DistilBERT) starts from the teacher's own weights — embeddings, final norm, LM
head and a chosen set of decoder layers — so it begins close to the teacher rather than from noise, and shares
its tokenizer by construction. Any other student must share the teacher's vocabulary *by id*: logit
distillation compares distributions index by index, so two tokenizers of equal size that number tokens
differently would train the student towards the wrong tokens without any error. ``check_same_vocab`` catches that.
"""

from __future__ import annotations

import os
import re
from typing import Any

from mixtrain.identity import vocab_sha256, weights_sha256
from training_assets.engine.base_model import atomic_directory

_LAYER_KEY = re.compile(r"^(.*\.layers\.)(\d+)(\..*)$")


class VocabMismatchError(ValueError):
    """Teacher and student tokenizers do not map the same strings to the same ids."""


def _vocab(tokenizer: Any) -> dict[str, int]:
    # get_vocab() includes added tokens; len(tokenizer) can exceed its size when ids have holes, so both count.
    return dict(tokenizer.get_vocab())


def check_same_vocab(teacher_tok: Any, student_tok: Any, *, show: int = 5) -> str:
    """Raise ``VocabMismatchError`` unless both tokenizers have the same token -> id map; return its hash.

    The message names both sizes and up to ``show`` tokens that differ, with their id on each side, so a
    mismatch can be diagnosed without opening the tokenizer files.
    """
    tv, sv = _vocab(teacher_tok), _vocab(student_tok)
    if tv == sv and len(teacher_tok) == len(student_tok):
        return vocab_sha256(teacher_tok)
    diffs: list[str] = []
    for token in sorted(set(tv) | set(sv), key=lambda t: (min(tv.get(t, 1 << 62), sv.get(t, 1 << 62)), t)):
        if tv.get(token) != sv.get(token):
            diffs.append(f"{token!r}: teacher id {tv.get(token)}, student id {sv.get(token)}")
            if len(diffs) >= show:
                break
    raise VocabMismatchError(
        f"teacher and student vocabularies differ (teacher {len(tv)} tokens / len {len(teacher_tok)}, "
        f"student {len(sv)} tokens / len {len(student_tok)}); logit distillation needs identical token ids. "
        f"First differences: {'; '.join(diffs) if diffs else 'none in the maps; the tokenizer lengths differ'}"
    )


def _decoder_layers(model: Any) -> Any:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(model).__name__} has no model.layers: layer-subset students need a Llama-family decoder "
            "(LlamaForCausalLM, Qwen2, Mistral, ...)"
        )
    return layers


def choose_layers(n_layers: int, *, keep_every: int | None = None, layers: list[int] | None = None) -> list[int]:
    """The teacher layer indices to keep: ``layers`` as given, or ``0, k, 2k, ...`` for ``keep_every=k``."""
    if (keep_every is None) == (layers is None):
        raise ValueError("give exactly one of keep_every or layers")
    if keep_every is not None:
        if keep_every < 1:
            raise ValueError(f"keep_every must be >= 1, got {keep_every}")
        chosen = list(range(0, n_layers, keep_every))
    else:
        assert layers is not None
        chosen = list(layers)
        bad = [i for i in chosen if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range: the teacher has {n_layers} layers (0..{n_layers - 1})")
        if not chosen:
            raise ValueError("layers must not be empty")
        if sorted(set(chosen)) != chosen:
            raise ValueError(f"layers must be strictly increasing (each teacher layer at most once), got {chosen}")
    return chosen


def block_influence(
    model: Any, examples: list[dict[str, list[int]]], *, pad_id: int, batch_size: int = 4
) -> list[float]:
    """Per decoder layer, ``1 - cos(input, output)`` of its hidden state, averaged over the real tokens of
    ``examples`` (ShortGPT's block influence, Men et al., 2024).

    A layer whose output points where its input did mostly rescales the residual stream, so removing it changes
    the model least; uniform strides (``keep_every``) ignore that and cut layers the model leans on. Measured in
    float32 without autocast, in eval mode, on the model that will be cut (the teacher with its adapter merged).
    """
    import torch

    from training_assets.engine.packing import pad_collate

    if not examples:
        raise ValueError("block influence needs at least one example")
    layers = _decoder_layers(model)
    sums = [0.0] * len(layers)
    tokens = 0
    captured: dict[int, Any] = {}
    inputs: dict[int, Any] = {}

    def before(i: int) -> Any:
        def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def after(i: int) -> Any:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            captured[i] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [layer.register_forward_pre_hook(before(i), with_kwargs=True) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            for start in range(0, len(examples), batch_size):
                batch = pad_collate(examples[start : start + batch_size], pad_id, device)
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                real = batch["attention_mask"].bool()
                for i in range(len(layers)):
                    cos = torch.nn.functional.cosine_similarity(inputs[i].float(), captured[i].float(), dim=-1)
                    sums[i] += float((1.0 - cos)[real].sum())
                tokens += int(real.sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [v / tokens for v in sums]


def least_influential(scores: list[float], drop: int) -> list[int]:
    """The layers to keep after dropping the ``drop`` lowest-influence ones (ties: the later layer goes first)."""
    if not 1 <= drop < len(scores):
        raise ValueError(
            f"drop_layers must be between 1 and {len(scores) - 1} (the teacher has {len(scores)}), got {drop}"
        )
    dropped = set(sorted(range(len(scores)), key=lambda i: (scores[i], -i))[:drop])
    return [i for i in range(len(scores)) if i not in dropped]


def build_layer_subset(teacher: Any, layers: list[int]) -> Any:
    """A new model of the teacher's class with only ``layers`` (in order); every weight copied from the teacher."""
    import copy

    import torch

    n = len(_decoder_layers(teacher))
    chosen = choose_layers(n, layers=layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(chosen)
    # Some families (Qwen2, Gemma) describe each layer (sliding vs full attention); keep the chosen layers' entries.
    for attr in ("layer_types",):
        value = getattr(config, attr, None)
        if isinstance(value, list) and len(value) == n:
            setattr(config, attr, [value[i] for i in chosen])
    with torch.random.fork_rng(devices=[]):  # the init is overwritten; do not consume the caller's RNG
        student = type(teacher)(config)
    new_index = {old: new for new, old in enumerate(chosen)}
    state: dict[str, Any] = {}
    for key, value in teacher.state_dict().items():
        m = _LAYER_KEY.match(key)
        if m is None:
            state[key] = value
        elif int(m.group(2)) in new_index:
            state[f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}"] = value
    missing, unexpected = student.load_state_dict(state, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(
            f"layer subset does not fit {type(teacher).__name__}: missing={missing}, unexpected={unexpected}"
        )
    if tied:
        student.tie_weights()
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student.to(dtype=next(teacher.parameters()).dtype)


def layer_subset_student(
    teacher_dir: str, out_dir: str, *, keep_every: int | None = None, layers: list[int] | None = None
) -> dict[str, Any]:
    """Write a layer-subset student of ``teacher_dir`` (weights + the teacher's tokenizer) to ``out_dir`` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(teacher_dir):
        raise FileNotFoundError(f"teacher_dir {teacher_dir} is not a directory")
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    chosen = choose_layers(len(_decoder_layers(teacher)), keep_every=keep_every, layers=layers)
    student = build_layer_subset(teacher, chosen)
    with atomic_directory(out_dir) as tmp:
        student.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        digest = weights_sha256(tmp)
    return {
        "init": "layer_subset",
        "path": os.path.abspath(out_dir),
        "teacher_path": os.path.abspath(teacher_dir),
        "teacher_layers": len(_decoder_layers(teacher)),
        "kept_layers": chosen,
        "n_params": sum(p.numel() for p in student.parameters()),
        "teacher_n_params": sum(p.numel() for p in teacher.parameters()),
        "weights_sha256": digest,
    }


def _has_weights(path: str) -> bool:
    return any(f.endswith((".safetensors", ".bin")) for f in os.listdir(path))


def load_student(
    name_or_path: str, *, tokenizer_from: str | None = None, seed: int = 0, revision: str | None = None
) -> tuple[Any, Any, dict]:
    """``(model, tokenizer, info)`` for a student given as a model directory, a config-only directory, or a Hub id.

    A directory holding only ``config.json`` gives a randomly initialised model (seeded, so reproducible) —
    the way to distil into an architecture no checkpoint exists for. The tokenizer comes from
    ``tokenizer_from`` when given (typically the teacher's directory), else from ``name_or_path``. Hub ids
    resolve only from the local Hugging Face cache when there is no network, and only at a pinned ``revision``
    (a commit sha: the same config then gives the same student everywhere).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    local = os.path.isdir(name_or_path)
    # A missing path is a load error below, not a Hub id.
    hub = not local and not (os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")))
    if hub and revision is None:
        raise ValueError(
            f"student {name_or_path!r} is not a local directory, so it is a Hub id: set distillation.student.revision "
            "to the commit sha to load (40 hex digits)"
        )
    if not hub and revision is not None:
        raise ValueError(f"distillation.student.revision is set but student {name_or_path!r} is not a Hub id")
    info: dict[str, Any] = {"source": f"{name_or_path}@{revision}" if hub else name_or_path}
    try:
        if local and not _has_weights(name_or_path):
            config = AutoConfig.from_pretrained(name_or_path)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            info.update(init="random_from_config", seed=seed)
        else:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, revision=revision)
            info["init"] = "pretrained"
            if os.path.isdir(name_or_path) and any(f.endswith(".safetensors") for f in os.listdir(name_or_path)):
                info["weights_sha256"] = weights_sha256(name_or_path)
        tokenizer = (
            AutoTokenizer.from_pretrained(tokenizer_from)
            if tokenizer_from
            else AutoTokenizer.from_pretrained(name_or_path, revision=revision)
        )
    except (OSError, ValueError) as e:
        raise ValueError(
            f"student {name_or_path!r} could not be loaded (expected a save_pretrained directory, a directory with "
            f"config.json, or a Hub id in the local cache): {e}"
        ) from e
    info["n_params"] = sum(p.numel() for p in model.parameters())
    return model, tokenizer, info
