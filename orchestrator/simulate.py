"""``kdsweep simulate``: the real driver, searcher, ASHA policy and Parquet store, with the
synthetic trainer's curves, on a simulated backend with a virtual clock.

Hours of cluster time run in seconds because nothing waits: each epoch takes a virtual
duration drawn per trial from the synthetic settings (``epoch_s``, log-normal spread
``epoch_s_spread``), and the backend jumps from one epoch's end to the next. The run
directory it writes is an ordinary one (``kdsweep report`` reads it; its rows carry virtual
``reported_at`` and ``wall_s``). Writes are not fsynced: a simulation can be recomputed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.atomic import set_durable
from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig
from kdsweep.orchestrator.driver import Driver
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.worker import TrialSpec, trial_seed


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

    @property
    def epochs_saved(self) -> int:
        return self.epochs_without_stopping - self.epochs_trained


def check_simulable(cfg: SweepConfig) -> None:
    """ConfigError unless ``cfg`` can be simulated from closed-form curves."""
    if cfg.trainer != "synthetic":
        raise ConfigError([ConfigIssue(cfg.source, "trainer", cfg.trainer, "'synthetic': simulate draws the synthetic trainer's learning curves")])


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


def simulate(cfg: SweepConfig, out: Path, workers: int) -> SimulationResult:
    """Run ``cfg`` (synthetic trainer) on ``workers`` simulated workers into a new run
    directory ``out``; return the summary. Raises ConfigError for a sweep it cannot run."""
    from kdsweep.orchestrator.report import summarize

    check_simulable(cfg)
    real_start = time.perf_counter()
    set_durable(False)
    try:
        run = RunDir.create(out, cfg)
        lock = run.acquire_driver_lock()
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        vclock = VirtualClock(start)
        backend = SimulatedBackend(workers, vclock, synthetic_epoch_seconds(cfg), timeout_s=cfg.backend.timeout_min * 60)
        try:
            Driver(cfg, run, backend, clock=vclock.clock, poll_s=0.0).run_sweep()
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
    return SimulationResult(
        run_dir=str(run.path), workers=workers, num_trials=len(summary.trials),
        wall_s=vclock.t, gpu_hours=backend.busy_s * gpus / 3600.0, epochs_trained=backend.epochs,
        epochs_without_stopping=len(summary.trials) * cfg.asha.max_epochs,
        best_trial=leader.trial_id if leader else None, best_value=leader.value if leader else None,
        best_params=dict(leader.params) if leader else {}, best_found_at_s=found_at,
        real_s=time.perf_counter() - real_start,
    )  # fmt: skip


def describe(result: SimulationResult) -> list[str]:
    """The result as lines for a terminal."""
    saved = result.epochs_saved / max(1, result.epochs_without_stopping)
    lines = [
        f"simulated {result.num_trials} trials on {result.workers} workers in {result.real_s:.1f} s: {result.run_dir}",
        f"  sweep wall time {result.wall_s / 3600:.2f} h, {result.gpu_hours:.2f} GPU-hours",
        f"  epochs trained {result.epochs_trained} of {result.epochs_without_stopping} without early stopping (ASHA saved {result.epochs_saved}, {saved:.1%})",
    ]
    if result.best_trial is not None:
        when = "" if result.best_found_at_s is None else f", found after {result.best_found_at_s / 3600:.2f} h"
        lines.append(f"  best {result.best_trial}: {result.best_value:.4f}{when}; {result.best_params}")
    return lines
