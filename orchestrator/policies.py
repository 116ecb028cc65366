"""Where the driver's jobs come from, and the work order each attempt gets.

The driver runs one loop for every kind of run; what differs is a job source, chosen once
(:func:`job_source`):

* :class:`Search` — the sweep: new trials from the searcher, each trained as the sweep's
  scheduler says (``schedulers``: where a new trial's attempts end, the rung ladder, and
  before any new proposal the paused trial that runs next, if the policy pauses trials);
  the worker asks the scheduler at every rung milestone whether to go on.
* :class:`FinalPlan` — ``kdsweep retrain``'s final stage: exactly the planned runs, each to
  its full budget, no early stopping, a checkpoint at every evaluation, the test split at
  the end.

Each source turns a trial record into a :class:`WorkOrder`: the explicit instructions the
worker follows, and owns what it proposes: the sweep's searcher (or a replay's recorded
configurations) for :class:`Search`, nothing for :class:`FinalPlan` (its :class:`Unproposed`
proposer is told nothing). Neither the driver nor the worker branches on the stage or the
policy.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kdsweep.orchestrator import schedulers, warm_start
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.search_options import TellStatus
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
    #: The rung milestones: evaluated, checkpointed and reported at their rung, where the
    #: worker asks the sweep's scheduler whether to go on (below ``budget_epochs``). Empty
    #: when trials are not compared (the final stage).
    milestones: tuple[int, ...]
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
    #: The last epoch the store holds for the trial (0 before its first report).
    epoch: int
    running: bool


class Proposer(Protocol):
    """Where new trials' parameters come from, and what is told about their ends
    (:class:`~kdsweep.orchestrator.search.Searcher` is the one a sweep uses)."""

    def ask(self, trial_id: str) -> dict[str, Any]: ...

    def tell(self, trial_id: str, value: float | None, status: TellStatus = "ok", constraints: Mapping[str, float] | None = None) -> None: ...

    def replay(self, trial_id: str, params: Mapping[str, Any], value: float | None, status: TellStatus = "ok", constraints: Mapping[str, float] | None = None) -> None: ...


class Unproposed:
    """The proposer of a run that proposes nothing (the final stage): never asked, and what
    it is told of its planned runs is not a search result."""

    def ask(self, trial_id: str) -> dict[str, Any]:
        raise RuntimeError("the final stage runs its plan; it proposes no trials")

    def tell(self, trial_id: str, value: float | None, status: TellStatus = "ok", constraints: Mapping[str, float] | None = None) -> None:
        return None

    def replay(self, trial_id: str, params: Mapping[str, Any], value: float | None, status: TellStatus = "ok", constraints: Mapping[str, float] | None = None) -> None:
        return None


class JobSource(Protocol):
    """A kind of run, as the driver's loop sees it."""

    #: Which records and rows the run's trials are ("search" or "final").
    stage: Stage
    #: Where new trials come from; it is told how each ends.
    proposer: Proposer

    def proposals_left(self, counted: int) -> bool:
        """Whether to ask :attr:`proposer` for another trial, ``counted`` having counted
        against the run's budget so far."""
        ...

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


class Search:
    """The sweep (module docstring), under its scheduler; a scheduler that learns from the
    order results arrive in keeps its state in ``run_path`` (``schedulers.save``/``load``)."""

    stage = Stage.SEARCH

    def __init__(self, cfg: SweepConfig, run_path: str | os.PathLike[str], proposer: Proposer) -> None:
        self.cfg, self.run_path, self.proposer = cfg, run_path, proposer
        self.scheduler = schedulers.scheduler_of(cfg.asha, cfg.seed)
        # Restored from the run directory at the first job, when the store is at hand.
        self._restored = False
        self._saved: dict[str, Any] | None = None

    def proposals_left(self, counted: int) -> bool:
        return counted < self.cfg.num_trials

    def order(self, record: TrialRecord) -> WorkOrder:
        return _search_order(self.cfg, self.scheduler, record)

    def new_record(self, trial_id: str, params: Mapping[str, object], origin: str) -> TrialRecord:
        return TrialRecord(trial_id, dict(params), origin, until_epoch=self.scheduler.first_target(trial_id))

    def next_record(self, trials: Mapping[str, TrialView], store: Store) -> TrialRecord | None:
        """The scheduler's next job over the store (a paused trial, with its target moved on),
        for a policy that pauses trials. What the scheduler learned from the results that
        came in is saved before the job is handed out, so a driver killed in between resumes
        from the state that chose it."""
        if not self._restored:
            self.scheduler = schedulers.load(self.cfg.asha, self.cfg.seed, self.run_path, store)
            self._saved, self._restored = self.scheduler.state(), True
        policy = self.scheduler
        policy.observe(store, {tid: t.epoch for tid, t in trials.items()})
        self._saved = schedulers.save(policy, self.run_path, self._saved)
        if not policy.pauses:
            return None
        rungs = [store.rung_points(k, self.cfg.asha.metrics) for k in range(len(policy.ladder))]
        promoted = [{tid for tid, t in trials.items() if policy.target(t.record.until_epoch) > milestone} for milestone in policy.ladder]
        busy = {tid for tid, t in trials.items() if t.running or t.event != Event.PAUSED.value}
        job = policy.next_job(rungs, promoted, busy)
        if job is None:
            return None
        tid, until = job
        return dataclasses.replace(trials[tid].record, until_epoch=until)

    def budget(self, trials: Mapping[str, TrialView]) -> int:
        return self.cfg.num_trials


class FinalPlan:
    """``kdsweep retrain``'s final stage (module docstring): the planned records, in order."""

    stage = Stage.FINAL
    proposer: Proposer = Unproposed()

    def __init__(self, plan: Sequence[TrialRecord]) -> None:
        self.plan = deque(plan)

    def proposals_left(self, counted: int) -> bool:
        return False

    def order(self, record: TrialRecord) -> WorkOrder:
        if record.until_epoch is None:
            raise ValueError(f"final-stage trial {record.trial_id} has no epoch budget (until_epoch)")
        budget = record.until_epoch
        return WorkOrder(
            until_epoch=budget, budget_epochs=budget, milestones=(),
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


def _search_order(cfg: SweepConfig, policy: schedulers.Scheduler, record: TrialRecord) -> WorkOrder:
    """The work order of a search record: to the policy's target, milestones at its rungs."""
    top = cfg.asha.max_epochs
    until = policy.target(record.until_epoch)
    end = Event.COMPLETED.value if until >= top else Event.PAUSED.value
    return WorkOrder(until_epoch=until, budget_epochs=top, milestones=policy.ladder, end=end)


def job_source(
    cfg: SweepConfig,
    run_path: str | os.PathLike[str],
    plan: Sequence[TrialRecord] | None = None,
    proposer: Proposer | None = None,
) -> JobSource:
    """The job source of the run in ``run_path``: ``plan`` (final-stage records) for
    ``kdsweep retrain``, else the sweep under its scheduler, its new trials from ``proposer``
    (default: the sweep's searcher, which starts with the fixed points inside the space —
    the driver runs those outside as references — and, for a warm-started run, has been
    told the observations in the run's ``warm_start.json`` before anything else: a fresh
    driver and a resumed one feed it the same). ConfigError for an unreadable
    ``warm_start.json`` (``warm_start.read``)."""
    if plan is not None:
        return FinalPlan(plan)
    if proposer is None:
        from kdsweep.orchestrator.search import Searcher  # optuna: only for a run that searches

        inside = [p for p in cfg.points_to_evaluate if in_space(cfg, p)]
        searcher = Searcher(cfg.space, cfg.searcher, cfg.seed, cfg.asha.mode, points_to_evaluate=inside, options=cfg.searcher_options)
        warm = warm_start.read(RunDir(run_path), cfg)
        for observation in warm.observations if warm is not None else ():
            searcher.observe(observation.params, observation.value)
        proposer = searcher
    return Search(cfg, run_path, proposer)


def in_space(cfg: SweepConfig, point: Mapping[str, Any]) -> bool:
    """Whether every parameter of ``point`` lies in the sweep's space."""
    return all(spec.contains(point[spec.name]) for spec in cfg.space)


def order_of(cfg: SweepConfig, record: TrialRecord) -> WorkOrder:
    """The work order of ``record`` in a run of ``cfg`` (by the record's stage)."""
    if record.stage == Stage.FINAL.value:
        return FinalPlan(()).order(record)
    return _search_order(cfg, schedulers.scheduler_of(cfg.asha, cfg.seed), record)
