"""Warm start: earlier runs' results as the searcher's first observations.

``kdsweep launch SWEEP --warm-start RUN_DIR [--warm-start RUN_DIR ...]`` starts a sweep's
searcher from what earlier runs found (``Searcher.observe``: before its first proposal,
drawing no seed), so that a second sweep over a narrowed space does not start from nothing.

What an earlier run gives (:func:`resolve`): each search trial of its results whose last
event is ``completed``, ``stopped`` or ``paused`` (the promote variant's trial that has not
gone on), whose parameters are a point of the new space, with its value of the sweep's
metric **at a common budget**: the epoch of the earlier run's first rung milestone
(``asha.min_epochs`` of its frozen config), the same epoch for every trial of that run. A
stopped trial's last value and a completed one's were measured after different training and
are not comparable, and a searcher that compared them would favour whatever trained
longest; the first rung is the budget every completed, stopped and paused trial of a sweep
reported at. The searcher thus learns what ranks well at that epoch: where the fast starters
are not the best finishers there (the synthetic trainer at epoch 1), it is steered towards
the fast starters. Left out, each counted under its reason (:data:`REASONS`):

* every trial of a run of another trainer ("other trainer"), or of another sweep metric or
  mode ("other metric"): its values measure something else;
* a trial that ``failed``, ``diverged`` or was ``rejected``, and one that has not ended
  ("not ended": running or interrupted when the warm start was resolved);
* a trial whose parameters miss a parameter of the new space, carry one it does not have,
  or hold a value outside its bounds or choices ("outside the space");
* a trial without a finite value of the metric at the common budget ("no value at the
  common budget").

The observations are resolved once, when the run is created, and written into it
(``layout.WARM_START``, by ``RunDir.create`` before the files that make it a run); from then
on the run reads only that file — its searcher (``policies.job_source``), a resume, the
report — never the earlier runs, which may have changed or gone since. A resumed searcher is
thus fed exactly the observations the first one was, and proposes as it would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdsweep.orchestrator import layout, strict_json
from kdsweep.orchestrator.atomic import PlantedLinkError, read_bytes
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig
from kdsweep.orchestrator.rundir import RunDir, trial_order
from kdsweep.orchestrator.schema import PARAM_PREFIX, Event, Stage
from kdsweep.orchestrator.space import Codec, is_finite_number, missing_and_unknown
from kdsweep.orchestrator.store import Store, StoreWarning

#: The option that names earlier runs; the one name every message about them uses.
OPTION = "--warm-start"

#: Why an earlier run's trial is left out, in the order they are tested (module docstring).
OTHER_TRAINER = "other trainer"
OTHER_METRIC = "other metric"
NOT_ENDED = "not ended"
OUTSIDE = "outside the space"
NO_VALUE = "no value at the common budget"
REASONS = (OTHER_TRAINER, OTHER_METRIC, Event.FAILED.value, Event.DIVERGED.value, Event.REJECTED.value, NOT_ENDED, OUTSIDE, NO_VALUE)

#: The last events of a trial whose value at the first rung is final.
_ENDED = frozenset({Event.COMPLETED.value, Event.STOPPED.value, Event.PAUSED.value})


@dataclasses.dataclass(frozen=True)
class Observation:
    """One earlier trial as the searcher is told it: ``params`` (normalised to the new
    space's types) reached ``value`` of the sweep's metric at its run's common budget."""

    run: str
    trial_id: str
    params: Mapping[str, Any]
    value: float


@dataclasses.dataclass(frozen=True)
class WarmSource:
    """What one earlier run gave: its resolved path, the epoch its values were taken at
    (its first rung milestone), how many trials were used, and how many were left out by
    reason (reasons with none absent). ``report --format json`` lists these under
    ``warm_start``."""

    run: str
    epoch: int
    trials: int
    left_out: Mapping[str, int]

    def describe(self) -> str:
        """One line for the launch and the text report."""
        left = ", ".join(f"{n} {reason}" for reason, n in self.left_out.items()) or "none"
        return f"warm start: {self.trials} trials from {self.run} at epoch {self.epoch} (left out: {left})"


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """The observations a run's searcher starts from, and what each earlier run gave."""

    sources: tuple[WarmSource, ...]
    observations: tuple[Observation, ...]

    def to_bytes(self) -> bytes:
        """The run's ``warm_start.json``: per source its run, epoch and left-out counts; per
        observation its run, trial id, params and value (a source's ``trials`` is the count
        of its observations, not stored twice)."""
        doc = {
            "sources": [{"run": s.run, "epoch": s.epoch, "left_out": dict(s.left_out)} for s in self.sources],
            "observations": [dataclasses.asdict(o) for o in self.observations],
        }
        return strict_json.dumps(doc, indent=1).encode()


def resolve(cfg: SweepConfig, runs: Sequence[str | os.PathLike[str]]) -> WarmStart:
    """The observations of the earlier ``runs`` for a new sweep ``cfg`` (module docstring),
    in the order the runs are given, each run's trials in trial order. Reads each run's
    frozen config and results only (no torch, no lock: a run being driven is read as it
    stands). ConfigError naming :data:`OPTION` and the path for one that is not a readable
    run directory, or is given twice."""
    issues: list[ConfigIssue] = []
    seen: set[Path] = set()
    sources, observations = [], []
    for given in runs:
        path = Path(given).resolve()
        try:
            if path in seen:
                raise _bad(given, "a run not given already (each earlier run counts once)")
            seen.add(path)
            source, used = _resolve_one(cfg, path, given)
        except ConfigError as exc:
            issues += exc.issues
            continue
        sources.append(source)
        observations += used
    if issues:
        raise ConfigError(issues)
    return WarmStart(tuple(sources), tuple(observations))


def _bad(given: str | os.PathLike[str], why: str) -> ConfigError:
    return ConfigError([ConfigIssue("command line", OPTION, str(given), why)])


def _resolve_one(cfg: SweepConfig, path: Path, given: str | os.PathLike[str]) -> tuple[WarmSource, list[Observation]]:
    """What the run in ``path`` (named ``given`` on the command line) gives ``cfg``'s sweep:
    its source entry and its observations (:func:`resolve`)."""
    run = RunDir(path)
    if not run.is_run():
        raise _bad(given, f"a run directory made by 'kdsweep launch' (with {layout.FROZEN} and {layout.META})")
    problems = run.layout_issues()
    try:
        if problems:
            raise ConfigError(problems)
        earlier = run.load_config()
    except ConfigError as exc:
        raise _bad(given, "a run directory kdsweep can read; " + "; ".join(str(i) for i in exc.issues)) from None
    epoch = earlier.asha.min_epochs
    metric = cfg.asha.metric
    with warnings.catch_warnings():
        # An unreadable fragment of an earlier run costs its rows, not the launch.
        warnings.simplefilter("ignore", StoreWarning)
        table = Store(run.path).table()
    names = [c for c in table.column_names if c.startswith(PARAM_PREFIX)]
    # Only the columns used: no time stamps, which to_pylist would convert with pandas.
    columns = ["trial_id", "event", "epoch", *[c for c in ("stage", metric) if c in table.column_names], *names]
    # A null stage: a row written before the column existed, all of them the search's.
    rows = [r for r in table.select(columns).to_pylist() if r.get("stage") in (None, Stage.SEARCH.value)]
    everyone = sorted({r["trial_id"] for r in rows}, key=trial_order)
    if earlier.trainer != cfg.trainer:
        whole: str | None = OTHER_TRAINER
    elif (earlier.asha.metric, earlier.asha.mode) != (metric, cfg.asha.mode):
        whole = OTHER_METRIC
    else:
        whole = None
    if whole is not None:
        return WarmSource(str(path), epoch, 0, {whole: len(everyone)} if everyone else {}), []
    last: dict[str, str] = {}
    value: dict[str, float | None] = {}
    params: dict[str, dict[str, Any]] = {}
    for row in rows:  # store order: each trial's rows as the engine wrote them, its end last
        tid = row["trial_id"]
        last[tid] = row["event"]
        params[tid] = {n[len(PARAM_PREFIX) :]: row[n] for n in names if row[n] is not None}
        if row["event"] == Event.REPORT.value and int(row["epoch"]) == epoch:
            value[tid] = row.get(metric)
    codecs = {spec.name: Codec.of(spec) for spec in cfg.space}
    left: Counter[str] = Counter()
    used = []
    for tid in everyone:
        event = last[tid]
        if event not in _ENDED:
            left[event if event in REASONS else NOT_ENDED] += 1
            continue
        point = _point(params[tid], codecs)
        if point is None:
            left[OUTSIDE] += 1
            continue
        v = value.get(tid)
        if v is None or not math.isfinite(v):
            left[NO_VALUE] += 1
            continue
        used.append(Observation(str(path), tid, point, float(v)))
    counts = {reason: left[reason] for reason in REASONS if left[reason]}
    return WarmSource(str(path), epoch, len(used), counts), used


def _point(params: Mapping[str, Any], codecs: Mapping[str, Codec]) -> dict[str, Any] | None:
    """``params`` as a point of the space of ``codecs`` (each value normalised to its type),
    or None when they miss a parameter of it, carry another, or hold a value outside it."""
    missing, extra = missing_and_unknown(params, list(codecs))
    if missing or extra or not all(codec.contains(params[name]) for name, codec in codecs.items()):
        return None
    return {name: codec.normalise(params[name]) for name, codec in codecs.items()}


def read(run: RunDir, cfg: SweepConfig) -> WarmStart | None:
    """The warm start of the run ``run`` of ``cfg`` (its ``warm_start.json``), None for a
    run that started cold. Every observation is checked to be a point of the space with a
    finite value, as the searcher takes it; ConfigError naming the file and what is wrong
    when it is not, or the file is not one kdsweep wrote (never read through a link)."""
    path = run.warm_start
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        doc = json.loads(read_bytes(path).decode("utf-8"))
        return _parse(doc, {spec.name: Codec.of(spec) for spec in cfg.space})
    except PlantedLinkError as exc:
        why = str(exc.strerror)
    except OSError as exc:
        why = f"a readable file ({exc.strerror})"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = f"JSON ({exc})"
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        why = f"the observations 'kdsweep launch --warm-start' wrote ({exc})"
    raise ConfigError([ConfigIssue(str(path), "(content)", "(unreadable)", f"{why}; restore it from a copy of the run")])


def _parse(doc: Any, codecs: Mapping[str, Codec]) -> WarmStart:
    """The :class:`WarmStart` of a parsed ``warm_start.json``; AttributeError, KeyError,
    TypeError or ValueError saying what is wrong."""
    if not isinstance(doc, dict) or set(doc) != {"sources", "observations"}:
        raise ValueError("an object with exactly 'sources' and 'observations'")
    observations = []
    for o in doc["observations"]:
        if set(o) != {f.name for f in dataclasses.fields(Observation)}:
            raise ValueError(f"an observation has run, trial_id, params and value; got {sorted(o)}")
        point = _point(o["params"], codecs)
        if point is None or not is_finite_number(o["value"]):
            raise ValueError(f"trial {o['trial_id']!r} of {o['run']!r}: a point of the sweep's space and a finite value")
        observations.append(Observation(str(o["run"]), str(o["trial_id"]), point, float(o["value"])))
    sources = []
    for s in doc["sources"]:
        left = {str(reason): int(n) for reason, n in s["left_out"].items()}
        trials = sum(1 for o in observations if o.run == s["run"])
        sources.append(WarmSource(str(s["run"]), int(s["epoch"]), trials, left))
    strays = {o.run for o in observations} - {s.run for s in sources}
    if strays:
        raise ValueError(f"observations of runs that are not sources: {sorted(strays)}")
    return WarmStart(tuple(sources), tuple(observations))
