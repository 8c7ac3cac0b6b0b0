"""training_assets: the base model, LoRA fine-tunes and distilled students — the training side of mixtrain.

``defs`` is imported lazily so that the engine (``training_assets.engine``) can be used without loading Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from training_assets.definitions import defs

        return defs
    raise AttributeError(name)
