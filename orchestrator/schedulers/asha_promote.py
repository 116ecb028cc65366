"""ASHA's ``promote`` variant (Li et al. 2020, Alg. 2, as Syne Tune's ``promotion`` type
runs it): a new trial trains to the first rung and pauses; before any new proposal, a free
slot goes to the best paused trial in the top 1/η of its rung (``asha.promotion``; several
objectives: non-dominated sorting with the ε-net), which trains to the next rung. Workers
decide nothing: they train to their record's target and pause there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.asha import Decision, RungValue
from kdsweep.orchestrator.schedulers.asha_stop import AshaStop

if TYPE_CHECKING:
    from kdsweep.orchestrator.store import Store


class AshaPromote(AshaStop):
    """The ``promote`` variant (module docstring); see ``schedulers.Scheduler``."""

    pauses = True

    def first_target(self) -> int | None:
        return self.ladder[0]

    def target(self, until_epoch: int | None) -> int:
        return until_epoch or self.config.max_epochs

    def on_result(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> Decision:
        return Decision.CONTINUE

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        a = self.config
        chosen = asha.promotion(rungs, promoted, a.reduction_factor, a.modes, busy)
        return None if chosen is None else (chosen[0], self.ladder[chosen[1]])
