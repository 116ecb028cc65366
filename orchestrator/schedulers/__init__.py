"""The scheduler interface: a sweep's early-stopping policy, as two narrow questions.

* :meth:`Scheduler.on_result` — asked by the worker when a trial that trains on past a rung
  milestone has reported there: continue or stop (Syne Tune's ``on_trial_result``, Optuna's
  pruners).
* :meth:`Scheduler.next_job` — asked by the driver before it proposes a new trial: which
  paused trial runs next, and up to which epoch (Syne Tune's ``suggest``, ASHA's
  ``get_job``).

A policy also owns the facts both sides need, computed once: the rung ladder (the report,
the Pareto front and the HTML page read it from here), how far a new trial's first attempt
trains (:meth:`Scheduler.first_target`) and how far a trial record's attempts train
(:meth:`Scheduler.target`: the promotion rule "paused, but promoted past this milestone" is
``target(record.until_epoch) > milestone``, wherever it is asked).

A policy is one module of this package and one line of :data:`SCHEDULERS` (the name is the
sweep file's ``[asha] variant``). Decisions are pure functions of what the store holds
(``asha.py``), so the simulator replays them with the very same code. A policy that also
learns from the order results arrive in (PASHA's growing budget) folds them in
:meth:`Scheduler.observe`; its :meth:`Scheduler.state` is saved in the run directory
(:data:`layout.SCHEDULER_STATE`, by :func:`save`) before the decision it led to is acted on,
and :func:`load` restores it, so a resumed driver and the report decide from the same state.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.asha import Decision, RungValue
from kdsweep.orchestrator.atomic import read_bytes, write_atomic

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import AshaConfig
    from kdsweep.orchestrator.store import Store

__all__ = ["SCHEDULERS", "Decision", "Scheduler", "load", "save", "scheduler_of"]

#: ``[asha] variant`` -> the policy's class, as "module:Class" (imported when a run uses it).
SCHEDULERS: Mapping[str, str] = {
    "stop": "kdsweep.orchestrator.schedulers.asha_stop:AshaStop",
    "promote": "kdsweep.orchestrator.schedulers.asha_promote:AshaPromote",
    "pasha": "kdsweep.orchestrator.schedulers.pasha:Pasha",
}
#: ``[asha] variant`` -> its curve-aware policy, run with ``[asha] extrapolate = true``.
EXTRAPOLATING: Mapping[str, str] = {
    "stop": "kdsweep.orchestrator.schedulers.extrapolation:ExtrapolatingStop",
    "promote": "kdsweep.orchestrator.schedulers.extrapolation:ExtrapolatingPromote",
}


class Scheduler(Protocol):
    """The early-stopping policy of one sweep (module docstring), built from its ``[asha]``
    table. One objective or several: a rung value is a tuple over ``asha.metrics``."""

    #: The rung milestones (epochs), ascending; the last is ``max_epochs``.
    ladder: tuple[int, ...]
    #: Whether trials pause at rungs and wait for :meth:`next_job` (else they never pause,
    #: and :meth:`next_job` is never asked).
    pauses: bool

    def first_target(self, trial_id: str) -> int | None:
        """The epoch new trial ``trial_id``'s attempts train up to (its record's
        ``until_epoch``); None: to ``max_epochs``."""
        ...

    def target(self, until_epoch: int | None) -> int:
        """The epoch a trial whose record says ``until_epoch`` trains up to."""
        ...

    def rung_columns(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> dict[str, float]:
        """Columns to record on ``trial_id``'s report of ``point`` at rung ``rung`` (a
        milestone below ``max_epochs``), asked by the worker before it appends the report
        (the trial's earlier reports are in ``store``): what the policy will decide from,
        such as a prediction (``schema.PREDICTED``). Most policies record nothing."""
        ...

    def on_result(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> Decision:
        """Continue or stop ``trial_id``, which reported ``point`` at rung ``rung`` (a
        milestone below ``max_epochs``) and whose report is in ``store`` already."""
        ...

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        """The paused trial to run next and the epoch it trains up to, or None (propose a new
        trial). ``rungs[k]``: trial id -> its value at rung ``k``; ``promoted[k]``: the trials
        that have left rung ``k`` (their target is past it); ``busy``: trials that must not be
        handed out (running, or not paused)."""
        ...

    def observe(self, store: Store, progress: Mapping[str, int]) -> None:
        """Fold in the results that arrived since the last call: ``progress`` maps each trial
        id to the last epoch the driver has seen it end an attempt at (its rows up to there
        are in ``store``). Asked by the driver before :meth:`next_job`; a policy whose
        decisions depend only on the rung values does nothing."""
        ...

    def state(self) -> dict[str, Any] | None:
        """What :meth:`observe` has learned, as JSON data (None: nothing to keep)."""
        ...

    def restore(self, store: Store, state: Mapping[str, Any] | None) -> None:
        """Take back what an earlier driver of this run left: the :meth:`state` it saved
        (None when it saved none; the results it folded are in ``store``) and what the
        policy decides from that is in ``store`` (a curve-aware policy's recorded
        predictions). Asked once, when a driver or a report builds the run's policy
        (:func:`load`)."""
        ...


def scheduler_class(asha: AshaConfig) -> Any:
    """The class of the policy ``asha`` names: its ``variant`` (:data:`SCHEDULERS`), or the
    variant's curve-aware policy with ``extrapolate`` (:data:`EXTRAPOLATING`; a variant
    without one says so in its ``problems``). Besides building a policy from a sweep's
    ``[asha]``, it answers ``problems(asha)``: (field of ``[asha]``, value, what is allowed)
    for each setting the policy cannot run with."""
    table = EXTRAPOLATING if asha.extrapolate and asha.variant in EXTRAPOLATING else SCHEDULERS
    module, _, name = table[asha.variant].partition(":")
    return getattr(importlib.import_module(module), name)


def scheduler_of(asha: AshaConfig, seed: int) -> Scheduler:
    """The policy ``asha`` names (:func:`scheduler_class`), built for ``asha`` in a sweep
    whose seed is ``seed`` (a policy's own draws, such as a trial's bracket, derive from it)."""
    policy: Scheduler = scheduler_class(asha)(asha, seed)
    return policy


def load(asha: AshaConfig, seed: int, run_path: str | os.PathLike[str], store: Store) -> Scheduler:
    """The policy of a run, with the state its last driver saved (:func:`save`), if any."""
    policy = scheduler_of(asha, seed)
    path = Path(run_path) / layout.SCHEDULER_STATE
    policy.restore(store, json.loads(read_bytes(path)) if path.exists() else None)
    return policy


def save(policy: Scheduler, run_path: str | os.PathLike[str], last: dict[str, Any] | None) -> dict[str, Any] | None:
    """Write the policy's state where :func:`load` finds it, unless it equals ``last`` (what
    was written before); return the state."""
    state = policy.state()
    if state is not None and state != last:
        write_atomic(Path(run_path) / layout.SCHEDULER_STATE, json.dumps(state, sort_keys=True).encode())
    return state
