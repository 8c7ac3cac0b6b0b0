"""The user's pipeline project: a directory of YAML, validated with pydantic.

Layout of a project directory::

    mixtrain.yaml        storage, eval sets, the mixture, the training recipe, the release gate
    sources/<id>.yaml    one source per file, so that dropping a file in adds a partition
    reviews/<id>/*.csv   verdicts recorded by `mixtrain review apply` (human decisions, versioned with the project)

Every validation error names the file and the dotted field path, because the person fixing it is
looking at the YAML, not at the model classes.
"""

from __future__ import annotations

import glob
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from mixtrain.config.base import ProjectError, Strict
from mixtrain.config.compute import ComputeConfig
from mixtrain.config.data import DedupeSpec, MixtureSpec, ScreenSpec, SourceSpec
from mixtrain.config.evaluation import EvalSetSpec, EvalSpec, ReleaseGateSpec
from mixtrain.config.training import AdapterSpec, DistillationSpec, TrainingRecipe

PROJECT_FILE = "mixtrain.yaml"
SOURCES_DIR = "sources"
REVIEWS_DIR = "reviews"
PROJECT_ENV = "MIXTRAIN_PROJECT"

__all__ = ["PROJECT_ENV", "Project", "ProjectError", "ProjectSpec", "load_project"]


class ProjectSpec(Strict):
    name: str
    storage_root: str = Field("storage", description="local path (relative to the project) or fsspec URL")
    dagster_home: str = ".dagster"
    forbidden_license_tags: list[str] = Field(
        default_factory=list, description="rights tags that may not even enter the gated corpus"
    )
    compute: ComputeConfig = ComputeConfig()
    dedupe: DedupeSpec = DedupeSpec()
    screen: ScreenSpec = ScreenSpec()
    eval_sets: list[EvalSetSpec] = []
    mixture: MixtureSpec
    training: TrainingRecipe = TrainingRecipe()
    adapters: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")], AdapterSpec] = Field(
        {}, description="more LoRA adapters over the same base, each a partition of task_adapter"
    )
    distillation: DistillationSpec = DistillationSpec()
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
            safety = src.gating.safety
            if safety.classifier_path is not None:  # a model dir beside the project, wherever the run starts
                safety = safety.model_copy(update={"classifier_path": self.resolve(safety.classifier_path)})
                src = src.model_copy(update={"gating": src.gating.model_copy(update={"safety": safety})})
            self.sources[src.id] = src
            self.source_files[src.id] = f
        self._check_references()

    def _check_references(self) -> None:
        mixture = self.spec.mixture
        for field, ids in mixture.source_references().items():
            unknown = sorted(set(ids) - set(self.sources))
            if unknown:
                raise ProjectError(f"{self.file}: field 'mixture.{field}': unknown source ids {unknown}")
        domains = {s.domain for s in self.sources.values()}
        for field, names in mixture.domain_references().items():
            unknown = sorted(set(names) - domains)
            if unknown:
                raise ProjectError(
                    f"{self.file}: field 'mixture.{field}': no source has domain(s) {unknown}; known {sorted(domains)}"
                )
        ids = {e.id for e in self.spec.eval_sets}
        if self.spec.release_gate.eval_set not in ids:
            raise ProjectError(
                f"{self.file}: field 'release_gate.eval_set': '{self.spec.release_gate.eval_set}' is not in eval_sets"
            )
        for i, e in enumerate(self.spec.eval_sets):
            if e.type == "jsonl" and not e.path:
                raise ProjectError(f"{self.file}: field 'eval_sets.{i}.path': required for type jsonl")
        for aid, adapter in self.spec.adapters.items():
            unknown = sorted(set(adapter.sources) - set(self.sources))
            if unknown:
                raise ProjectError(f"{self.file}: field 'adapters.{aid}.sources': unknown source ids {unknown}")
            unknown = sorted(set(adapter.domains) - domains)
            if unknown:
                raise ProjectError(
                    f"{self.file}: field 'adapters.{aid}.domains': no source has domain(s) {unknown}; "
                    f"known {sorted(domains)}"
                )
        suites = self.spec.evaluation.suites
        if "perplexity" in suites and mixture.heldout_docs == 0:
            raise ProjectError(
                f"{self.file}: field 'evaluation.suites': perplexity scores held-out documents, but "
                "'mixture.heldout_docs' is 0 (set aside a few documents per source)"
            )
        if "tool_calls" in suites and not any(e.task == "tool_calls" for e in self.spec.eval_sets):
            raise ProjectError(
                f"{self.file}: field 'evaluation.suites': tool_calls needs an eval set with task tool_calls"
            )

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

    def review_dir(self, source_id: str) -> Path:
        """Where human review verdicts for a source are recorded (one CSV per applied sheet)."""
        return self.root / REVIEWS_DIR / source_id

    def review_sheets(self, source_id: str) -> list[Path]:
        return sorted(self.review_dir(source_id).glob("*.csv"))

    def eval_set(self, eval_id: str) -> EvalSetSpec:
        for e in self.spec.eval_sets:
            if e.id == eval_id:
                return e
        raise KeyError(eval_id)

    def source_ids(self) -> list[str]:
        return sorted(self.sources)

    def adapter_ids(self) -> list[str]:
        return sorted(self.spec.adapters)


def load_project(root: str | os.PathLike[str] | None = None) -> Project:
    return Project(root or os.environ.get(PROJECT_ENV, "."))
