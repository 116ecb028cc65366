"""ASHA's ``stop`` variant (Li et al. 2020, the variant Ray Tune's ``ASHAScheduler`` runs):
every trial trains towards ``max_epochs``, and at each rung milestone the worker stops it
unless it is in the top 1/η of the values recorded there (``asha.decide``; several
objectives: non-dominated sorting with the ε-net, multi-objective ASHA). Trials never pause.
With ``[asha] brackets = N`` each trial is compared only within its Hyperband bracket, from
the bracket's first rung on (``brackets.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.asha import Decision, RungValue
from kdsweep.orchestrator.schedulers.brackets import Brackets

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import AshaConfig
    from kdsweep.orchestrator.store import Store


class AshaStop:
    """The ``stop`` variant (module docstring); see ``schedulers.Scheduler``."""

    pauses = False

    def __init__(self, config: AshaConfig, seed: int) -> None:
        self.config = config
        self.ladder = asha.rung_ladder(config.min_epochs, config.max_epochs, config.reduction_factor)
        self.brackets = Brackets(config.brackets, seed)

    @classmethod
    def problems(cls, config: AshaConfig) -> list[tuple[str, object, str]]:
        """Settings of ``[asha]`` this policy cannot run with (``schedulers.scheduler_class``)."""
        return []

    def first_target(self, trial_id: str) -> int | None:
        return None

    def target(self, until_epoch: int | None) -> int:
        return self.config.max_epochs  # a stop-variant trial trains on until stopped

    def rung_columns(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> dict[str, float]:
        return {}  # ASHA decides from the rung values alone

    def on_result(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> Decision:
        return self.decide(store.rung_points(rung, self.config.metrics), trial_id, rung, point)

    def decide(self, values: Mapping[str, RungValue], trial_id: str, rung: int, point: RungValue) -> Decision:
        """:meth:`on_result` over ``values``, the rung's values (trial id -> value): ASHA's
        rule among the trials of ``trial_id``'s bracket; below the bracket's first rung,
        CONTINUE."""
        a = self.config
        bracket = self.brackets.of(trial_id)
        if rung < bracket:
            return Decision.CONTINUE
        return asha.decide(self.brackets.members(values, bracket), trial_id, point, a.reduction_factor, a.modes)

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        return None

    def observe(self, store: Store, progress: Mapping[str, int]) -> None:
        return None  # ASHA decides from the rung values alone

    def state(self) -> dict[str, Any] | None:
        return None

    def restore(self, store: Store, state: Mapping[str, Any] | None) -> None:
        return None
