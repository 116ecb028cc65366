"""Limits as constraints: the student-topology trainer's constraint values, and how the
driver tells them to the searcher with every trial's end and replays the same on resume."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import load_sweep_text
from kdsweep.orchestrator.driver import Driver
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.search import Searcher
from kdsweep.orchestrator.simulate import synthetic_epoch_seconds
from kdsweep.trainers.base import Screening
from kdsweep.trainers.objective import ObjectiveSettings
from kdsweep.trainers.student_topology_spec import StudentTopology
from kdsweep.trainers.synthetic import Synthetic, SyntheticTrainer
from tests.conftest import SMALL_SWEEP


def test_topology_constraints_are_log_ratios_over_the_limits_set() -> None:
    assert StudentTopology.constraint_names(ObjectiveSettings()) == ()
    assert StudentTopology.constraint_names(None) == ()
    assert StudentTopology.constraints({"latency_s": 1.0, "num_params": 1e9}, ObjectiveSettings()) == {}
    both = ObjectiveSettings(max_latency_s=0.01, max_params=1000)
    assert StudentTopology.constraint_names(both) == ("max_latency_s", "max_params")
    values = StudentTopology.constraints({"latency_s": 0.02, "num_params": 500.0, "J": 0.3}, both)
    assert values == pytest.approx({"max_latency_s": math.log(2.0), "max_params": math.log(0.5)})
    # A measurement the row lacks, or cannot hold, gives no value.
    assert StudentTopology.constraints({"latency_s": None, "num_params": 2000.0}, both) == pytest.approx({"max_params": math.log(2.0)})
    assert StudentTopology.constraints({"latency_s": math.nan}, both) == {}
    # Over the limit by the least amount: still > 0; at it: <= 0 (screen rejects only over).
    over = StudentTopology.constraints({"latency_s": math.nextafter(0.01, 1.0), "num_params": 1000.0}, both)
    assert over["max_latency_s"] > 0 and over["max_params"] <= 0


#: The limit the synthetic trainer is given in the driver test, on its latency.
MAX_LATENCY_S = 0.005


class Screened(SyntheticTrainer):
    """Rejects students over MAX_LATENCY_S before their first epoch (widths 64 and 128), with
    the measurement in the row, as the student-topology trainer does."""

    def screen(self) -> Screening | None:
        if self.latency_s > MAX_LATENCY_S:
            return Screening(f"latency {self.latency_s:.3g} s > {MAX_LATENCY_S}", {"latency_s": self.latency_s})
        return None


class Recording:
    """A proposer that passes every call to a searcher and records what it was told."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.told: dict[str, tuple[Any, ...]] = {}

    def ask(self, trial_id: str) -> dict[str, Any]:
        return self.searcher.ask(trial_id)

    def tell(self, trial_id: str, value: float | None, status: Any = "ok", constraints: Mapping[str, float] | None = None) -> None:
        self.told[trial_id] = (value, status, dict(constraints or {}))
        self.searcher.tell(trial_id, value, status, constraints)

    def replay(self, trial_id: str, params: Mapping[str, Any], value: float | None, status: Any = "ok", constraints: Mapping[str, float] | None = None) -> None:
        if not (value is None and status == "ok"):
            self.told[trial_id] = (value, status, dict(constraints or {}))
        self.searcher.replay(trial_id, params, value, status, constraints)


def test_the_driver_tells_constraint_values_and_a_resume_replays_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer with a latency limit: every trial's end is told with its constraint value
    (from its last row), a student screened out over the limit is told ``infeasible``, a
    diverged one ``diverged``; a driver started again on the run replays exactly those tells,
    and its gp searcher proposes what the first one would."""
    monkeypatch.setattr(Synthetic, "constraint_names", classmethod(lambda cls, objective: ("max_latency_s",)))

    def constraints(cls: type, metrics: Mapping[str, Any], objective: Any) -> dict[str, float]:
        latency = metrics.get("latency_s")
        return {} if latency is None or not math.isfinite(latency) else {"max_latency_s": math.log(latency / MAX_LATENCY_S)}

    monkeypatch.setattr(Synthetic, "constraints", classmethod(constraints))
    cfg = load_sweep_text(SMALL_SWEEP, "small", [
        "points_to_evaluate=[]", "settings.epoch_s_spread=0", "settings.epoch_s=10", "num_trials=8",
        'searcher="gp"', "n_startup_trials=3", "asha.max_epochs=3", "settings.diverge_lr=0.3",
    ])  # fmt: skip
    run = RunDir.create(tmp_path / "run", cfg)

    def driver(proposer: Recording) -> Driver:
        clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        backend = SimulatedBackend(2, clock, synthetic_epoch_seconds(cfg), make_trainer=Screened)
        return Driver(cfg, RunDir(run.path), backend, clock=clock.clock, poll_s=0.0, proposer=proposer)

    def searcher() -> Searcher:
        return Searcher(cfg.space, cfg.searcher, cfg.seed, cfg.asha.mode, options=cfg.searcher_options)

    original = Recording(searcher())
    driver(original).run_sweep()
    statuses = {status for _, status, _ in original.told.values()}
    assert {"infeasible", "ok", "diverged"} <= statuses, original.told
    for value, status, told_constraints in original.told.values():
        if status == "infeasible":
            assert value is None and told_constraints["max_latency_s"] > 0
        elif status == "ok":
            assert told_constraints["max_latency_s"] <= 0

    resumed = Recording(searcher())
    driver(resumed)  # rebuilding its state replays the searcher
    assert resumed.told == original.told
    assert resumed.searcher.ask("next") == original.searcher.ask("next")
