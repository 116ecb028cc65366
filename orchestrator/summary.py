"""The summary of a run: the data model every reading module reads.

``report.summarize`` builds a :class:`RunSummary` from the results store and the run
directory; the report itself, the statistics (``significance.py``, ``tendencies.py``,
``analyses.py``), the Pareto front, the headline, the Optuna export, the HTML page and the
trainers' report sections read it. This module imports none of them, so none of them needs
another to be imported first: the model, and the few pure helpers over it that they share,
live here (``tests/orchestrator/test_import_cycles.py`` keeps the graph without a cycle).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import trial_order
from kdsweep.orchestrator.schema import Event
from kdsweep.orchestrator.warm_start import WarmSource

#: Origin of the fixed trials (``points_to_evaluate``, e.g. a research baseline).
FIXED = "fixed"


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """One trial as the store records it."""

    trial_id: str
    origin: str
    status: str
    epochs: int
    value: float | None
    params: dict[str, Any]
    attempts: int
    error: str | None


@dataclasses.dataclass(frozen=True)
class RungStat:
    """How many trials reached a rung, went past it, and were stopped or paused at it;
    ``diverged``: trials that reached it and diverged before the next rung (they count in
    ``reached`` and, when they trained past the milestone, in ``continued``); ``best`` over
    the trials that did not diverge."""

    rung: int
    epoch: int
    reached: int
    continued: int
    stopped: int
    paused: int
    best: float | None
    diverged: int = 0


@dataclasses.dataclass(frozen=True)
class FinalResult:
    """``kdsweep retrain``'s runs of one configuration: statistics over its completed runs.

    ``stats`` maps the sweep metric and every ``test_*`` metric to (mean, sample std, n);
    std is NaN for a single run. ``values`` holds, per such metric, the n values themselves
    (completed runs in trial order), which the significance tests need.
    """

    source: str
    origin: str
    params: dict[str, Any]
    epochs: int
    completed: int
    runs: int
    stats: dict[str, tuple[float, float, int]]
    values: dict[str, list[float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SweepState:
    """Where the search stands: what is left to run, and what ASHA has left behind for good.

    ``proposed`` counts the trials proposed (records or rows) that were not rejected. Trial
    ids left to run, each list in trial order: ``running``/``interrupted`` (started, not
    ended; which one depends on whether a driver holds the run), ``queued`` (proposed, no row
    yet), ``promoted`` (paused, then promoted by the driver, next rung not reported yet) and
    ``promotable`` (paused, and the scheduler's ``next_job`` — ASHA's ``get_job`` over the store's
    rung values — would promote it now, in the order it would). ``not_promoted`` holds the
    other paused trials: below their rung's top 1/η. ``finished`` is True when every one of
    ``num_trials`` was proposed and nothing is left to run; ``not_promoted`` trials then stay
    paused for good, since no rung can gain another trial.
    """

    proposed: int
    finished: bool
    running: list[str]
    interrupted: list[str]
    queued: list[str]
    promoted: list[str]
    promotable: list[str]
    not_promoted: list[str]

    @property
    def left(self) -> list[str]:
        """Every trial id a driver would still run, in trial order."""
        return sorted(self.running + self.interrupted + self.queued + self.promoted + self.promotable, key=trial_order)


@dataclasses.dataclass(frozen=True)
class RunSummary:
    cfg: SweepConfig
    trials: list[TrialSummary]  # ranked: best first; rejected proposals are not trials
    rungs: list[RungStat]
    driver: str | None
    skipped: list[str]
    #: Validation accuracy of the distillation teacher, for trainers that have one.
    teacher_val_acc: float | None = None
    #: Every row of the search stage, in store order (trainer report sections read these).
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Proposals the trainer rejected as untrainable: (trial id, reason).
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: ``kdsweep retrain`` results, best validation mean first.
    final: list[FinalResult] = dataclasses.field(default_factory=list)
    #: The run directory as the caller named it (None for a summary built by hand).
    run_dir: Path | None = None
    #: Per rung of the ladder: trial id -> the sweep metric recorded there (search stage).
    rung_values: list[dict[str, float]] = dataclasses.field(default_factory=list)
    #: What is left of the search (None for a summary built by hand).
    state: SweepState | None = None
    #: Trials that diverged (a non-finite loss or metric), in trial order: ``epochs`` is the
    #: epoch they diverged at, ``error`` which value; never ranked, never in a statistic.
    diverged: list[TrialSummary] = dataclasses.field(default_factory=list)
    #: ``Store.identity`` of the results ``rows`` were read from (None for a summary built by
    #: hand): the cached statistics' digest uses it instead of every row.
    results_identity: str | None = None
    #: The earlier runs the search started from (``launch --warm-start``), in the order given;
    #: empty for a cold start.
    warm_start: tuple[WarmSource, ...] = ()
    #: What a reading module derived from this summary, kept for the next reader of the same
    #: summary under that module's key (``analyses.of``: its statistics, computed or read from
    #: the run's cache once). Not part of what was read: never compared or shown, and a copy
    #: made with ``dataclasses.replace`` starts without it.
    memo: dict[str, object] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def metric(self) -> str:
        return self.cfg.asha.metric


def last_reports(summary: RunSummary) -> dict[str, dict[str, Any]]:
    """Each search trial's last ``report`` row (its furthest evaluation), by trial id."""
    out: dict[str, dict[str, Any]] = {}
    for row in summary.rows:
        if row["event"] == Event.REPORT.value:
            out[row["trial_id"]] = row
    return out


def test_metric(summary: RunSummary) -> str:
    """The held-out counterpart of the sweep metric: val_acc -> test_acc, J -> test_J."""
    return "test_" + summary.metric.removeprefix("val_")


def fmt_value(value: Any) -> str:
    """A table cell: "-" for None, a float to 4 significant digits ("nan" for NaN), anything
    else as ``str`` gives it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def fmt_mean_std(stat: tuple[float, float, int] | None) -> str:
    """A (mean, sample std, n) statistic of :attr:`FinalResult.stats` as "mean ± std (n=…)",
    "mean (n=1)" for a single run, "-" for None."""
    if stat is None:
        return "-"
    mean, std, n = stat
    return f"{mean:.4f} ± {std:.4f} (n={n})" if not math.isnan(std) else f"{mean:.4f} (n=1)"
