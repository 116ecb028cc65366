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
(``asha.py``), so the simulator replays them with the very same code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Protocol

from kdsweep.orchestrator.asha import Decision, RungValue

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import AshaConfig
    from kdsweep.orchestrator.store import Store

__all__ = ["SCHEDULERS", "Decision", "Scheduler", "scheduler_of"]

#: ``[asha] variant`` -> the policy's class, as "module:Class" (imported when a run uses it).
SCHEDULERS: Mapping[str, str] = {
    "stop": "kdsweep.orchestrator.schedulers.asha_stop:AshaStop",
    "promote": "kdsweep.orchestrator.schedulers.asha_promote:AshaPromote",
}


class Scheduler(Protocol):
    """The early-stopping policy of one sweep (module docstring), built from its ``[asha]``
    table. One objective or several: a rung value is a tuple over ``asha.metrics``."""

    #: The rung milestones (epochs), ascending; the last is ``max_epochs``.
    ladder: tuple[int, ...]
    #: Whether trials pause at rungs and wait for :meth:`next_job` (else they never pause,
    #: and :meth:`next_job` is never asked).
    pauses: bool

    def first_target(self) -> int | None:
        """The epoch a new trial's attempts train up to (its record's ``until_epoch``); None:
        to ``max_epochs``."""
        ...

    def target(self, until_epoch: int | None) -> int:
        """The epoch a trial whose record says ``until_epoch`` trains up to."""
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


def scheduler_of(asha: AshaConfig) -> Scheduler:
    """The policy of ``[asha] variant`` (:data:`SCHEDULERS`), built for ``asha``."""
    module, _, name = SCHEDULERS[asha.variant].partition(":")
    policy: Scheduler = getattr(importlib.import_module(module), name)(asha)
    return policy
