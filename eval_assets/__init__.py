"""eval_assets: the eval registry, evaluation reports and the release gate.

``defs`` is imported lazily so that the engine (``eval_assets.engine``) can be used without loading Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from eval_assets.definitions import defs

        return defs
    raise AttributeError(name)
