"""``kdsweep simulate``: the real driver, ASHA policy and Parquet store on a simulated
backend with a virtual clock, so hours of cluster time run in seconds.

What is simulated is one :class:`Simulation`, made one of two ways:

* :func:`synthetic` — a sweep of the synthetic trainer: its searcher proposes, its closed-form
  curves train, and each epoch takes a virtual duration drawn per trial from its settings
  (``epoch_s``, log-normal spread ``epoch_s_spread``);
* :func:`replay` — a recorded run's own configurations, in the same order, with the curves
  and epoch times it recorded (``orchestrator/replay.py``, which also defines how a trial
  that needs an epoch the run never trained is censored), under other ASHA settings or
  worker counts.

Nothing waits: the backend jumps from one epoch's end to the next. The run directory is an
ordinary one (``kdsweep report`` reads it; its rows carry virtual ``reported_at`` and
``wall_s``). Writes are not fsynced: a simulation can be recomputed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text

from kdsweep.orchestrator.atomic import set_durable
from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig, load_sweep_text, parse_override
from kdsweep.orchestrator.driver import Driver, Proposer
from kdsweep.orchestrator.replay import CENSORED, RecordedRun, ReplayProposer
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.safe_text import plain
from kdsweep.orchestrator.schema import Event
from kdsweep.orchestrator.warm_start import WarmStart
from kdsweep.orchestrator.worker import TrialSpec, trial_seed
from kdsweep.trainers.base import TrainerFactory, TrialContext, trainer_spec

#: The top-level keys ``--set`` may change in a replay: how the sweep is run, not what is
#: trained (the curves are the recorded run's).
REPLAY_FIELDS = ("asha", "backend", "num_trials")


@dataclasses.dataclass(frozen=True)
class Simulation:
    """One simulated sweep: its config, how long each epoch takes, and — for a replay — who
    proposes and who trains instead of the config's searcher and trainer."""

    cfg: SweepConfig
    epoch_seconds: Callable[[TrialSpec, int], float]
    proposer: Proposer | None = None
    make_trainer: TrainerFactory | None = None
    #: The replayed run, or None for a synthetic sweep.
    recorded: RecordedRun | None = None
    #: The earlier runs' observations its searcher starts from (``--warm-start``), or None.
    warm_start: WarmStart | None = None


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What a simulated sweep cost and found (virtual seconds unless named ``real``)."""

    run_dir: str
    workers: int
    num_trials: int
    wall_s: float
    gpu_hours: float
    epochs_trained: int
    #: Epochs the same trials would have trained without early stopping.
    epochs_without_stopping: int
    best_trial: str | None
    best_value: float | None
    best_params: dict[str, Any]
    #: Virtual seconds from the start until the winner's last evaluation was recorded.
    best_found_at_s: float | None
    real_s: float
    #: Replay only: the recorded run, its own winner, and the trials stopped for lack of
    #: recorded epochs (see ``orchestrator/replay.py``).
    replayed_run: str | None = None
    recorded_best_trial: str | None = None
    censored: int | None = None

    @property
    def epochs_saved(self) -> int:
        return self.epochs_without_stopping - self.epochs_trained


def synthetic(cfg: SweepConfig) -> Simulation:
    """A sweep of the synthetic trainer (ConfigError for another trainer: only the synthetic
    one has closed-form curves)."""
    if cfg.trainer != "synthetic":
        raise ConfigError([ConfigIssue(cfg.source, "trainer", cfg.trainer, "'synthetic': simulate draws the synthetic trainer's learning curves (or replay a run with --replay)")])
    return Simulation(cfg, synthetic_epoch_seconds(cfg))


def synthetic_full_values(run: str | Path) -> dict[str, float]:
    """Each trial of a synthetic run and its value of the sweep's metric at ``max_epochs``
    without early stopping: its trainer's evaluation there (closed-form curve, the trial's
    own noise draw, the value a run that trained it to the end records). What a policy's
    choice is measured against (its regret)."""
    rd = RunDir(run)
    cfg = rd.load_config()
    spec = trainer_spec(cfg.trainer)
    top = cfg.asha.max_epochs
    values = {}
    for tid, record in rd.read_trials("search", cfg).items():
        ctx = TrialContext(tid, trial_seed(cfg.seed, tid), 0, rd.path, rd.path / "cache", "cpu", None, top)
        trainer = spec.build(record.params, cfg.settings, ctx)
        trainer.load_state_dict({"epoch": top})
        values[tid] = float(trainer.evaluate()[cfg.asha.metric])
    return values


def synthetic_epoch_seconds(cfg: SweepConfig) -> Callable[[TrialSpec, int], float]:
    """``(spec, epoch) -> seconds``: each trial's epoch time, ``epoch_s`` times a log-normal
    factor drawn once from the trial's seed (stable across attempts and resumes)."""
    settings = cfg.settings

    @functools.lru_cache(maxsize=None)
    def per_trial(trial_id: str) -> float:
        rng = random.Random(f"epoch_s:{trial_seed(cfg.seed, trial_id)}")
        return float(settings.epoch_s * math.exp(settings.epoch_s_spread * rng.gauss(0.0, 1.0)))

    def seconds(spec: TrialSpec, epoch: int) -> float:
        return per_trial(spec.trial_id)

    return seconds


def replay(run_dir: str, overrides: Sequence[str]) -> Simulation:
    """The recorded run ``run_dir`` again, with ``overrides`` of :data:`REPLAY_FIELDS` only
    (ConfigError naming any other, or a ``num_trials`` above what the run trained)."""
    recorded = RecordedRun.read(run_dir)
    issues = []
    for item in overrides:
        keys, _ = parse_override(item)
        if keys[0] not in REPLAY_FIELDS:
            allowed = f"only {', '.join(REPLAY_FIELDS)}: a replay re-runs the recorded configurations and curves"
            issues.append(ConfigIssue("--set", ".".join(keys), item, allowed))
    if issues:
        raise ConfigError(issues)
    frozen = RunDir(run_dir).frozen
    cfg = load_sweep_text(frozen.read_text(encoding="utf-8"), str(frozen), overrides)
    available = recorded.searched
    if cfg.num_trials > available:
        raise ConfigError([ConfigIssue("--set", "num_trials", cfg.num_trials, f"at most {available}: the trials {run_dir} trained")])
    cfg = dataclasses.replace(cfg, num_trials=min(cfg.num_trials, available))
    return Simulation(cfg, recorded.epoch_seconds, ReplayProposer(recorded), recorded.trainer, recorded)


def simulate(sim: Simulation, out: Path, workers: int) -> SimulationResult:
    """Run ``sim`` on ``workers`` simulated workers into a new run directory ``out``; return
    the summary."""
    from kdsweep.orchestrator.report import summarize

    cfg = sim.cfg
    real_start = time.perf_counter()
    set_durable(False)
    try:
        run = RunDir.create(out, cfg, sim.warm_start.to_bytes() if sim.warm_start is not None else None)
        lock = run.acquire_driver_lock()
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        vclock = VirtualClock(start)
        backend = SimulatedBackend(
            workers, vclock, sim.epoch_seconds, timeout_s=cfg.backend.timeout_min * 60, make_trainer=sim.make_trainer
        )
        try:
            Driver(cfg, run, backend, clock=vclock.clock, poll_s=0.0, proposer=sim.proposer).run_sweep()
        finally:
            lock.close()
    finally:
        set_durable(True)
    summary = summarize(str(run.path))
    leader = summary.trials[0] if summary.trials else None
    found_at = None
    if leader is not None:
        times = [r["reported_at"] for r in summary.rows if r["trial_id"] == leader.trial_id and r["event"] == "report"]
        found_at = (max(times) - start).total_seconds() if times else None
    gpus = cfg.backend.gpus_per_trial or 1.0
    replayed: dict[str, Any] = {}
    if sim.recorded is not None:
        own = summarize(sim.recorded.path)
        replayed = {
            "replayed_run": sim.recorded.path,
            "recorded_best_trial": own.trials[0].trial_id if own.trials else None,
            "censored": sum(
                1 for r in summary.rows
                if r["event"] == Event.STOPPED.value and str(r.get("error") or "").startswith(CENSORED)
            ),
        }  # fmt: skip
    return SimulationResult(
        run_dir=str(run.path), workers=workers, num_trials=len(summary.trials),
        wall_s=vclock.t, gpu_hours=backend.busy_s * gpus / 3600.0, epochs_trained=backend.epochs,
        # A diverged trial ends where it diverged, stopping or not.
        epochs_without_stopping=len(summary.trials) * cfg.asha.max_epochs + sum(t.epochs for t in summary.diverged),
        best_trial=leader.trial_id if leader else None, best_value=leader.value if leader else None,
        best_params=dict(leader.params) if leader else {}, best_found_at_s=found_at,
        real_s=time.perf_counter() - real_start, **replayed,
    )  # fmt: skip


def describe(result: SimulationResult) -> list[Text]:
    """The result as lines for a terminal; the run directory, the trial ids and the
    parameters are data (``safe_text.plain``)."""
    saved = result.epochs_saved / max(1, result.epochs_without_stopping)
    lines = [
        f"simulated {result.num_trials} trials on {result.workers} workers in {result.real_s:.1f} s: {result.run_dir}",
        f"  sweep wall time {_duration(result.wall_s)}, {result.gpu_hours:.3g} GPU-hours",
        f"  epochs trained {result.epochs_trained} of {result.epochs_without_stopping} without early stopping (ASHA saved {result.epochs_saved}, {saved:.1%})",
    ]
    if result.best_trial is not None:
        when = "" if result.best_found_at_s is None else f", found after {_duration(result.best_found_at_s)}"
        # None when no trial reported a value (e.g. every attempt outran backend.timeout_min).
        value = "no value" if result.best_value is None else f"{result.best_value:.4f}"
        lines.append(f"  best {result.best_trial}: {value}{when}; {result.best_params}")
    if result.replayed_run is not None:
        same = "the same trial" if result.best_trial == result.recorded_best_trial else "a different trial"
        lines.append(f"  replay of {result.replayed_run}: its own winner was {result.recorded_best_trial} ({same})")
        lines.append(f"  censored: {result.censored} trials stopped where the recorded run had no epoch to replay")
    return [plain(line) for line in lines]


def _duration(seconds: float) -> str:
    """``seconds`` in the unit that reads best: s below 2 min, min below 2 h, else h."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
