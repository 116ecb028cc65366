"""Backends decide *where* ``run_trial`` runs; the driver decides *what* runs.

Every backend implements :class:`Backend` and passes the same contract suite
(``tests/orchestrator/backends/``). The driver submits :class:`TrialSpec` objects and
collects :class:`Finished` records; a backend never interprets results.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.worker import TrialOutcome, TrialSpec


@dataclasses.dataclass(frozen=True)
class Finished:
    """An attempt that ended: ``outcome`` when ``run_trial`` returned, else ``error`` (the
    traceback, or how the process died), which the driver retries or records as failed."""

    spec: TrialSpec
    outcome: TrialOutcome | None
    error: str | None = None


class Backend(Protocol):
    """Runs trial attempts somewhere; at most ``slots`` at once."""

    #: How many attempts may run at once.
    slots: int

    def submit(self, spec: TrialSpec) -> None:
        """Start an attempt; the caller never submits more than ``slots`` at once."""
        ...

    def wait(self, timeout_s: float) -> list[Finished]:
        """Block up to ``timeout_s`` for attempts to end; return those that ended (maybe none)."""
        ...

    def cancel(self, trial_id: str) -> None:
        """Stop an attempt; it will not be reported by ``wait``."""
        ...

    def close(self) -> None:
        """Stop every attempt and release resources. Idempotent."""
        ...


# Optional hook, looked up with getattr by the driver:
#   adopt(spec: TrialSpec) -> bool
# On resume, before submitting an unfinished trial, the driver offers it to the backend; a
# backend whose attempts outlive the driver (a SLURM job still queued or running) returns True
# and tracks it as if it had submitted it, so no duplicate is started.


def make_backend(cfg: SweepConfig) -> Backend:
    """The backend named by ``cfg.backend.kind``."""
    if cfg.backend.kind == "local":
        from kdsweep.orchestrator.backends.local import LocalBackend

        return LocalBackend(cfg.backend.max_concurrent, timeout_s=cfg.backend.timeout_min * 60)
    if cfg.backend.kind == "ray":
        from kdsweep.orchestrator.backends.ray import RayBackend

        b = cfg.backend
        return RayBackend(
            b.max_concurrent, cpus_per_trial=b.cpus_per_trial, gpus_per_trial=b.gpus_per_trial,
            timeout_s=b.timeout_min * 60, address=b.ray.address,
        )  # fmt: skip
    if cfg.backend.kind == "slurm":
        from kdsweep.orchestrator.backends.slurm import SlurmBackend

        return SlurmBackend(cfg)
    raise ValueError(f"unknown backend kind {cfg.backend.kind!r}; valid: local, ray, slurm")
