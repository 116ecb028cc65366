"""Where the driver's jobs come from, and the work order each attempt gets.

The driver runs one loop for every kind of run; what differs is a job source, chosen once
(:func:`job_source`):

* :class:`StopSearch` — ASHA's ``stop`` variant: new trials from the searcher, each trained
  to ``max_epochs``; the worker applies the stop rule at every rung milestone.
* :class:`PromoteSearch` — ASHA's ``promote`` variant: new trials train to the first rung and
  pause; a free slot goes first to the best paused trial that earned a promotion
  (``asha.promotion``), which trains to the next rung.
* :class:`FinalPlan` — ``kdsweep retrain``'s final stage: exactly the planned runs, each to
  its full budget, no ASHA, a checkpoint at every evaluation, the test split at the end.

Each source turns a trial record into a :class:`WorkOrder`: the explicit instructions the
worker follows. Neither the driver nor the worker branches on the stage or the variant.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import TrialRecord
from kdsweep.orchestrator.schema import Event, Stage
from kdsweep.orchestrator.store import Store


@dataclasses.dataclass(frozen=True)
class WorkOrder:
    """What one attempt of a trial does (it resumes from the trial's last checkpoint)."""

    #: Train up to and including this epoch.
    until_epoch: int
    #: Epochs of the trial's whole schedule (``TrialContext.budget_epochs``: learning-rate
    #: schedules span it, however early the trial ends).
    budget_epochs: int
    #: The rung milestones: evaluated, checkpointed and reported at their rung. Empty when
    #: trials are not compared (the final stage).
    milestones: tuple[int, ...]
    #: Apply ASHA's stop rule at each milestone below ``budget_epochs`` (the stop variant).
    stop_at_milestones: bool
    #: The event recorded on reaching ``until_epoch``: "completed" or "paused".
    end: str
    #: Checkpoint after every evaluation, not only at milestones and at the end: a preempted
    #: full-budget run then loses at most one evaluation interval.
    checkpoint_every_report: bool = False
    #: Evaluate the held-out test split after the last epoch.
    test_at_end: bool = False


class TrialView(Protocol):
    """What a job source may read of the driver's state of one trial."""

    record: TrialRecord
    event: str | None
    running: bool


class JobSource(Protocol):
    """A kind of run, as the driver's loop sees it."""

    #: Which records and rows the run's trials are ("search" or "final").
    stage: Stage
    #: Whether new trials come from the proposer (the searcher), which is told how they end.
    proposes: bool

    def order(self, record: TrialRecord) -> WorkOrder:
        """The work order of ``record``'s next attempt."""
        ...

    def new_record(self, trial_id: str, params: Mapping[str, object], origin: str) -> TrialRecord:
        """The record of a new proposed trial."""
        ...

    def next_record(self, trials: Mapping[str, TrialView], store: Store) -> TrialRecord | None:
        """A job before any new proposal (a promotion, a planned run), as the record to run
        (new, or an existing one changed), or None."""
        ...

    def budget(self, trials: Mapping[str, TrialView]) -> int:
        """How many trials the run has in all (the live view's denominator)."""
        ...


class StopSearch:
    """ASHA's stop variant (module docstring)."""

    stage = Stage.SEARCH
    proposes = True

    def __init__(self, cfg: SweepConfig, ladder: tuple[int, ...]) -> None:
        self.cfg, self.ladder = cfg, ladder

    def order(self, record: TrialRecord) -> WorkOrder:
        top = self.cfg.asha.max_epochs
        return WorkOrder(until_epoch=top, budget_epochs=top, milestones=self.ladder, stop_at_milestones=True, end=Event.COMPLETED.value)

    def new_record(self, trial_id: str, params: Mapping[str, object], origin: str) -> TrialRecord:
        return TrialRecord(trial_id, dict(params), origin)

    def next_record(self, trials: Mapping[str, TrialView], store: Store) -> TrialRecord | None:
        return None

    def budget(self, trials: Mapping[str, TrialView]) -> int:
        return self.cfg.num_trials


class PromoteSearch(StopSearch):
    """ASHA's promote variant (module docstring)."""

    def order(self, record: TrialRecord) -> WorkOrder:
        top = self.cfg.asha.max_epochs
        until = record.until_epoch or top
        end = Event.COMPLETED.value if until >= top else Event.PAUSED.value
        return WorkOrder(until_epoch=until, budget_epochs=top, milestones=self.ladder, stop_at_milestones=False, end=end)

    def new_record(self, trial_id: str, params: Mapping[str, object], origin: str) -> TrialRecord:
        return TrialRecord(trial_id, dict(params), origin, until_epoch=self.ladder[0])

    def next_record(self, trials: Mapping[str, TrialView], store: Store) -> TrialRecord | None:
        """ASHA's get_job over the store: the best paused trial in the top 1/η of its rung
        (ranked over every objective of the sweep), with its target moved to the next rung."""
        a = self.cfg.asha
        rungs = [store.rung_points(k, a.metrics) for k in range(len(self.ladder))]
        promoted = [
            {tid for tid, t in trials.items() if (t.record.until_epoch or a.max_epochs) > milestone}
            for milestone in self.ladder
        ]
        busy = {tid for tid, t in trials.items() if t.running or t.event != Event.PAUSED.value}
        chosen = asha.promotion(rungs, promoted, a.reduction_factor, a.modes, busy)
        if chosen is None:
            return None
        tid, rung = chosen
        return dataclasses.replace(trials[tid].record, until_epoch=self.ladder[rung])


class FinalPlan:
    """``kdsweep retrain``'s final stage (module docstring): the planned records, in order."""

    stage = Stage.FINAL
    proposes = False

    def __init__(self, plan: Sequence[TrialRecord]) -> None:
        self.plan = deque(plan)

    def order(self, record: TrialRecord) -> WorkOrder:
        if record.until_epoch is None:
            raise ValueError(f"final-stage trial {record.trial_id} has no epoch budget (until_epoch)")
        budget = record.until_epoch
        return WorkOrder(
            until_epoch=budget, budget_epochs=budget, milestones=(), stop_at_milestones=False,
            end=Event.COMPLETED.value, checkpoint_every_report=True, test_at_end=True,
        )  # fmt: skip

    def new_record(self, trial_id: str, params: Mapping[str, object], origin: str) -> TrialRecord:
        raise RuntimeError("the final stage runs its plan; it proposes no trials")

    def next_record(self, trials: Mapping[str, TrialView], store: Store) -> TrialRecord | None:
        while self.plan:
            record = self.plan.popleft()
            if record.trial_id not in trials:  # a resumed run already holds the others
                return record
        return None

    def budget(self, trials: Mapping[str, TrialView]) -> int:
        return len(trials) + sum(1 for r in self.plan if r.trial_id not in trials)


def job_source(cfg: SweepConfig, plan: Sequence[TrialRecord] | None = None) -> JobSource:
    """The job source of a run: ``plan`` (final-stage records) for ``kdsweep retrain``, else
    the sweep's ASHA variant."""
    if plan is not None:
        return FinalPlan(plan)
    a = cfg.asha
    ladder = asha.rung_ladder(a.min_epochs, a.max_epochs, a.reduction_factor)
    return PromoteSearch(cfg, ladder) if a.variant == "promote" else StopSearch(cfg, ladder)


def order_of(cfg: SweepConfig, record: TrialRecord) -> WorkOrder:
    """The work order of ``record`` in a run of ``cfg`` (its job source by the record's stage)."""
    source = FinalPlan(()) if record.stage == Stage.FINAL.value else job_source(cfg)
    return source.order(record)
