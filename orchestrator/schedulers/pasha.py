"""PASHA (Bohdal et al., ICLR 2023, "PASHA: Efficient HPO and NAS with Progressive Resource
Allocation"), as Syne Tune's ``PASHARungSystem`` runs it: ASHA's ``promote`` variant under a
maximum budget that grows only while the ranking at the top keeps changing.

Trials pause at rungs and are promoted as under ``promote`` (``asha.promotion``: the top 1/η
of a rung), but never past the current *cap*. The cap starts at the second rung (the third
when the ladder has one more below ``max_epochs``: Syne Tune's ``min(L - 1, 2)`` of the L
rungs below ``max_epochs``). After every result, the trials that reached the rung at the cap
are ranked there and at the rung below; when a trial's place at the top differs from its
place below by more than the soft-ranking tolerance ε, the cap moves up one rung (to
``max_epochs`` after the last one). ε is estimated from the results themselves: the 90th
percentile of the gaps between pairs of trials whose order flipped and flipped back again
over the epochs between the two rungs (kept as it was while no such pair exists).

The budget depends on the order results arrive in, so it is folded in
:meth:`Pasha.observe`, one report at a time, and saved with the run (``schedulers.save``):
a resumed driver and the report go on from the state that made the decisions.

Where this differs from Syne Tune 0.14's ``PASHARungSystem`` (each difference is shown by a
test in ``tests/orchestrator/test_pasha_vs_synetune.py``):

* promotion is ``promote``'s rule (Li et al. 2020: the top ``n // η`` of a rung), where Syne
  Tune promotes any paused trial above the rung's interpolated ``1 - 1/η`` quantile (with 4
  trials at a rung and η = 3 it promotes 2, ASHA's paper 1);
* each pair of trials counts once towards ε, as Syne Tune intends with its ``seen_pairs``;
  Syne Tune forms pairs by iterating a ``set`` of trial ids, whose order follows string
  hashes, so a pair met in both orders at two epochs is counted twice and ε can change with
  ``PYTHONHASHSEED``;
* ties in a ranking go to the smaller trial id (Syne Tune: the earlier report), a NaN value
  is left out of the rankings and of ε, and epochs a trial did not evaluate
  (``asha.eval_every_epochs`` > 1) are skipped in ε, where Syne Tune needs every epoch;
* Syne Tune folds results as they arrive; the driver folds the reports of every attempt that
  ended since its last job, in trial order, each trial's epochs in order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

import numpy as np

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.asha import RungValue
from kdsweep.orchestrator.schedulers.asha_promote import AshaPromote
from kdsweep.orchestrator.schema import Event

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import AshaConfig
    from kdsweep.orchestrator.store import Store

#: The percentile of the flipped pairs' gaps that becomes ε (Syne Tune's ``_update_epsilon``).
EPSILON_PERCENTILE = 90
#: How many rungs below ``max_epochs`` PASHA needs: it compares the two rungs below the cap,
#: which starts at the second of them (with fewer, Syne Tune compares a rung with itself).
MIN_RUNGS = 3


def rungs_below_max(ladder: Sequence[int], max_epochs: int) -> tuple[int, ...]:
    """The rung levels below ``max_epochs`` (Syne Tune's ``rung_levels``)."""
    return tuple(level for level in ladder if level < max_epochs)


class Budget:
    """PASHA's growing budget as a fold over reports (module docstring): the pure core, fed
    one report at a time by :meth:`tick`, with Syne Tune's state (``current_rung_idx``,
    ``epsilon``, ``per_epoch_results``, ``epoch_to_trials``, ``current_max_epoch``).

    ``levels`` are the rungs below ``max_epochs``; ``sign`` is +1 for "max", -1 for "min".
    """

    def __init__(self, levels: Sequence[int], sign: float) -> None:
        if len(levels) < MIN_RUNGS:
            raise ValueError(f"PASHA needs at least {MIN_RUNGS} rungs below max_epochs, got {list(levels)}")
        self.levels, self.sign = tuple(levels), sign
        #: How many rungs are under the cap (Syne Tune's ``current_rung_idx``, 1-based).
        self.top = min(len(levels) - 1, 2)
        #: Whether the cap has reached ``max_epochs``.
        self.full = False
        self.epsilon = 0.0
        self.curves: dict[str, dict[int, float]] = {}
        self.at_epoch: dict[int, list[str]] = {}
        self.max_epoch = -1
        # What ε was last computed from (see _update_epsilon).
        self._epsilon_from: tuple[int, ...] = ()

    @property
    def cap(self) -> int | None:
        """The highest rung level a trial is promoted to; None: ``max_epochs``."""
        return None if self.full else self.levels[self.top - 1]

    def tick(self, trial_id: str, epoch: int, value: float) -> None:
        """Take in one report (Syne Tune's ``on_task_report``): record it, update ε, and move
        the cap up one rung if the top two rungs disagree."""
        self.record(trial_id, epoch, value)
        self._update_epsilon()
        if self._ranking_changed():
            if self.top < len(self.levels):
                self.top += 1
            else:
                self.full = True

    def record(self, trial_id: str, epoch: int, value: float) -> None:
        """Add one report to the data without deciding anything (a restore's replay)."""
        self.curves.setdefault(trial_id, {})[epoch] = value
        self.at_epoch.setdefault(epoch, []).append(trial_id)
        self.max_epoch = max(self.max_epoch, epoch)

    def _band(self) -> range:
        """The epochs ε is estimated over, highest first (Syne Tune's ``top_epoch`` down to
        just above ``bottom_epoch``)."""
        top = min(self.max_epoch, self.levels[self.top - 1])
        bottom = min(self.levels[self.top - 2], self.max_epoch)
        return range(top, bottom, -1)

    def _update_epsilon(self) -> None:
        """ε from the pairs of trials that swapped places and swapped back (module docstring).
        It depends only on the reports in the band (every trial there has all its earlier
        epochs already), so it is recomputed only when they change."""
        band = self._band()
        source = (self.top, *(len(self.at_epoch.get(e, ())) for e in band))
        if source == self._epsilon_from:
            return
        self._epsilon_from = source
        seen: set[tuple[str, str]] = set()
        gaps: list[float] = []
        for epoch in band:
            members = sorted(t for t in self.at_epoch.get(epoch, ()) if not math.isnan(self.curves[t][epoch]))
            pairs = [p for p in itertools.combinations(members, 2) if p not in seen]
            seen.update(pairs)
            gaps += [abs(self.curves[a][epoch] - self.curves[b][epoch]) for a, b in pairs if self._flipped_back(a, b, epoch)]
        if gaps:
            self.epsilon = float(np.percentile(gaps, EPSILON_PERCENTILE))

    def _flipped_back(self, a: str, b: str, epoch: int) -> bool:
        """Whether, going back from ``epoch``, the order of ``a`` and ``b`` (``a > b`` on the
        raw values, as Syne Tune compares them) is first reversed and later the same again."""
        ca, cb = self.curves[a], self.curves[b]
        now = ca[epoch] > cb[epoch]
        reversed_before = False
        for prev in range(epoch - 1, 0, -1):
            x, y = ca.get(prev), cb.get(prev)
            if x is None or y is None or math.isnan(x) or math.isnan(y):
                continue  # not evaluated at that epoch
            order = x > y
            if order != now:
                reversed_before = True
            elif reversed_before:
                return True
        return False

    def _ranking_changed(self) -> bool:
        """Whether the trials at the cap's rung, best first there, leave the soft ranking of
        the same trials at the rung below (Syne Tune's ``_decide_resource_increase``)."""
        top_level, below_level = self.levels[self.top - 1], self.levels[self.top - 2]
        at_top = self._signed(self.at_epoch.get(top_level, ()), top_level)
        if not at_top:
            return False
        below = self._signed([t for t in self.at_epoch.get(below_level, ()) if t in at_top], below_level)
        top_order = sorted(at_top, key=lambda t: (-at_top[t], t))
        below_order = sorted(below, key=lambda t: (-below[t], t))
        epsilon = self.epsilon if len(below_order) >= 2 else 0.0
        for place, trial in enumerate(top_order):
            if place >= len(below_order) or trial not in self._group(below_order, below, place, epsilon):
                return True
        return False

    def _signed(self, trials: Sequence[str], level: int) -> dict[str, float]:
        """Each trial's value at ``level``, larger is better; NaN left out."""
        values = {t: self.sign * self.curves[t][level] for t in trials}
        return {t: v for t, v in values.items() if not math.isnan(v)}

    @staticmethod
    def _group(order: Sequence[str], value: Mapping[str, float], place: int, epsilon: float) -> set[str]:
        """The trials around ``order[place]`` whose values lie within ``epsilon`` of its value
        without a trial outside in between (Syne Tune's ``_evaluate_soft_ranking``)."""
        centre = value[order[place]]
        group = {order[place]}
        for trial in order[place + 1 :]:
            if value[trial] < centre - epsilon:
                break
            group.add(trial)
        for trial in reversed(order[:place]):
            if value[trial] > centre + epsilon:
                break
            group.add(trial)
        return group


class Pasha(AshaPromote):
    """The ``pasha`` variant (module docstring); see ``schedulers.Scheduler``."""

    def __init__(self, config: AshaConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.budget = Budget(rungs_below_max(self.ladder, config.max_epochs), 1.0 if config.mode == "max" else -1.0)
        #: Trial id -> the last epoch folded in (the driver's progress at the last observe).
        self.folded: dict[str, int] = {}

    @classmethod
    def problems(cls, config: AshaConfig) -> list[tuple[str, object, str]]:
        out: list[tuple[str, object, str]] = []
        if config.brackets != 1:
            out.append(("brackets", config.brackets, "1 for asha.variant = \"pasha\" (brackets run with the stop and promote variants)"))
        if config.extrapolate:
            out.append(("extrapolate", True, 'false for asha.variant = "pasha" (extrapolate runs with the stop and promote variants)'))
        if config.multi_objective:
            out.append(("variant", "pasha", 'one objective (PASHA ranks by one metric); use "promote" or "stop" with asha.objectives'))
        levels = rungs_below_max(asha.rung_ladder(config.min_epochs, config.max_epochs, config.reduction_factor), config.max_epochs)
        if len(levels) < MIN_RUNGS:
            third = config.min_epochs * config.reduction_factor ** (MIN_RUNGS - 1)
            out.append(("max_epochs", config.max_epochs, f"above {third} for asha.variant = \"pasha\" ({MIN_RUNGS} rungs below max_epochs: PASHA compares the two below its budget)"))
        return out

    def next_job(
        self, rungs: Sequence[Mapping[str, RungValue]], promoted: Sequence[Set[str]], busy: Set[str]
    ) -> tuple[str, int] | None:
        cap = self.budget.cap
        under = len(self.ladder) if cap is None else self.ladder.index(cap) + 1
        a = self.config
        chosen = asha.promotion(rungs[:under], promoted[:under], a.reduction_factor, a.modes, busy)
        return None if chosen is None else (chosen[0], self.ladder[chosen[1]])

    def observe(self, store: Store, progress: Mapping[str, int]) -> None:
        ahead = {tid: (self.folded.get(tid, 0), epoch) for tid, epoch in progress.items() if epoch > self.folded.get(tid, 0)}
        if not ahead:
            return
        reports = self._reports(store, ahead)
        for trial_id in ahead:
            for epoch, value in reports.get(trial_id, ()):
                self.budget.tick(trial_id, epoch, value)
            self.folded[trial_id] = ahead[trial_id][1]

    def _reports(self, store: Store, spans: Mapping[str, tuple[int, int]]) -> dict[str, list[tuple[int, float]]]:
        """For each trial id of ``spans`` (-> ``(after, until)``), its reported values of
        epochs ``after + 1 .. until``, in epoch order."""
        metric = self.config.metric
        return {tid: [(e, v) for e, v in store.curve(tid, metric) if after < e <= until] for tid, (after, until) in spans.items()}

    def state(self) -> dict[str, Any] | None:
        b = self.budget
        return {"top": b.top, "full": b.full, "epsilon": b.epsilon, "folded": dict(self.folded)}

    def restore(self, store: Store, state: Mapping[str, Any] | None) -> None:
        """The budget as saved, over the reports it had folded (``folded``), read back from
        the store without ticking again; without a saved state, the budget of a fresh run."""
        if state is None:
            return
        self.folded = {str(t): int(e) for t, e in state["folded"].items()}
        self.budget = Budget(self.budget.levels, self.budget.sign)
        for trial_id, reports in self._reports(store, {tid: (0, e) for tid, e in self.folded.items()}).items():
            for epoch, value in reports:
                self.budget.record(trial_id, epoch, value)
        self.budget.top, self.budget.full, self.budget.epsilon = int(state["top"]), bool(state["full"]), float(state["epsilon"])
