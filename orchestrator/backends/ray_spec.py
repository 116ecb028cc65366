"""The Ray backend's registration (``backend.kind = "ray"``) and its ``[backend.ray]``
table, apart from ``ray.py``, which imports Ray: reading a sweep file never does."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from kdsweep.orchestrator.backends import BackendSpec

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import SweepConfig


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """``[backend.ray]``: which Ray cluster runs the trials."""

    #: None starts a local Ray instance; "auto" or "host:port" joins an existing cluster.
    address: str | None = None


class Ray(BackendSpec):
    """``ray``: Ray actors, on the cluster ``[backend.ray]`` names; no checks beyond types."""

    backend: ClassVar[str] = "kdsweep.orchestrator.backends.ray:RayBackend"
    Options: ClassVar[type | None] = RayConfig


def ray_options(cfg: SweepConfig) -> RayConfig:
    """The sweep's ``[backend.ray]`` table (its defaults when the file has none)."""
    options: RayConfig = cfg.backend.options["ray"]
    return options
