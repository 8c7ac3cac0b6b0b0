"""Distributed drivers of the data engine on Ray Data: the local engine's own functions applied to parts of the
data, with outputs equal to the local engine's (same rows, same order). Dagster-free; Ray is imported only
when a driver runs, and needs an initialised Ray (:class:`mixtrain.compute.ComputeResource`).
"""

from mixassets.engine.distributed.dedupe import RayDedupeResult, components, dedupe_ray
from mixassets.engine.distributed.gate import RayGateOutputs, gate_ray
from mixassets.engine.distributed.screen import screen_ray, token_counts_ray

__all__ = [
    "RayDedupeResult",
    "RayGateOutputs",
    "components",
    "dedupe_ray",
    "gate_ray",
    "screen_ray",
    "token_counts_ray",
]
