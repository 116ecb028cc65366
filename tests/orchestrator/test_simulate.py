"""The simulator and the driver's own logic on the simulated backend (virtual clock): the
same trials as a real run, and the driver's rules — rejection cap, ``eval_every_epochs``, a
crash between report and checkpoint, a timeout kill, the live snapshot."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from rich.console import Console

from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.checkpoint import save_checkpoint
from kdsweep.orchestrator.layout import checkpoint_path
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import load_sweep_text
from kdsweep.orchestrator import live
from kdsweep.orchestrator.driver import NOTICES_SHOWN, Driver, RejectedSpaceError, Snapshot
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.policies import order_of
from kdsweep.orchestrator.schema import NOT_AT_RUNG, TERMINAL_EVENTS, Event, row_key
from kdsweep.orchestrator.worker import TrialSpec, base_row, results_store
from kdsweep.orchestrator.simulate import synthetic_epoch_seconds
from tests.conftest import SMALL_SWEEP, kdsweep


def events(run: Path) -> list[tuple]:
    """Every row's identity and values, times aside, in a stable order."""
    rows = ds.dataset(run / "results").to_table().to_pylist()
    return sorted((r["trial_id"], r["event"], r["epoch"], r["rung"], r["origin"], r["param.lr"], r["param.momentum"], r["param.width"], r["val_acc"]) for r in rows)


@pytest.mark.slow
def test_a_simulated_sweep_records_what_a_real_one_does(sweep_file: Path, tmp_path: Path) -> None:
    """Differential: the same sweep and seed, one at a time, for real on the local backend and
    simulated: the same trials, parameters, reports and stop decisions."""
    sets = ["--set", "num_trials=10", "--set", "settings.sleep_s=0"]
    real = kdsweep("launch", str(sweep_file), "--out", str(tmp_path / "real"), "--no-live", "--max-concurrent", "1", *sets)
    assert real.returncode == 0, real.stderr
    sim = kdsweep("simulate", str(sweep_file), "--out", str(tmp_path / "sim"), "--workers", "1", "--format", "json", *sets)
    assert sim.returncode == 0, sim.stderr
    assert events(tmp_path / "real") == events(tmp_path / "sim")
    result = json.loads(sim.stdout)
    ends = [e for e in events(tmp_path / "sim") if e[1] in TERMINAL_EVENTS]
    assert result["num_trials"] == 10 and len(ends) == 10 and {e[1] for e in ends} == {"stopped", "completed"}
    assert result["epochs_trained"] == sum(1 for e in events(tmp_path / "sim") if e[1] == "report")
    assert result["epochs_saved"] == 10 * 9 - result["epochs_trained"] > 0
    # One worker: the sweep's virtual wall time is the sum of every trained epoch's time.
    assert result["wall_s"] == pytest.approx(result["gpu_hours"] * 3600)
    # An ordinary run directory: the report reads it.
    report = kdsweep("report", str(tmp_path / "sim"), "--format", "json")
    assert report.returncode == 0 and json.loads(report.stdout)["leaderboard"][0]["trial_id"] == result["best_trial"]


def simulated(tmp_path: Path, *overrides: str, workers: int = 2, timeout_s: float = float("inf"), plant: dict | None = None) -> tuple[Driver, SimulatedBackend, VirtualClock, list[Snapshot]]:
    cfg = load_sweep_text(SMALL_SWEEP, "small", ["settings.epoch_s=10", "settings.epoch_s_spread=0", *overrides])
    run = RunDir.create(tmp_path / "run", cfg)
    clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    backend = SimulatedBackend(workers, clock, synthetic_epoch_seconds(cfg), timeout_s=timeout_s)
    snapshots: list[Snapshot] = []
    if plant is not None:
        plant["run"] = run
        plant["hook"](run)
    return Driver(cfg, run, backend, clock=clock.clock, on_update=snapshots.append, poll_s=0.0), backend, clock, snapshots


def store(driver: Driver) -> list[dict]:
    return ds.dataset(driver.run.results).to_table().to_pylist()


def test_the_live_snapshot_follows_virtual_time(tmp_path: Path) -> None:
    driver, backend, clock, snapshots = simulated(tmp_path, "num_trials=6", "asha.max_epochs=3", workers=2)
    final = driver.run_sweep()
    # Six trials, two at a time, 10 virtual seconds per epoch.
    assert final.counts.get("running", 0) == 0 and sum(final.counts.values()) == 6
    assert final.elapsed_s == clock.t and 30 <= clock.t <= 6 * 3 * 10 / 2
    assert snapshots[0].elapsed_s == 0 and snapshots[-1] == final
    assert any(s.counts.get("running") == 2 for s in snapshots)
    assert [s.elapsed_s for s in snapshots] == sorted(s.elapsed_s for s in snapshots)
    assert final.best_trial is not None and final.best_value == max(r["val_acc"] for r in store(driver) if r["val_acc"] is not None and r["trial_id"] == final.best_trial)
    times = sorted(r["reported_at"] for r in store(driver))
    assert times[0] >= clock.start and (times[-1] - clock.start).total_seconds() == pytest.approx(clock.t)


def test_warnings_of_kdsweep_loggers_reach_the_live_view(tmp_path: Path) -> None:
    """A backend's warning during a sweep (SLURM's "node kd1 lost its jobs ...") is in the
    next snapshots, the latest NOTICES_SHOWN of them, and the live view shows them; the
    driver's handler is gone after the sweep."""
    driver, _, _, _ = simulated(tmp_path, "num_trials=4", "asha.max_epochs=3", workers=2)
    said: list[str] = []
    update = driver.on_update
    assert update is not None

    def warn_then_update(snapshot: Snapshot) -> None:
        if len(said) < 5:
            said.append(f"node kd{len(said)} lost its jobs")
            logging.getLogger("kdsweep.slurm").warning(said[-1])
        update(snapshot)

    driver.on_update = warn_then_update
    before = list(logging.getLogger("kdsweep").handlers)
    final = driver.run_sweep()
    assert len(said) == 5 and final.notices == tuple(said[-NOTICES_SHOWN:])
    console = Console(record=True, width=200)
    console.print(live.render(final))
    assert "node kd4 lost its jobs" in console.export_text() and "node kd0" not in console.export_text()
    assert logging.getLogger("kdsweep").handlers == before


def test_eval_every_epochs_reports_at_rungs_and_every_kth_epoch(tmp_path: Path) -> None:
    driver, *_ = simulated(tmp_path, "num_trials=1", "asha.max_epochs=9", "asha.eval_every_epochs=4")
    driver.run_sweep()
    assert sorted(r["epoch"] for r in store(driver) if r["event"] == "report") == [1, 3, 4, 8, 9]


def test_the_rejection_cap_stops_a_space_of_untrainable_proposals(tmp_path: Path) -> None:
    driver, *_ = simulated(tmp_path, "num_trials=3", "points_to_evaluate=[]", "settings.max_width=1")
    with pytest.raises(RejectedSpaceError, match="rejected the last 200 proposals"):
        driver.run_sweep()
    rows = store(driver)
    assert len(rows) == 200 and {r["event"] for r in rows} == {"rejected"}


def test_a_crash_between_report_and_checkpoint_is_reported_once(tmp_path: Path) -> None:
    """Epochs 1-3 are reported but the last checkpoint is epoch 2's (rung 1): the attempt died
    after reporting epoch 3, before checkpointing it. The next attempt trains epoch 3 again
    from the checkpoint and appends nothing twice."""

    def plant(run: RunDir) -> None:
        params = {"lr": 0.1, "momentum": 0.9, "width": 64}
        record = TrialRecord("t0000", params, "fixed")
        run.write_trial(record)
        cfg = run.load_config()
        spec = TrialSpec.of(run.path, record, order_of(cfg, record))
        at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        store = results_store(run.path)
        for epoch in (1, 2, 3):
            row = {**base_row(cfg, spec, Event.REPORT, epoch, NOT_AT_RUNG, at), "val_acc": 0.5}
            store.append([row], key=row_key("t0000", Event.REPORT.value, epoch))
        # The synthetic trainer's whole state is the epoch it reached.
        save_checkpoint(checkpoint_path(run.path, "t0000"), {"epoch": 2, "wall_s": 20.0, "trainer": {"epoch": 2}})

    driver, *_ = simulated(tmp_path, "num_trials=1", plant={"hook": plant})
    driver.run_sweep()
    reports = [r["epoch"] for r in store(driver) if r["event"] == "report"]
    assert sorted(reports) == list(range(1, 10))
    assert [r["event"] for r in store(driver) if r["event"] in TERMINAL_EVENTS] == ["completed"]


def test_a_timed_out_attempt_is_killed_retried_then_failed(tmp_path: Path) -> None:
    # 9 epochs of 10 s against a 45 s limit: every attempt dies at 45 s, after 4 epochs.
    driver, backend, clock, _ = simulated(tmp_path, "num_trials=1", "backend.max_retries=1", timeout_s=45.0)
    driver.run_sweep()
    rows = store(driver)
    (failed,) = [r for r in rows if r["event"] in TERMINAL_EVENTS]
    assert failed["event"] == "failed" and "timed out after 0.8 min" in failed["error"]
    assert failed["attempt"] == 1 and clock.t == pytest.approx(90.0)
    # The retry resumed from the rung-1 checkpoint (epoch 3): no epoch reported twice.
    assert sorted(r["epoch"] for r in rows if r["event"] == "report") == [1, 2, 3, 4, 5, 6, 7]


def replayed(run: Path) -> dict[tuple[str, int], float]:
    """(trial, epoch) -> val_acc of every report row."""
    return {(r["trial_id"], r["epoch"]): r["val_acc"] for r in ds.dataset(run / "results").to_table().to_pylist() if r["event"] == "report"}


def test_a_replay_reruns_a_run_and_never_invents_an_epoch(sweep_file: Path, tmp_path: Path) -> None:
    """``--replay``: with the recorded settings it records exactly what the run recorded; under
    a gentler ASHA it reports only recorded values and censors (counts) the rest; a replay
    that would change the experiment is refused."""
    sets = ["--set", "num_trials=24", "--set", "asha.max_epochs=9", "--set", "asha.reduction_factor=3"]
    source = tmp_path / "source"
    made = kdsweep("simulate", str(sweep_file), "--out", str(source), "--workers", "3", "--format", "json", *sets)
    assert made.returncode == 0, made.stderr
    again = kdsweep("simulate", "--replay", str(source), "--out", str(tmp_path / "again"), "--format", "json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert events(tmp_path / "again") == events(source)
    assert result["censored"] == 0 and result["best_trial"] == result["recorded_best_trial"] == json.loads(made.stdout)["best_trial"]
    assert result["wall_s"] == pytest.approx(json.loads(made.stdout)["wall_s"])

    gentle = tmp_path / "gentle"
    out = kdsweep("simulate", "--replay", str(source), "--out", str(gentle), "--workers", "6", "--set", "asha.reduction_factor=2", "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    recorded, replay = replayed(source), replayed(gentle)
    assert replay.items() <= recorded.items()  # every replayed value was recorded, unchanged
    rows = ds.dataset(gentle / "results").to_table().to_pylist()
    censored = [r for r in rows if r["event"] == "stopped" and (r["error"] or "").startswith("censored")]
    assert result["censored"] == len(censored) > 0
    for r in censored:  # stopped at its last recorded epoch, with that epoch's value
        assert r["epoch"] == max(e for t, e in recorded if t == r["trial_id"]) and r["val_acc"] == recorded[r["trial_id"], r["epoch"]]
    assert kdsweep("report", str(gentle), "--format", "json").returncode == 0

    for bad in (["--set", "settings.noise_std=0"], ["--set", "num_trials=25"]):
        refused = kdsweep("simulate", "--replay", str(source), "--out", str(tmp_path / "bad"), *bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert bad[1].split("=")[0] in refused.stderr + refused.stdout
        assert not (tmp_path / "bad").exists()


def test_an_evaluate_without_the_sweep_metric_fails_the_trial_naming_trainer_and_metric(tmp_path: Path) -> None:
    from kdsweep.trainers.synthetic import SyntheticTrainer

    class Forgetful(SyntheticTrainer):
        def evaluate(self) -> dict[str, float]:
            return {k: v for k, v in super().evaluate().items() if k != "val_acc"}

    cfg = load_sweep_text(SMALL_SWEEP, "small", ["num_trials=1", "backend.max_retries=0", "points_to_evaluate=[]"])
    run = RunDir.create(tmp_path / "run", cfg)
    clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    backend = SimulatedBackend(1, clock, synthetic_epoch_seconds(cfg), make_trainer=Forgetful)
    Driver(cfg, run, backend, clock=clock.clock, poll_s=0.0).run_sweep()
    (end,) = [r for r in ds.dataset(run.results).to_table().to_pylist() if r["event"] in TERMINAL_EVENTS]
    assert end["event"] == "failed"
    assert "trainer 'synthetic': evaluate() returned no 'val_acc'" in end["error"] and "train_loss" not in end["error"].split("returned")[0]


def test_a_training_screened_out_before_its_first_epoch_is_rejected_and_not_counted(tmp_path: Path) -> None:
    """``Training.screen``: measured before the first epoch (never on a resume), a trial not
    worth training is recorded as rejected with the reason and measurements, trains no epoch,
    is not counted in num_trials, and a space where every proposal is screened out stops."""
    from kdsweep.trainers.base import Screening
    from kdsweep.trainers.synthetic import SyntheticTrainer

    class Screened(SyntheticTrainer):
        def screen(self) -> Screening | None:
            return Screening(f"latency {self.latency_s:.3g} s too slow", {"latency_s": self.latency_s}) if self.latency_s > 0.005 else None

    def run(name: str, *overrides: str) -> tuple[Driver, SimulatedBackend]:
        cfg = load_sweep_text(SMALL_SWEEP, "small", ["points_to_evaluate=[]", "settings.epoch_s_spread=0", *overrides])
        clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        backend = SimulatedBackend(2, clock, synthetic_epoch_seconds(cfg), make_trainer=Screened)
        return Driver(cfg, RunDir.create(tmp_path / name, cfg), backend, clock=clock.clock, poll_s=0.0), backend

    driver, backend = run("mixed", "num_trials=8")  # latency 0.1 ms per width unit: 64 and 128 are too slow
    driver.run_sweep()
    rows = store(driver)
    rejected = [r for r in rows if r["event"] == "rejected"]
    assert rejected and all(r["param.width"] >= 64 and r["error"].startswith("latency") and r["latency_s"] > 0.005 for r in rejected)
    assert not {r["trial_id"] for r in rejected} & {r["trial_id"] for r in rows if r["event"] == "report"}
    ends = [r for r in rows if r["event"] in ("completed", "stopped")]
    assert len(ends) == 8 and all(r["param.width"] < 64 for r in ends)
    assert backend.epochs == sum(1 for r in rows if r["event"] == "report")  # a screened trial trains nothing

    everything, _ = run("all", "num_trials=3", "space.width={ type = \"choice\", values = [64, 128] }")
    with pytest.raises(RejectedSpaceError, match="rejected the last 200 proposals"):
        everything.run_sweep()
