"""The models an evaluation runs and compares: the base, the trained candidates, and how each is loaded.

``CANDIDATES`` is the one list of trained models that ``eval_report`` evaluates against the base, that
``eval_comparison`` compares and that ``released_model`` may promote, less the students of a project without
distillation (``project_candidates``); each is named by its asset key, which is also its label in the report, the
comparison and the release gate. A task adapter is evaluated in its own
partition (``task_adapter_eval``) under ``adapter_label``.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixtrain.config.training import STUDENT_MODELS
from mixtrain.identity import resolve_relative

BASELINE = "base"
# A task adapter's label in metadata keys, the same in every partition (the partition names the adapter).
ADAPTER_LABEL = "adapter"


@dataclass(frozen=True)
class Candidate:
    name: str  # the trained model's asset key and its label in the report
    on_base: bool  # an adapter loaded on the base model's weights; else a model directory of its own


CANDIDATES = (
    Candidate("sft_adapter", on_base=True),
    Candidate("distilled_student", on_base=False),
    Candidate("student_sft_baseline", on_base=False),
)


def project_candidates(students: Collection[str]) -> tuple[Candidate, ...]:
    """``CANDIDATES`` less the students a project does not train (``ProjectSpec.student_models``): without a
    distillation section only the SFT adapter is evaluated, compared and may be released."""
    return tuple(c for c in CANDIDATES if c.name not in STUDENT_MODELS or c.name in students)


# label -> (base model directory, adapter directory or None), the form ``iter_candidates`` loads
ModelDirs = dict[str, tuple[str, str | None]]


def adapter_label(adapter_id: str) -> str:
    return f"task_adapter[{adapter_id}]"


def base_identity(base_model: Mapping[str, Any]) -> dict[str, Any]:
    return {"weights_sha256": base_model["weights_sha256"]}


def trained_identity(model: Mapping[str, Any]) -> dict[str, Any]:
    """What names a trained model in an evaluation's record: its version, weights and data (and, for a task
    adapter, the slice of the data it read)."""
    manifest = model["run_manifest"]
    identity = {
        "version": model.get("version"),
        "weights_sha256": manifest["output_weights_sha256"],
        "data_manifest_id": manifest["data_manifest_id"],
    }
    return identity | ({"data_filter": model["data_filter"]} if "data_filter" in model else {})


def base_only(base_model: Mapping[str, Any], storage_root: str) -> tuple[ModelDirs, dict[str, Any]]:
    """The base alone: its directory (resolved against ``storage_root``) and its identity for the record; the
    first entry of every other model set here."""
    return {BASELINE: (resolve_relative(base_model["path"], storage_root), None)}, {BASELINE: base_identity(base_model)}


def candidate_models(
    base_model: Mapping[str, Any],
    candidates: Sequence[Candidate],
    trained: Mapping[str, Mapping[str, Any]],
    storage_root: str,
) -> tuple[ModelDirs, dict[str, Any]]:
    """The base and every one of ``candidates`` (``trained``: asset key -> the trained model's JSON), in that
    order: their directories (the records name them relative to ``storage_root``) and their identities for the
    record."""
    dirs, identities = base_only(base_model, storage_root)
    base = dirs[BASELINE][0]
    for c in candidates:
        model = resolve_relative(trained[c.name]["path"], storage_root)
        dirs[c.name] = (base, model) if c.on_base else (model, None)
    return dirs, identities | {c.name: trained_identity(trained[c.name]) for c in candidates}


def adapter_models(
    base_model: Mapping[str, Any], adapter_id: str, adapter: Mapping[str, Any], storage_root: str
) -> tuple[ModelDirs, dict[str, Any]]:
    """The base and one task adapter on it: their directories (resolved against ``storage_root``) and their
    identities for the record."""
    label = adapter_label(adapter_id)
    dirs, identities = base_only(base_model, storage_root)
    dirs[label] = (dirs[BASELINE][0], resolve_relative(adapter["path"], storage_root))
    return dirs, identities | {label: trained_identity(adapter)}


def iter_candidates(
    candidates: Mapping[str, tuple[str, str | None]], *, dtype: str = "bf16"
) -> Iterator[tuple[str, Any, Any, Exception | None]]:
    """``(label, model, tokenizer, None)`` per candidate in order, or ``(label, None, None, error)`` when one
    cannot be loaded, so a broken candidate is reported instead of ending the run.

    Candidates on the same base share one read of its weights (a copy per candidate but the last), so a base +
    adapter comparison loads the base once. Each model is dropped before the next is loaded.
    """
    from training_assets.engine.loading import load_base_weights, load_for_inference, needs_base_weights

    uses_left = Counter(base for base, adapter in candidates.values() if needs_base_weights(adapter))
    bases: dict[str, Any] = {}
    for label, (base_dir, adapter_dir) in candidates.items():
        base = None
        try:
            if needs_base_weights(adapter_dir):
                uses_left[base_dir] -= 1
                if base_dir not in bases:
                    bases[base_dir] = load_base_weights(base_dir)
                base = bases.pop(base_dir) if uses_left[base_dir] == 0 else copy.deepcopy(bases[base_dir])
            model, tokenizer = load_for_inference(base_dir, adapter_dir, dtype, base_model=base)
        except Exception as e:  # a missing or corrupt model directory is one candidate's problem
            yield label, None, None, e
            continue
        yield label, model, tokenizer, None
        del model, base
