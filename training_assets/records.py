"""The records of models: what the ``base_model`` asset outputs (:class:`BaseModelRecord`), and what the
``sft_adapter``, ``task_adapter``, ``distilled_student`` and ``student_sft_baseline`` assets output
(:class:`ModelRecord`, as JSON), keep in the model history, and hand to evaluation.

Words, as used across training: the *run manifest* is what the engine wrote beside the weights
(``run_manifest.json``: config, seeds, data, curves, output weights hash); the *mixture manifest* is the data
stage's record of the mixture a model trained on; a *model record* (this) is the asset's output, which holds
the run manifest. Dagster-free and torch-free, so evaluation and tooling can import it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class BaseModelRecord(TypedDict):
    location: str  # where it is published (== path on local storage)
    requested: str  # training.base_model as the project names it
    revision: NotRequired[str | None]  # training.base_model_revision: the Hub commit a Hub id was loaded at
    source: str  # how it was read: "gguf:<file>", "local:<dir>" or "hub:<id>@<revision>"
    path: str  # the local save_pretrained directory
    architecture: str
    n_params: int
    dtype: str
    weights_sha256: str  # the data version
    vocab_size: int
    has_chat_template: bool
    version: NotRequired[str]  # its directory under base_model/ (the weights hash, 16 hex digits)
    tokenizer_sha256: NotRequired[str | None]  # hash of the tokenizer files (mixtrain.model_store)


class BasePin(TypedDict):
    """The base an adapter was trained on, as published: what a release pins so a rollback restores the pair."""

    key: list[str]
    version: str | None
    location: str
    weights_sha256: str
    tokenizer_sha256: str | None


class TeacherRef(TypedDict):
    base_model_path: str
    adapter_path: str


class ModelRecord(TypedDict):
    version: str  # hash of everything that made the model; also its directory name
    path: str  # the local save_pretrained directory (weights, tokenizer, training_config.json, run_manifest.json)
    location: str  # where it is published (== path on local storage)
    run_manifest: dict[str, Any]  # the engine's run manifest; its output_weights_sha256 is the data version
    key: NotRequired[list[str]]  # the storage key it is published under (its versions and _current.json)
    tokenizer_sha256: NotRequired[str | None]  # hash of the tokenizer files it carries (None: uses the base's)
    base: NotRequired[BasePin]  # adapters: the published base they apply to
    base_model_path: NotRequired[str]  # adapters: the base they apply to
    merged: NotRequired[bool]  # adapters: merged into the base (a full model) or a LoRA adapter
    data_filter: NotRequired[dict[str, list[str]]]  # task adapters: the part of the mixture they trained on
    teacher: NotRequired[TeacherRef]  # students: the teacher they were distilled from


def weights_sha256_of(record: ModelRecord) -> str:
    """The trained weights' hash, as the engine computed it when it wrote them."""
    return record["run_manifest"]["output_weights_sha256"]
