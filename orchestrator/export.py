"""A run as an Optuna study, for the tools researchers already use (``optuna-dashboard``).

``kdsweep export RUN --optuna FILE`` writes the search stage of a run into an Optuna journal
file: one Optuna trial per kdsweep trial, in trial order, with its parameters (over the
distributions of the sweep's ``[space]``), the sweep metric at every evaluated epoch as the
intermediate values, and a state that says how it ended:

============================  =========================================================
kdsweep                       Optuna
============================  =========================================================
completed                     COMPLETE, value = the metric at its last epoch
stopped (ASHA)                PRUNED, value = the metric where it stopped, as Optuna's own
                              ``tell`` records a pruned trial
paused, never promoted        PRUNED, likewise
running, interrupted,         RUNNING (not ended: a resumed sweep trains it further)
paused to be promoted
failed, rejected, diverged    FAIL (the reason in the ``kdsweep.error`` user attribute;
                              for a diverged trial, which value went non-finite and when)
============================  =========================================================

A completed trial whose metric is NaN is FAIL, as Optuna records a NaN objective. The
kdsweep trial id, status, origin and attempts are user attributes; a parameter value outside
its distribution (a fixed research baseline outside the space) cannot be an Optuna parameter
and is kept as the user attribute ``param.<name>`` instead. Final-stage runs (``kdsweep
retrain``) are not trials of the search and are not exported.

The in-memory studies behind the report's parameter tendencies are built with the same
distributions (:func:`distributions`, :func:`new_study`). Nothing here imports torch.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from kdsweep.orchestrator.atomic import unusable_output
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig
from kdsweep.orchestrator.rundir import trial_order
from kdsweep.orchestrator.schema import PARAM_PREFIX, Event
from kdsweep.orchestrator.space import ParamSpec
from kdsweep.orchestrator.summary import RunSummary

#: How each ended kdsweep status maps to an Optuna state (see the module docstring).
_STATES: Mapping[str, TrialState] = {
    Event.COMPLETED.value: TrialState.COMPLETE,
    Event.STOPPED.value: TrialState.PRUNED,
    Event.PAUSED.value: TrialState.PRUNED,
    Event.FAILED.value: TrialState.FAIL,
    Event.DIVERGED.value: TrialState.FAIL,
    Event.REJECTED.value: TrialState.FAIL,
}


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution of one ``[space]`` parameter (quniform: a stepped float,
    whose bounds the sweep file already requires to be multiples of ``q``)."""
    if spec.kind == "choice":
        return CategoricalDistribution(spec.values)
    low, high = float(spec.low or 0.0), float(spec.high or 0.0)  # validated numbers: never None here
    if spec.kind == "int":
        return IntDistribution(int(low), int(high))
    return FloatDistribution(low, high, log=spec.kind == "loguniform", step=spec.q if spec.kind == "quniform" else None)


def distributions(space: Sequence[ParamSpec]) -> dict[str, BaseDistribution]:
    """Parameter name -> Optuna distribution, for every parameter of the space."""
    return {spec.name: distribution(spec) for spec in space}


def split_params(params: Mapping[str, Any], space: Sequence[ParamSpec]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values the space can take, the others: outside their parameter's range or options, or
    of no searched parameter). The space's test is the distributions' too: same bounds, grid
    and options."""
    specs = {spec.name: spec for spec in space}
    inside: dict[str, Any] = {}
    outside: dict[str, Any] = {}
    for name, value in params.items():
        spec = specs.get(name)
        (inside if spec is not None and spec.contains(value) else outside)[name] = value
    return inside, outside


def new_study(cfg: SweepConfig, storage: str | BaseStorage | None = None) -> optuna.Study:
    """An empty Optuna study named after the sweep, in the sweep metric's direction, with the
    metric's name. Optuna's per-study INFO log lines are silenced: kdsweep prints its own."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=cfg.name, direction="maximize" if cfg.asha.mode == "max" else "minimize")
    with warnings.catch_warnings():
        # Experimental since Optuna 3.2 and still flagged; the dashboard labels the axis with it.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([cfg.asha.metric])
    return study


def _trial(summary: RunSummary, rows: list[dict[str, Any]], status: str, dists: Mapping[str, BaseDistribution], left: set[str]) -> FrozenTrial:
    """One kdsweep trial (its search-stage rows, in store order; its status in the report) as
    an Optuna trial."""
    metric = summary.metric
    tid, last = rows[0]["trial_id"], rows[-1]
    curve = {int(r["epoch"]): float(r[metric]) for r in rows if r["event"] == Event.REPORT.value and r.get(metric) is not None}
    state = TrialState.RUNNING if tid in left or status not in _STATES else _STATES[status]
    value = curve[max(curve)] if curve and state in (TrialState.COMPLETE, TrialState.PRUNED) else None
    if value != value:  # NaN: Optuna has no NaN objective; it fails such a trial, and so do we
        state, value = TrialState.FAIL if state == TrialState.COMPLETE else state, None
    inside, outside = split_params({k[len(PARAM_PREFIX):]: v for k, v in last.items() if k.startswith(PARAM_PREFIX)}, summary.cfg.space)
    attrs: dict[str, Any] = {"kdsweep.trial_id": tid, "kdsweep.status": status, "kdsweep.origin": last.get("origin") or "", "kdsweep.attempts": 1 + max(int(r["attempt"]) for r in rows)}
    attrs.update({PARAM_PREFIX + k: v for k, v in outside.items()})
    if last.get("error"):
        attrs["kdsweep.error"] = str(last["error"])
    first = rows[0]
    # The first row is written after the first epoch; its wall time reaches back to the start.
    start: dt.datetime = first["reported_at"] - dt.timedelta(seconds=float(first.get("wall_s") or 0.0))
    # Stamps come from the writers' clocks, which may have stepped back or disagreed between
    # nodes: a trial never completes before it started.
    complete = max(start, last["reported_at"])
    return FrozenTrial(
        number=0, trial_id=0,  # both assigned by the storage
        state=state, value=value, datetime_start=start,
        datetime_complete=complete if state.is_finished() else None,
        params=inside, distributions={k: dists[k] for k in inside}, user_attrs=attrs, system_attrs={},
        intermediate_values=curve,
    )  # fmt: skip


def add_trials(summary: RunSummary, study: optuna.Study) -> int:
    """Add every search-stage trial of the run that has a row to ``study``, in trial order;
    returns how many. Proposals with no row yet (queued) are left out: nothing is known of them
    but their parameters."""
    dists = distributions(summary.cfg.space)
    left = set(summary.state.left) if summary.state is not None else set()
    status = {t.trial_id: t.status for t in summary.trials + summary.diverged} | {tid: Event.REJECTED.value for tid, _ in summary.rejected}
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in summary.rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    study.add_trials([_trial(summary, by_trial[tid], status[tid], dists, left) for tid in sorted(by_trial, key=trial_order)])
    return len(by_trial)


def write_journal(summary: RunSummary, path: Path, replace: bool = False) -> int:
    """Write the run as an Optuna journal at ``path`` (see the module docstring); returns the
    number of trials. The file appears whole or not at all: it is written under a temporary
    name beside ``path`` and renamed over it. Raises ConfigError if ``path`` exists and not
    ``replace`` (a journal is never appended to: its study would hold the trials twice) or is
    no file this user can create (:func:`~kdsweep.orchestrator.atomic.unusable_output`)."""
    why = unusable_output(path, new=not replace)
    if why is not None:
        raise ConfigError([ConfigIssue("command line", "--optuna", str(path), why)])
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        storage = JournalStorage(JournalFileBackend(str(tmp)))
        study = new_study(summary.cfg, storage)
        n = add_trials(summary, study)
        study.set_user_attr("kdsweep.metric", summary.metric)
        study.set_user_attr("kdsweep.run_dir", str(summary.run_dir))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
