"""The ``compute`` section of a project: which backend runs the data stages (local or Ray), and how to reach Ray.

``MIXTRAIN_COMPUTE_BACKEND`` and ``MIXTRAIN_RAY_ADDRESS`` override the file (:func:`compute_config`), so one
project runs on a laptop and on a cluster unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from mixtrain.config.base import ProjectError, Strict

BACKEND_ENV = "MIXTRAIN_COMPUTE_BACKEND"
RAY_ADDRESS_ENV = "MIXTRAIN_RAY_ADDRESS"


class ComputeConfig(Strict):
    backend: Literal["local", "ray"] = Field("local", description="local: this process; ray: Ray Data")
    address: str | None = Field(
        None, description="an existing Ray cluster ('auto', 'ray://host:10001'); unset: start Ray on this machine"
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a Ray started on this machine (default: all)")
    shuffle_partitions: int = Field(0, ge=0, description="partitions of every Ray shuffle; 0: twice the CPUs")

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> ComputeConfig:
        if self.backend == "local":
            for name in ("address", "num_cpus"):
                if getattr(self, name) is not None:
                    raise ValueError(f"'{name}' is only used with backend 'ray'")
        if self.address is not None and self.num_cpus is not None:
            raise ValueError("'num_cpus' sizes a Ray started here; a cluster at 'address' has its own CPUs")
        return self


def compute_config(config: ComputeConfig, env: Mapping[str, str]) -> ComputeConfig:
    """``config`` with the environment's overrides; a bad value is a :class:`ProjectError` naming the variable."""
    update: dict[str, object] = {}
    backend = env.get(BACKEND_ENV, "").strip()
    if backend:
        update["backend"] = backend
    address = env.get(RAY_ADDRESS_ENV, "").strip()
    if address:
        update["address"] = address
    if not update:
        return config
    if update.get("backend") == "local":  # the local override drops the file's Ray settings
        update.update(address=None, num_cpus=None)
    try:
        return ComputeConfig.model_validate({**config.model_dump(), **update})
    except ValidationError as e:
        names = f"${BACKEND_ENV} / ${RAY_ADDRESS_ENV}"
        reasons = "; ".join(f"field '{'.'.join(map(str, x['loc'])) or 'compute'}': {x['msg']}" for x in e.errors())
        raise ProjectError(f"{names}: invalid compute override: {reasons}") from None
