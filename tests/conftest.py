"""Shared fixtures: a tiny pipeline project (generated demo data at small scale + a tiny random model)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

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
    cfg["distillation"]["recipe"].update(steps=2, batch_size=2, max_seq_len=128)
    cfg["release_gate"]["criteria"] = []  # random tiny models emit no valid JSON: only the no-regression rule
    cfg["mixture"]["token_budget"] = 20000
    for adapter in cfg.get("adapters", {}).values():
        adapter["steps"] = 2
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
