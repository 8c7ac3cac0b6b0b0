"""training_assets: the base model, LoRA fine-tunes and distilled students — the training side of mixtrain.

``defs`` and ``build_defs`` are imported lazily so that the engine (``training_assets.engine``) can be used
without loading Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("defs", "build_defs"):  # build_defs: the graph of a project that trains the given students
        from training_assets import definitions

        return getattr(definitions, name)
    raise AttributeError(name)
