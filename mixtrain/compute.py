"""Where the data stages compute: in this process (``local``) or on Ray (``ray``), as a Dagster resource.

``local`` never imports Ray. ``ray`` starts a local Ray on this machine (``address`` unset; ``num_cpus`` caps it)
or connects to an existing cluster (``address``: ``auto``, ``ray://host:10001``). The resource starts Ray when
a stage first asks for it (``ensure_ray``, called by ``partitions()``), not when Dagster builds resources: a
sensor or a local run must not start Ray. A Ray this process started lives until the process ends (the steps of
one run reuse it); ``shutdown()`` stops it earlier, and never a cluster it only connected to.

A local Ray is bound to 127.0.0.1 and keeps Ray's token authentication on: when neither ``RAY_AUTH_MODE`` nor a
token (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) is set, a random token is put in this process's
environment, which the Ray processes it starts inherit, instead of Ray writing one under ``~/.ray``. For a
remote cluster set ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` to its token.

Ray is reached through dagster-ray, one of its resources per way of reaching Ray: its ``LocalRay`` for a Ray
on this machine, and :func:`cluster_ray` (a dagster-ray ``RayResource`` whose address is the configured one)
for an existing cluster; both apply dagster-ray's Ray Data execution options on connect. dagster-ray's KubeRay
resources, which create a cluster per run, fit the same slot (README, production notes). What ``LocalRay``
does not do is set up the environment (node IP, auth token) before Ray is imported; that is done here.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Mapping
from typing import Any, Literal

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from mixtrain.config.compute import BACKEND_ENV, RAY_ADDRESS_ENV, ComputeConfig, compute_config

__all__ = ["BACKEND_ENV", "RAY_ADDRESS_ENV", "ComputeResource", "compute_resource"]


class ComputeResource(ConfigurableResource):
    """The compute backend of the data stages (see the module docstring)."""

    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    num_cpus: int | None = None
    shuffle_partitions: int = 0  # every shuffle's partition count; 0: twice the cluster's CPUs

    _started: bool = PrivateAttr(default=False)

    @property
    def is_ray(self) -> bool:
        return self.backend == "ray"

    def ensure_ray(self) -> None:
        """Start or connect to Ray (once); a no-op where Ray is already initialised."""
        if not self.is_ray:
            raise RuntimeError("compute: backend is 'local'; Ray is not used")
        if "ray" not in sys.modules:
            _local_only_env(self.address)
        import ray

        if ray.is_initialized():
            return
        self.ray_resource().connect(_LogOnly())
        self._started = True

    def ray_resource(self) -> Any:
        """The dagster-ray resource for the way this backend reaches Ray."""
        from dagster_ray import LocalRay

        if self.address:
            return cluster_ray(self.address)
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.num_cpus:
            options["num_cpus"] = self.num_cpus
        return LocalRay(ray_init_options=options)

    def partitions(self) -> int:
        """The partition count to pass to every shuffle and join (never Ray's default of 200)."""
        if self.shuffle_partitions:
            return self.shuffle_partitions
        if not self.is_ray:
            return 1
        self.ensure_ray()
        import ray

        return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    def shutdown(self) -> None:
        """Shut down the Ray this resource started (a cluster it only connected to is left running)."""
        if self._started and "ray" in sys.modules:
            import ray

            ray.shutdown()
        self._started = False


class _LogOnly:
    """What dagster-ray's ``connect`` reads of a Dagster context: a logger (the resource may be set up outside
    a run, e.g. by the benchmarks)."""

    log = logging.getLogger("mixtrain.compute")


def cluster_ray(address: str) -> Any:
    """A dagster-ray ``RayResource`` for an existing cluster at ``address`` (``auto``, ``ray://host:10001``):
    nothing to create or delete, only to connect to."""
    from dagster_ray import RayResource

    class ClusterRay(RayResource):
        cluster_address: str

        @property
        def host(self) -> str:
            return self.cluster_address

        @property
        def ray_address(self) -> str:  # type: ignore[override]
            return self.cluster_address

        @property
        def name(self) -> str:
            return f"Ray cluster at {self.cluster_address}"

        @property
        def created(self) -> bool:
            return True

        @property
        def ready(self) -> bool:
            return True

    return ClusterRay(cluster_address=address, ray_init_options={"log_to_driver": False})


def _local_only_env(address: str | None) -> None:
    """Environment for a Ray this process starts, set before Ray is imported (Ray reads it at import)."""
    if address:
        return
    # Ray picks the node IP from the default route unless told that this is a single-machine cluster.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def compute_resource(config: ComputeConfig | None = None, env: Mapping[str, str] | None = None) -> ComputeResource:
    """The resource for a project's ``compute`` section, with ``$MIXTRAIN_COMPUTE_BACKEND`` and
    ``$MIXTRAIN_RAY_ADDRESS`` overriding it."""
    cfg = compute_config(config or ComputeConfig(), os.environ if env is None else env)
    return ComputeResource(
        backend=cfg.backend, address=cfg.address, num_cpus=cfg.num_cpus, shuffle_partitions=cfg.shuffle_partitions
    )
