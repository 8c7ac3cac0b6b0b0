"""eval_assets: the eval registry, evaluation reports and the release gate.

``defs`` and ``build_defs`` are imported lazily so that the engine (``eval_assets.engine``) can be used without loading
Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("defs", "build_defs"):  # build_defs: the graph of a project that trains the given students
        from eval_assets import definitions

        return getattr(definitions, name)
    raise AttributeError(name)
