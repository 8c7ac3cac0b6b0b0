"""The one training config: every setting a run uses, as an explicit field, built once from the project's YAML.

A run is configured by a :class:`TrainConfig` — :class:`SFTConfig` for a supervised LoRA fine-tune,
:class:`DistillConfig` for a distilled student. It is built from the project section (``TrainingRecipe`` with
an adapter's overrides, or the ``distillation`` section) by ``from_recipe``, travels unchanged to whichever
launcher runs the job (in the Dagster process or a Pipes subprocess, as JSON), drives the engine, and is
written beside the weights as ``training_config.json``, from where ``TrainConfig.load(dir)`` reads an equal
object back.

Fields are of two kinds. Most decide what is learnt (they are recorded in the run manifest's stable part and
checkpoints must match them); those in ``EXECUTION_FIELDS`` decide only how the run executes (checkpointing,
device, threads) and are recorded under the manifest's volatile ``execution``.

API:
    SFTConfig.from_recipe(recipe, **execution) -> SFTConfig
    DistillConfig.from_recipe(recipe, *, student, mode="logit", **execution) -> DistillConfig
    DistillConfig.sft_baseline() -> DistillConfig        same student, data and steps, kd_ratio 0, mode logit
    config.learnt() -> dict          the fields that decide the weights (JSON)
    config.loop_config(device) -> LoopConfig          its dtype as ``device`` computes it (precision.py)
    config.save(dir) / TrainConfig.load(dir)              training_config.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mixtrain.config.training import DistillRecipe, LoraSpec, SequenceKDSpec, StudentSpec, TrainingRecipe
from training_assets.engine.loop import LoopConfig
from training_assets.engine.precision import compute_dtype

CONFIG_FILE = "training_config.json"

# Fields that change how a run executes, never what it learns.
EXECUTION_FIELDS = (
    "gradient_checkpointing",
    "checkpoint_every",
    "keep_checkpoints",
    "checkpoint_dir",
    "resume",
    "stop_after",
    "device",
    "threads",
    "compile",
)
# The optimisation fields every recipe shares, copied as they are into the config.
_SHARED_FIELDS = (
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "warmup_steps",
    "max_seq_len",
    "seed",
    "dtype",
    "lr_schedule",
    "weight_decay",
    "max_grad_norm",
)
Schedule = Literal["linear", "cosine", "constant_with_warmup"]


class TrainConfig(BaseModel):
    """What every run needs: the optimisation and how the run executes. Subclassed per kind of run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KINDS: ClassVar[dict[str, type[TrainConfig]]] = {}

    kind: str
    # -- optimisation --
    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(gt=0)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    max_seq_len: int = Field(gt=8)
    seed: int
    dtype: Literal["bf16", "fp32"]
    lr_schedule: Schedule
    weight_decay: float = Field(ge=0)
    max_grad_norm: float = Field(ge=0, description="clip the global gradient norm to this (0: no clipping)")
    # -- execution only (EXECUTION_FIELDS) --
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    checkpoint_every: int = Field(0, ge=0, description="save a resumable checkpoint every N steps (0: none)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (newest first)")
    checkpoint_dir: str | None = Field(None, description="where checkpoints go (default: the engine's)")
    resume: bool | None = Field(
        None, description="None: resume from a matching checkpoint if any; True: require one; False: start over"
    )
    stop_after: int | None = Field(None, gt=0, description="stop after this step (checkpointed)")
    device: str | None = Field(None, description="torch device; default cuda > mps > cpu")
    threads: int | None = Field(None, gt=0, description="torch CPU threads (fixes float sums across launchers)")
    compile: bool = Field(False, description="torch.compile the decoder (worth it on GPU for long runs)")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["kind"].default
        if isinstance(default, str):
            TrainConfig.KINDS[default] = cls

    @classmethod
    def parse(cls, data: Mapping[str, Any] | TrainConfig) -> TrainConfig:
        """The config of the kind ``data`` names (``{"kind": "sft", ...}``), validated."""
        if isinstance(data, TrainConfig):
            return data
        kind = data.get("kind")
        if kind not in cls.KINDS:
            raise ValueError(f"training config: field 'kind': expected one of {sorted(cls.KINDS)}, got {kind!r}")
        return cls.KINDS[kind].model_validate(dict(data))

    def learnt(self) -> dict[str, Any]:
        """The fields that decide the weights, as JSON (the run manifest's ``recipe``)."""
        return self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))

    def execution(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in EXECUTION_FIELDS}

    def uses_checkpoints(self) -> bool:
        return (
            self.checkpoint_dir is not None or self.checkpoint_every > 0 or bool(self.resume) or bool(self.stop_after)
        )

    def loop_config(self, device: str) -> LoopConfig:
        """The loop's settings (``loop.LoopConfig``) for this run on ``device``.

        Its ``dtype`` is what ``device`` computes this recipe's ``dtype`` in (``precision.compute_dtype``): fp32
        on a CPU without bf16 kernels, where bf16 autocast makes a LoRA step minutes instead of seconds.
        """
        return LoopConfig(
            steps=self.steps,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            seed=self.seed,
            dtype=compute_dtype(self.dtype, device),
            schedule=self.lr_schedule,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            gradient_checkpointing=self.gradient_checkpointing,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints,
            stop_after=self.stop_after,
            device=device,
            compile=self.compile,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TrainConfig:
        """The config a run wrote beside its weights (``training_config.json``)."""
        path = Path(directory) / CONFIG_FILE
        try:
            return cls.parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError) as e:
            raise ValueError(f"{path}: not a training config: {e}") from e


def _execution(given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(EXECUTION_FIELDS))
    if unknown:
        raise ValueError(f"training config: unknown execution settings {unknown} (known: {list(EXECUTION_FIELDS)})")
    return dict(given)


class SFTConfig(TrainConfig):
    """A LoRA fine-tune of a base model (``train_lora``)."""

    kind: Literal["sft"] = "sft"
    lora: LoraSpec
    packing: bool = Field(description="a micro-batch is batch_size packed rows (<= max_seq_len tokens)")

    @classmethod
    def from_recipe(cls, recipe: TrainingRecipe | Mapping[str, Any], **execution: Any) -> SFTConfig:
        """From the ``training`` section (or an adapter's resolved recipe); ``execution`` overrides its
        execution settings (the recipe's ``base_model`` and ``launcher`` are the caller's, not the run's)."""
        r = recipe if isinstance(recipe, TrainingRecipe) else TrainingRecipe.model_validate(dict(recipe))
        from_recipe = {
            k: getattr(r, k) for k in ("gradient_checkpointing", "checkpoint_every", "keep_checkpoints", "compile")
        }
        fields = {k: getattr(r, k) for k in _SHARED_FIELDS}
        return cls(lora=r.lora, packing=r.packing, **fields, **{**from_recipe, **_execution(execution)})


class DistillConfig(TrainConfig):
    """A student distilled from a teacher (``distill_student``); ``kd_ratio`` 0 is the SFT-only baseline."""

    kind: Literal["distill"] = "distill"
    mode: Literal["logit", "sequence", "both"]
    student: StudentSpec
    loss: Literal["forward_kl", "reverse_kl", "jsd"]
    temperature: float = Field(gt=0)
    kd_ratio: float = Field(ge=0, le=1, description="0 = SFT-only baseline (teacher unused in training)")
    beta: float = Field(gt=0, lt=1, description="jsd only: weight of the teacher in the mixture")
    top_k: int | None = Field(ge=1, description="teacher top-k (None: full logits, on the fly only)")
    teacher_logits: Literal["on_the_fly", "precomputed"]
    sequence: SequenceKDSpec

    @classmethod
    def from_recipe(
        cls,
        recipe: DistillRecipe | Mapping[str, Any],
        *,
        student: StudentSpec | Mapping[str, Any],
        mode: str = "logit",
        **execution: Any,
    ) -> DistillConfig:
        r = recipe if isinstance(recipe, DistillRecipe) else DistillRecipe.model_validate(dict(recipe))
        s = student if isinstance(student, StudentSpec) else StudentSpec.model_validate(dict(student))
        own = ("loss", "temperature", "kd_ratio", "beta", "top_k", "teacher_logits", "sequence")
        fields = {k: getattr(r, k) for k in (*_SHARED_FIELDS, *own)}
        return cls(mode=mode, student=s, **fields, **_execution(execution))

    def sft_baseline(self) -> DistillConfig:
        """The baseline: everything the same but ``kd_ratio = 0`` and gold records only (mode ``logit``)."""
        return self.model_copy(update={"kd_ratio": 0.0, "mode": "logit"})
