"""Backends decide *where* ``run_trial`` runs; the driver decides *what* runs.

Every backend implements :class:`Backend` and passes the same contract suite
(``tests/orchestrator/backends/``). The driver submits :class:`TrialSpec` objects and
collects :class:`Finished` records; a backend never interprets results.

Backends are plug-ins, as trainers are: each registers a light :class:`BackendSpec` subclass
in the entry-point group ``kdsweep.backends`` (name = the sweep file's ``backend.kind``);
``local``, ``ray`` and ``slurm`` are registered the same way in kdsweep's own
``pyproject.toml``. The spec owns the backend's ``[backend.<kind>]`` table and its checks and
names the backend's class, whose module (Ray, submitit) is imported only when a sweep runs on
it. This module imports neither: the config loader reads the registry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from kdsweep.orchestrator.plugins import Issue, Registry, import_target

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import BackendConfig, SweepConfig
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
    can name (:class:`BackendSpec`) is built by its classmethod ``from_config(cfg)`` from
    ``[backend]`` and its own ``[backend.<kind>]``; the simulated one by ``kdsweep simulate``."""

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


class BackendSpec:
    """A backend's light description, registered in the entry-point group
    ``kdsweep.backends``. Subclasses set :attr:`backend`; the rest has defaults. The module
    defining a subclass must not import the backend's libraries (the loader imports it for
    every sweep, ``kdsweep status`` included)."""

    #: ``"module:Class"`` of the :class:`Backend`, imported only when a sweep runs on it; the
    #: class builds itself with the classmethod ``from_config(cfg)``.
    backend: ClassVar[str]
    #: Dataclass of the sweep file's ``[backend.<kind>]`` table, every field with a default,
    #: or None when the backend takes no options of its own. The loader reads the table (the
    #: defaults when the file has none) for every registered backend, not only the one that
    #: runs, since ``--backend`` may switch to it; the validated instances are
    #: ``cfg.backend.options[kind]``.
    Options: ClassVar[type | None] = None

    @classmethod
    def check(cls, kind: str, options: Any, backend: BackendConfig) -> list[Issue]:
        """Range and cross-field checks at load time, once the types are right: ``options``
        is the validated ``[backend.<kind>]`` table (None without :attr:`Options`),
        ``backend`` the whole ``[backend]``; ``backend.kind == kind`` when this backend runs
        the sweep (a check that matters only then, such as one against the time limit,
        tests it). Fields are named as messages show them, ``backend.<kind>.<key>``. No
        checks by default."""
        return []

    @classmethod
    def preflight(cls, cfg: SweepConfig, run_dir: Path) -> str | None:
        """Before a sweep that runs on this backend writes anything: ``ConfigError`` naming
        the field when the backend would refuse its trials (a partition SLURM does not
        have), and what ``--dry-run`` prints for a trial (None: the normalised sweep file).
        Creates nothing. By default there is nothing to ask: None."""
        return None

    @classmethod
    def build(cls, cfg: SweepConfig) -> Backend:
        """The backend for ``cfg`` (imports its module)."""
        backend: Backend = import_target(cls.backend).from_config(cfg)
        return backend


#: The backends installed: entry-point group ``kdsweep.backends``, kind -> BackendSpec subclass.
BACKENDS: Registry[BackendSpec] = Registry("kdsweep.backends", BackendSpec, "backend kind")


def backend_names() -> list[str]:
    """Every installed backend's kind, sorted."""
    return BACKENDS.names()


def backend_spec(kind: str) -> type[BackendSpec]:
    """The backend registered as ``kind``; ``KeyError`` lists the valid kinds."""
    return BACKENDS.load(kind)


def make_backend(cfg: SweepConfig) -> Backend:
    """The backend named by ``cfg.backend.kind``, built from ``cfg``."""
    return backend_spec(cfg.backend.kind).build(cfg)
