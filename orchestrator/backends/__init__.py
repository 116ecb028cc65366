"""Backends decide *where* ``run_trial`` runs; the driver decides *what* runs.

Every backend implements :class:`Backend` and passes the same contract suite
(``tests/orchestrator/backends/``). The driver submits :class:`TrialSpec` objects and
collects :class:`Finished` records; a backend never interprets results.
"""

from __future__ import annotations

import dataclasses
import importlib
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
    """Runs trial attempts somewhere; at most ``slots`` at once. Each backend a sweep file
    can name (:data:`BACKENDS`) is built by its classmethod ``from_config(cfg)`` from its own
    part of ``[backend]``; the simulated one by ``kdsweep simulate``."""

    #: How many attempts may run at once.
    slots: int

    def submit(self, spec: TrialSpec) -> None:
        """Start an attempt; the caller never submits more than ``slots`` at once."""
        ...

    def adopt(self, spec: TrialSpec) -> bool:
        """On resume, before an unfinished trial is submitted again: True when this backend
        still runs (or ran to a result) that very attempt for an earlier driver and now
        tracks it as if submitted here, so no duplicate starts (a SLURM job outlives its
        driver); False when the driver must submit it (every backend whose attempts die
        with their driver)."""
        ...

    def busy(self) -> int:
        """How many attempts are submitted or adopted and not yet reported by ``wait``."""
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


#: ``backend.kind`` -> "module:Class" of the backend, imported when used (Ray and submitit
#: are heavy, and only one kind runs per sweep).
BACKENDS: dict[str, str] = {
    "local": "kdsweep.orchestrator.backends.local:LocalBackend",
    "ray": "kdsweep.orchestrator.backends.ray:RayBackend",
    "slurm": "kdsweep.orchestrator.backends.slurm:SlurmBackend",
}


def make_backend(cfg: SweepConfig) -> Backend:
    """The backend named by ``cfg.backend.kind``, built from ``cfg``."""
    try:
        target = BACKENDS[cfg.backend.kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {cfg.backend.kind!r}; valid: {', '.join(BACKENDS)}") from None
    module_name, _, class_name = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), class_name).from_config(cfg)
    return backend
