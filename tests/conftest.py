"""Shared fixtures: a tiny pipeline project (generated demo data at small scale + a tiny random model)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.s3_server import s3_endpoint  # noqa: F401  (a fixture: moto S3 on 127.0.0.1)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"


def _demo_generator():
    spec = importlib.util.spec_from_file_location("mixtrain_demo_generate", DEMO / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from training_assets.engine.tiny import make_tiny_model

    out = tmp_path_factory.mktemp("tiny_model") / "model"
    make_tiny_model(str(out))
    return out


def build_tiny_project(root: Path, model_dir: Path) -> Path:
    """The demo project's sources and config, shrunk: small data, tiny model, 2 training steps."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO / "sources", root / "sources")
    _demo_generator().generate(root, "small")
    cfg = yaml.safe_load((DEMO / "mixtrain.yaml").read_text())
    cfg["training"].update(base_model=str(model_dir), steps=2, batch_size=2, max_seq_len=128)
    cfg["evaluation"].update(limit=3, max_new_tokens=8)
    # every suite (the demo runs the cheap ones): cheap on the tiny model
    cfg["evaluation"]["suites"] = ["structured", "tool_calls", "sentinel", "calibration", "perplexity"]
    cfg["distillation"]["recipe"].update(steps=2, batch_size=2, max_seq_len=128)
    if "drop_layers" in cfg["distillation"]["student"]:  # the tiny model has 2 layers
        cfg["distillation"]["student"]["drop_layers"] = 1
    cfg["release_gate"]["criteria"] = []  # random tiny models emit no valid JSON: only the no-regression rule
    cfg["release_gate"]["max_truncated_share"] = 1.0  # nor do they end a turn: every output runs to max_new_tokens
    cfg["mixture"]["token_budget"] = 20000
    # The demo trains one adapter and one student for time; the tiny project keeps a task-only adapter beside it
    # (partition tests add, edit and delete adapters) and the SFT-only baseline student.
    task_only = {
        "description": "the task alone, no regulariser documents, a smaller rank",
        "sources": ["signature_sft"],
        "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    }
    cfg["adapters"] = {"signature-only": task_only, **cfg["adapters"]}
    cfg["distillation"].pop("sft_baseline", None)
    for adapter in cfg.get("adapters", {}).values():
        adapter["steps"] = 2
        adapter.pop("max_seq_len", None)  # the training section's 128 and 2, whatever the demo gives an adapter
        adapter.pop("batch_size", None)
        if adapter.get("sources") == ["signature_sft"]:  # task chats only: at 128 tokens no answer survives
            adapter["max_seq_len"] = 2048
    for e in cfg["eval_sets"]:
        if e["type"] == "humaneval":
            e["limit"] = 20
    (root / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.fixture
def project_dir(tmp_path) -> Path:
    """A copy of the demo project's config and source specs, without data: for validation tests."""
    shutil.copy(DEMO / "mixtrain.yaml", tmp_path / "mixtrain.yaml")
    shutil.copytree(DEMO / "sources", tmp_path / "sources")
    return tmp_path


@pytest.fixture
def tiny_project(tmp_path, tiny_model_dir) -> Path:
    return build_tiny_project(tmp_path / "project", tiny_model_dir)


# -- training engine helpers (packing, flat batches, SFT, distillation tests) ------------------------------


def make_examples(lengths: list[int], seed: int = 0, vocab: int = 500) -> list[dict]:
    """Random token examples of the given lengths, about 60% of positions labelled."""
    import random

    from training_assets.engine.examples import IGNORE_INDEX

    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        labels = [t if rng.random() < 0.6 else IGNORE_INDEX for t in ids]
        out.append({"input_ids": ids, "labels": labels})
    return out


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def attention_model(request, tiny_model_dir: Path):
    """The tiny model in eval mode, once per attention implementation."""
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), dtype=torch.float32, attn_implementation=request.param
    )
    return m.eval()


def alone_logits(model, ids: list[int]):
    """A document's logits when it runs alone."""
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def moved_lora_model(model_dir: Path):
    """The tiny model under a LoRA adapter whose weights are moved off their init (B starts at zero, which
    would leave the logits unchanged)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    return model


def tiny_recipe(**overrides) -> dict:
    """A small fp32 LoRA recipe for the tiny model (``TrainingRecipe`` fields)."""
    recipe = {
        "base_model": "tiny",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "merge": False},
        "steps": 4,
        "batch_size": 2,
        "grad_accum": 1,
        "lr": 5e-2,
        "warmup_steps": 1,
        "max_seq_len": 64,
        "seed": 0,
        "dtype": "fp32",
    }
    return {**recipe, **overrides}


def make_teacher(path: str, layers: int = 4, seed: int = 0) -> str:
    """The tiny model of ``tiny.py`` (its tokenizer and sizes), rebuilt with ``layers`` decoder layers."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from training_assets.engine.tiny import make_tiny_model

    make_tiny_model(path, seed=seed)
    config = AutoConfig.from_pretrained(path)
    config.num_hidden_layers = layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny 4-layer teacher."""
    return make_teacher(str(tmp_path_factory.mktemp("teacher") / "t"))


@pytest.fixture(scope="session")
def pipeline_session(tmp_path_factory, tiny_model_dir):
    """One run of the whole graph on a tiny project, shared by test_pipeline.py and test_pipeline_reruns.py."""
    from tests.pipeline_session import Session

    return Session.first_run(build_tiny_project(tmp_path_factory.mktemp("pipeline") / "project", tiny_model_dir))


# Modules that share the session's first pipeline run: one xdist worker takes them all, so it runs once.
SHARES_PIPELINE_SESSION = ("test_pipeline", "test_pipeline_conventions")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``make test``'s two workers (``--dist loadgroup``), each module's tests stay on one worker (its
    module fixtures are built once) and the modules that share ``pipeline_session`` stay together."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            name = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
            group = "pipeline_session" if name in SHARES_PIPELINE_SESSION else name
            item.add_marker(pytest.mark.xdist_group(group))
