"""The user's pipeline project: a directory of YAML, validated with pydantic.

Layout of a project directory::

    mixtrain.yaml        storage, eval sets, the mixture, the training recipe, the release gate
    sources/<id>.yaml    one source per file, so that dropping a file in adds a partition
    reviews/<id>/*.csv   verdicts recorded by `mixtrain review apply` (human decisions, versioned with the project)

Every validation error names the file, the dotted field path and its line, echoes the bad value (masked where
it may be a secret) and suggests the closest valid name (:mod:`mixtrain.config.errors`), because the person
fixing it is looking at the YAML, not at the model classes.
"""

from __future__ import annotations

import glob
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from mixtrain.config.base import ProjectError, ProjectNotFoundError, Strict
from mixtrain.config.compute import ComputeConfig
from mixtrain.config.data import DedupeSpec, MixtureSpec, ScreenSpec, SourceSpec
from mixtrain.config.errors import LineMap, format_validation_error, line_of, load_with_lines, suggest
from mixtrain.config.evaluation import (
    BUILT_IN_SUITES,
    BUILT_IN_TASKS,
    EVAL_TASKS_GROUP,
    EvalSetSpec,
    EvalSpec,
    ReleaseGateSpec,
)
from mixtrain.config.plugins import entry_point_names
from mixtrain.config.training import STUDENT_MODELS, AdapterSpec, DistillationSpec, TrainingRecipe
from mixtrain.config.ui import DagsterSection

PROJECT_FILE = "mixtrain.yaml"
SOURCES_DIR = "sources"
REVIEWS_DIR = "reviews"
PROJECT_ENV = "MIXTRAIN_PROJECT"

__all__ = ["PROJECT_ENV", "Project", "ProjectError", "ProjectNotFoundError", "ProjectSpec", "load_project"]


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
    distillation: DistillationSpec | None = Field(
        None, description="the student stage; left out (or null), no student is trained or evaluated"
    )
    evaluation: EvalSpec = EvalSpec()
    release_gate: ReleaseGateSpec
    dagster: DagsterSection = DagsterSection()

    def student_models(self) -> tuple[str, ...]:
        """The student assets the project trains: none without a distillation section. The code location's graph
        is built from this, so that evaluation never depends on a model nobody asked for."""
        return () if self.distillation is None else self.distillation.models()


def _load_yaml(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The file's data and the line of every key in it (for messages that point into the file)."""
    if not path.is_file():
        raise ProjectError(f"{path}: file not found")
    try:
        return load_with_lines(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProjectError(f"{path}: not valid YAML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{path}: cannot be read: {e}") from e


def _validate(model: type[BaseModel], loaded: tuple[Any, LineMap], path: Path) -> Any:
    data, lines = loaded
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ProjectError(format_validation_error(path, e, model, lines)) from None


class Project:
    """A loaded, validated project directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.file = self.root / PROJECT_FILE
        if not self.file.is_file():
            what = "no such directory" if not self.root.exists() else f"no {PROJECT_FILE} in it"
            start = f"`mixtrain init {self.root}` writes a starter project there"
            raise ProjectNotFoundError(f"{self.file}: file not found ({self.root}: {what}; {start})")
        loaded = _load_yaml(self.file)
        self._lines = loaded[1]
        self.spec: ProjectSpec = _validate(ProjectSpec, loaded, self.file)
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

    def _bad(self, field: str, message: str) -> ProjectError:
        """A cross-reference error in mixtrain.yaml, pointing at the field's line."""
        line = line_of(self._lines, field.split("."))
        return ProjectError(f"{self.file}: field '{field}': {message}" + (f" (line {line})" if line else ""))

    def _unknown_sources(self, field: str, ids: list[str]) -> ProjectError | None:
        unknown = sorted(set(ids) - set(self.sources))
        if not unknown:
            return None
        return self._bad(field, f"unknown source ids {unknown}{suggest(unknown[0], self.sources)}")

    def _check_references(self) -> None:
        mixture = self.spec.mixture
        for field, ids in mixture.source_references().items():
            if err := self._unknown_sources(f"mixture.{field}", ids):
                raise err
        domains = {s.domain for s in self.sources.values()}
        for field, names in mixture.domain_references().items():
            unknown = sorted(set(names) - domains)
            if unknown:
                raise self._bad(f"mixture.{field}", f"no source has domain(s) {unknown}; known {sorted(domains)}")
        dedupe = self.spec.dedupe
        if err := self._unknown_sources("dedupe.source_threshold", list(dedupe.source_threshold)):
            raise err
        for field, names, known in (
            ("dedupe.domain_threshold", dedupe.domain_threshold, domains),
            ("dedupe.max_per_cluster", dedupe.max_per_cluster, domains | set(self.sources)),
        ):
            unknown = sorted(set(names) - known)
            if unknown:
                raise self._bad(field, f"no source or domain {unknown}{suggest(unknown[0], known)}")
        ids = {e.id for e in self.spec.eval_sets}
        gate = self.spec.release_gate
        if gate.eval_set not in ids:
            raise self._bad(
                "release_gate.eval_set", f"'{gate.eval_set}' is not in eval_sets{suggest(gate.eval_set, ids)}"
            )
        trained = ("sft_adapter", *self.spec.student_models())
        if gate.candidate not in trained:
            hint = (
                " (students are trained only with a distillation section)" if gate.candidate in STUDENT_MODELS else ""
            )
            raise self._bad(
                "release_gate.candidate",
                f"'{gate.candidate}' is not a model this project trains{suggest(gate.candidate, trained)}; "
                f"one of {list(trained)}{hint}",
            )
        for i, c in enumerate(gate.criteria):
            if c.eval_set is not None and c.eval_set not in ids:
                raise self._bad(
                    f"release_gate.criteria.{i}.eval_set",
                    f"'{c.eval_set}' is not in eval_sets{suggest(c.eval_set, ids)}",
                )
        for i, e in enumerate(self.spec.eval_sets):
            if e.type == "jsonl" and not e.path:
                raise self._bad(f"eval_sets.{i}.path", "required for type jsonl")
        for aid, adapter in self.spec.adapters.items():
            if err := self._unknown_sources(f"adapters.{aid}.sources", adapter.sources):
                raise err
            unknown = sorted(set(adapter.domains) - domains)
            if unknown:
                raise self._bad(
                    f"adapters.{aid}.domains", f"no source has domain(s) {unknown}; known {sorted(domains)}"
                )
        suites = self.spec.evaluation.suites
        if "perplexity" in suites and mixture.heldout_docs == 0:
            raise self._bad(
                "evaluation.suites",
                "perplexity scores held-out documents, but 'mixture.heldout_docs' is 0 (set aside a few documents "
                "per source)",
            )
        if "tool_calls" in suites and not any(e.task == "tool_calls" for e in self.spec.eval_sets):
            raise self._bad("evaluation.suites", "tool_calls needs an eval set with task tool_calls")
        self._check_tasks()

    def _check_tasks(self) -> None:
        """Every eval set's task is built in or a plugin task, and every plugin task run has items to score."""
        known = [*BUILT_IN_TASKS, *self.spec.evaluation.tasks]
        if any(e.task not in known for e in self.spec.eval_sets):  # installed tasks only when needed (~50 ms)
            known += entry_point_names(EVAL_TASKS_GROUP)
        for i, e in enumerate(self.spec.eval_sets):
            if e.task not in known:
                raise self._bad(
                    f"eval_sets.{i}.task",
                    f"unknown task '{e.task}'{suggest(e.task, known)} (known: {', '.join(known)}; a plugin task is "
                    f"named in evaluation.tasks or installed as a '{EVAL_TASKS_GROUP}' entry point)",
                )
        for name in self.spec.evaluation.suites:  # a name that is not built in is a plugin task's (EvalSpec checks)
            if name not in BUILT_IN_SUITES and not any(e.task == name for e in self.spec.eval_sets):
                raise self._bad("evaluation.suites", f"{name} needs an eval set with task {name}")

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
