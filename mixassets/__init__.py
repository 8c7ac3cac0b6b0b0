"""mixassets: sources, gating, curation and mixtures — the data side of mixtrain.

``defs`` is imported lazily so that the engine (``mixassets.engine``) can be used without loading Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from mixassets.definitions import defs

        return defs
    raise AttributeError(name)
