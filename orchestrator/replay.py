"""What ``kdsweep simulate --replay RUN_DIR`` replays: a finished run's own configurations, in
the order it proposed them, with the learning curves and epoch times it recorded.

The replay runs the real driver, ASHA policy and store (``orchestrator/simulate.py``); only
the proposals and the training come from the recorded run:

* :class:`ReplayProposer` stands in for the searcher: trial ``tNNNN`` gets the parameters
  the recorded run gave ``tNNNN`` (fixed points included, rejected proposals too, which the
  trainer's ``check_params`` rejects again), so trial ids match between the two runs.
* :class:`RecordedTrainer` stands in for the trainer: ``evaluate`` returns every metric the
  recorded run reported at that epoch (training metrics included); a trial that diverged
  reports the recorded non-finite values at the epoch it diverged, and diverges again.

**Censoring.** A replay never invents a result. Where a configuration needs an epoch the
recorded run did not train or evaluate (ASHA stopped it earlier there, it failed, or the
replay's ``max_epochs`` is larger), the trial is *censored*: it is recorded as ``stopped`` at
its last epoch that was both recorded and reached in the replay, with the reason in the
``error`` column starting with :data:`CENSORED`. The replay's output counts these trials; a
replay under a more aggressive ASHA (larger η, fewer workers) censors nothing, a gentler one
censors the trials it would have let train further.

Epoch times: epoch ``e`` of a trial takes the recorded training seconds between the report
before ``e`` and the first report at or after it, spread evenly over those epochs (``wall_s``
of report rows is cumulative); epochs after the last report take that trial's mean.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.schema import Event, Stage
from kdsweep.orchestrator.store import Store
from kdsweep.orchestrator.worker import TrialSpec
from kdsweep.trainers.base import StopTrial, Training, TrialContext, trainer_spec

#: Start of the ``error`` text of a trial the replay stopped for lack of recorded data.
CENSORED = "censored"


@dataclasses.dataclass(frozen=True)
class RecordedCurve:
    """One trial of the recorded run: its metrics per evaluated epoch, and per-epoch seconds."""

    trial_id: str
    params: Mapping[str, Any]
    #: epoch -> every metric the report row at that epoch carries (validation and training).
    reports: Mapping[int, Mapping[str, float]]
    #: Cumulative training seconds at each reported epoch, in epoch order.
    epochs: Sequence[int]
    wall_s: Sequence[float]
    #: The epoch the recorded trial diverged at and the values it reported there (the
    #: non-finite one among them), or None: a replay that reaches that epoch diverges again.
    diverged: tuple[int, Mapping[str, float]] | None = None

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else 0

    def epoch_seconds(self, epoch: int) -> float:
        """Seconds epoch ``epoch`` took, from the cumulative ``wall_s`` of the reports."""
        if not self.epochs:
            return 0.0
        i = bisect.bisect_left(self.epochs, epoch)
        if i == len(self.epochs):
            return self.wall_s[-1] / self.epochs[-1]
        before_epoch, before_s = (self.epochs[i - 1], self.wall_s[i - 1]) if i else (0, 0.0)
        return max(0.0, self.wall_s[i] - before_s) / (self.epochs[i] - before_epoch)


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A finished run read for replay: its config, trial records and curves."""

    path: str
    cfg: SweepConfig
    records: Mapping[str, TrialRecord]
    curves: Mapping[str, RecordedCurve]
    #: The metric names of the run's trainer (the columns a curve may carry).
    metrics: Sequence[str]
    #: How many trials the recorded run trained (rejected proposals not counted): the most
    #: a replay can run.
    searched: int

    @classmethod
    def read(cls, run_dir: str) -> RecordedRun:
        """Read ``run_dir`` (ConfigError if it is not a run, or was edited)."""
        run = RunDir(run_dir)
        cfg = run.load_config()
        metrics = list(trainer_spec(cfg.trainer).metric_names(cfg.settings))
        records = run.read_trials(Stage.SEARCH.value, cfg)
        by_trial: dict[str, dict[int, dict[str, Any]]] = {}
        rejected: set[str] = set()
        diverged: dict[str, tuple[int, Mapping[str, float]]] = {}
        for row in Store(run.path).rows():
            if row.get("stage") not in (None, Stage.SEARCH.value):
                continue
            if row["event"] == Event.REPORT.value:
                by_trial.setdefault(row["trial_id"], {})[int(row["epoch"])] = row
            elif row["event"] == Event.REJECTED.value:
                rejected.add(row["trial_id"])
            elif row["event"] == Event.DIVERGED.value:
                diverged[row["trial_id"]] = (int(row["epoch"]), {k: float(row[k]) for k in metrics if row.get(k) is not None})
        curves = {}
        for tid, record in records.items():
            reports = by_trial.get(tid, {})
            epochs = sorted(reports)
            curves[tid] = RecordedCurve(
                trial_id=tid,
                params=record.params,
                reports={e: {k: float(reports[e][k]) for k in metrics if reports[e].get(k) is not None} for e in epochs},
                epochs=epochs,
                wall_s=[float(reports[e].get("wall_s") or 0.0) for e in epochs],
                diverged=diverged.get(tid),
            )
        searched = sum(1 for tid in records if tid not in rejected)
        return cls(str(run.path), cfg, records, curves, metrics, searched)

    def epoch_seconds(self, spec: TrialSpec, epoch: int) -> float:
        """The simulated backend's ``epoch_seconds``: what this epoch took in the recorded run."""
        return self.curves[spec.trial_id].epoch_seconds(epoch)

    def trainer(self, params: Mapping[str, Any], settings: Any, ctx: TrialContext) -> Training:
        """A :data:`~kdsweep.trainers.base.TrainerFactory` replaying the recorded curves."""
        return RecordedTrainer(self.curves[ctx.trial_id], params)


class ReplayProposer:
    """The searcher of a replay: proposes each trial id's recorded parameters. What it is told
    changes nothing (the recorded run's searcher already chose)."""

    def __init__(self, recorded: RecordedRun) -> None:
        self.recorded = recorded

    def ask(self, trial_id: str) -> dict[str, Any]:
        record = self.recorded.records.get(trial_id)
        if record is None:
            # The replay's num_trials is checked against the recorded run before it starts.
            raise RuntimeError(f"the recorded run {self.recorded.path} has no trial {trial_id} to replay")
        return dict(record.params)

    def tell(self, trial_id: str, value: float | None, status: str = "ok", constraints: Mapping[str, float] | None = None) -> None:
        """Nothing to learn: the proposals are the recorded run's."""

    def replay(self, trial_id: str, params: Mapping[str, Any], value: float | None, status: str = "ok", constraints: Mapping[str, float] | None = None) -> None:
        """Nothing to rebuild on resume: the proposals are a function of the trial id."""


class RecordedTrainer(Training):
    """A trial's recorded curve behind the trainer contract (see the module docstring)."""

    def __init__(self, curve: RecordedCurve, params: Mapping[str, Any]) -> None:
        if dict(params) != dict(curve.params):
            raise RuntimeError(f"replayed {curve.trial_id} with {dict(params)}, but the recorded run trained {dict(curve.params)}")
        self.curve = curve
        self.epoch = 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        if self.curve.diverged is not None and epoch == self.curve.diverged[0]:
            self.epoch = epoch
            return dict(self.curve.diverged[1])  # the worker ends the trial on the non-finite value
        if epoch > self.curve.last_epoch:
            raise StopTrial(f"{CENSORED}: the recorded run never trained {self.curve.trial_id} to epoch {epoch} (it ended at epoch {self.curve.last_epoch})")
        self.epoch = epoch
        return {}  # the recorded training metrics come with the evaluation's row

    def evaluate(self) -> dict[str, float]:
        if self.epoch not in self.curve.reports:
            raise StopTrial(f"{CENSORED}: the recorded run did not evaluate {self.curve.trial_id} at epoch {self.epoch}")
        return dict(self.curve.reports[self.epoch])

    def test(self) -> dict[str, float]:
        raise StopTrial(f"{CENSORED}: a replay has no test-split results")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
