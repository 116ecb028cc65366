"""ASHA's ``promote`` variant (Li et al. 2020, Alg. 2, as Syne Tune's ``promotion`` type
runs it): a new trial trains to the first rung and pauses; before any new proposal, a free
slot goes to the best paused trial in the top 1/η of its rung (``asha.promotion``; several
objectives: non-dominated sorting with the ε-net), which trains to the next rung. Workers
decide nothing: they train to their record's target and pause there.

With ``[asha] brackets = N`` (``brackets.py``), a trial of bracket ``s`` trains to rung ``s``
first, and a rung's top 1/η is taken among the trials of one bracket; the next job is the
promotion to the highest rung any bracket offers (ties: the lower bracket). Syne Tune instead
draws a bracket for every free worker and promotes only inside it.
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

    def first_target(self, trial_id: str) -> int | None:
        return self.ladder[self.brackets.of(trial_id)]

    def target(self, until_epoch: int | None) -> int:
        return until_epoch or self.config.max_epochs

    def on_result(self, store: Store, trial_id: str, rung: int, point: tuple[float, ...]) -> Decision:
        return Decision.CONTINUE

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        a = self.config
        best: tuple[str, int] | None = None
        for bracket in range(self.brackets.count):
            # A bracket's trials reach the rungs below its first one while training to it;
            # they are not paused there.
            own = [self.brackets.members(values, bracket) if k >= bracket else {} for k, values in enumerate(rungs)]
            chosen = asha.promotion(own, promoted, a.reduction_factor, a.modes, busy)
            if chosen is not None and (best is None or chosen[1] > best[1]):
                best = chosen
        return None if best is None else (best[0], self.ladder[best[1]])
