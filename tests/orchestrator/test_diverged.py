"""Diverged trials: the first non-finite value a trainer reports (a loss or a metric) ends its
trial at once as ``diverged`` — no further epoch, no retry — and the trial is counted apart by
status, report, HTML and the Optuna export, kept out of the leaderboard and every statistic,
replayed as diverging by ``simulate --replay``, and told to the searcher, which learns from it."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path

import optuna
import pyarrow.dataset as ds
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import load_sweep, load_sweep_text
from kdsweep.orchestrator.driver import Driver
from kdsweep.orchestrator.html_report import build_html
from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.simulate import simulate, synthetic, synthetic_epoch_seconds
from tests.conftest import SMALL_SWEEP, kdsweep

DIVERGE_LR = 0.2


def _rows(run: Path) -> list[dict]:
    return ds.dataset(run / "results").to_table().to_pylist()


@pytest.fixture(scope="module")
def diverging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real local sweep of the synthetic trainer with ``settings.diverge_lr = 0.2``: random
    search over lr in [1e-4, 1] puts about 17 % of the trials at or above it."""
    run = tmp_path_factory.mktemp("diverged") / "run"
    sets = ["searcher=random", "num_trials=30", "seed=5", f"settings.diverge_lr={DIVERGE_LR}", "settings.sleep_s=0", "backend.max_retries=2"]
    done = kdsweep("launch", "synthetic", "--out", str(run), "--no-live", *[a for s in sets for a in ("--set", s)])
    assert done.returncode == 0, done.stderr
    return run


def test_every_trial_past_its_first_epoch_at_a_diverging_lr_ends_diverged_at_epoch_2(diverging: Path) -> None:
    rows = _rows(diverging)
    by_trial: dict[str, list[dict]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    diverged = []
    for tid, trows in by_trial.items():
        ends = [r for r in trows if r["event"] not in ("report", "paused")]
        (end,) = ends  # one terminal row per trial
        high = trows[0]["param.lr"] >= DIVERGE_LR
        stopped_at_1 = end["event"] == "stopped" and end["epoch"] == 1
        if high and not stopped_at_1:
            diverged.append(tid)
            assert end["event"] == "diverged" and end["epoch"] == 2, end
            assert end["error"] == "non-finite train_loss = nan at epoch 2 (from train_epoch())"
            assert math.isnan(end["train_loss"])
            # No report after the first epoch, no second attempt (max_retries = 2 was there to use).
            assert [r["epoch"] for r in trows if r["event"] == "report"] == [1]
            assert {r["attempt"] for r in trows} == {0}
        else:
            assert end["event"] != "diverged"
    assert len(diverged) >= 3, "the sweep should have trials that diverge"

    summary = summarize(str(diverging))
    assert sorted(t.trial_id for t in summary.diverged) == sorted(diverged)
    assert not {t.trial_id for t in summary.trials} & set(diverged)
    assert not any(set(values) & set(diverged) for values in summary.rung_values)  # no statistic sees them
    assert summary.rungs[0].diverged == len(diverged) and summary.rungs[0].reached == len(by_trial)
    assert summary.state is not None and summary.state.finished

    status = kdsweep("status", str(diverging)).stdout
    assert f"diverged {len(diverged)}" in status and "finished" in status
    assert f"{len(by_trial)} of 30 trials started" in status  # diverged trials started too
    doc = json.loads(kdsweep("report", str(diverging), "--format", "json").stdout)
    assert {r["trial_id"] for r in doc["leaderboard"]}.isdisjoint(diverged)
    assert sorted(d["trial_id"] for d in doc["diverged"]) == sorted(diverged) and {d["epoch"] for d in doc["diverged"]} == {2}
    table = kdsweep("report", str(diverging)).stdout
    assert f"diverged {len(diverged)} trials" in table
    assert f"diverged {len(diverged)} trials" in build_html(summary)


def test_the_optuna_export_fails_diverged_trials_with_the_reason(diverging: Path, tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    assert kdsweep("export", str(diverging), "--optuna", str(journal)).returncode == 0
    study = optuna.load_study(study_name="synthetic", storage=JournalStorage(JournalFileBackend(str(journal))))
    diverged = [t for t in study.trials if t.user_attrs["kdsweep.status"] == "diverged"]
    assert diverged and all(t.state == optuna.trial.TrialState.FAIL for t in diverged)
    assert all(t.user_attrs["kdsweep.error"].startswith("non-finite train_loss = nan at epoch 2") for t in diverged)


def test_a_replay_diverges_the_same_trials_at_the_same_epochs(diverging: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    done = kdsweep("simulate", "--replay", str(diverging), "--out", str(out), "--workers", "1")
    assert done.returncode == 0, done.stderr
    ends = lambda run: {r["trial_id"]: r["epoch"] for r in _rows(run) if r["event"] == "diverged"}  # noqa: E731
    recorded, replayed = ends(diverging), ends(out)
    assert replayed and replayed.items() <= recorded.items()
    # ASHA in one worker may stop a trial earlier than the recorded run's two workers did (its
    # decisions see other trials' values at each rung): such a trial ends before it diverged.
    reached = {}
    for r in _rows(out):
        reached[r["trial_id"]] = max(reached.get(r["trial_id"], 0), r["epoch"])
    assert all(reached.get(tid, 0) < epoch for tid, epoch in recorded.items() if tid not in replayed)


def test_a_value_that_goes_non_finite_in_evaluate_ends_the_trial_there_without_a_retry(tmp_path: Path) -> None:
    from kdsweep.trainers.synthetic import SyntheticTrainer

    class Overflowing(SyntheticTrainer):
        def evaluate(self) -> dict[str, float]:
            values = super().evaluate()
            return {**values, "val_loss": math.inf} if self.epoch == 3 else values

    cfg = load_sweep_text(SMALL_SWEEP, "small", ["num_trials=1", "backend.max_retries=3", "points_to_evaluate=[{ lr = 0.05, momentum = 0.9, width = 128 }]"])
    run = RunDir.create(tmp_path / "run", cfg)
    clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    backend = SimulatedBackend(1, clock, synthetic_epoch_seconds(cfg), make_trainer=Overflowing)
    snapshot = Driver(cfg, run, backend, clock=clock.clock, poll_s=0.0).run_sweep()
    rows = _rows(tmp_path / "run")
    assert [(r["event"], r["epoch"]) for r in rows] == [("report", 1), ("report", 2), ("diverged", 3)]
    assert rows[-1]["error"] == "non-finite val_loss = inf at epoch 3 (from evaluate())" and rows[-1]["val_acc"] > 0.5
    assert snapshot.counts == {"diverged": 1} and snapshot.best_trial is None
    assert backend.epochs == 3


@pytest.mark.slow
def test_the_gp_searcher_learns_to_avoid_where_trials_diverge(tmp_path: Path) -> None:
    """Diverged trials reach Optuna's samplers as completed with the worst loss seen
    (``search.py``): the GP's later proposals leave the diverging lr range that its random
    start sampled. (hyperopt's TPE sees them as infinite losses and, with a diverging range
    next to the optimum it converges on, keeps sampling its edge: README, "Diverged trials".)"""
    cfg = load_sweep("synthetic", ["searcher=gp", "seed=1", "num_trials=60", f"settings.diverge_lr={DIVERGE_LR}", "points_to_evaluate=[]"])
    simulate(synthetic(cfg), tmp_path / "run", workers=4)
    summary = summarize(str(tmp_path / "run"))
    trials = sorted(summary.trials + summary.diverged, key=lambda t: t.trial_id)
    high = [t.params["lr"] >= DIVERGE_LR for t in trials]
    early, late = sum(high[:20]), sum(high[-20:])
    print(f"gp proposals at lr >= {DIVERGE_LR}: {early} of the first 20, {late} of the last 20")
    assert early >= 2 and late < early / 2


@pytest.mark.slow
def test_a_loss_weights_trial_whose_summed_hint_blows_up_ends_diverged(tmp_path: Path) -> None:
    """Seed 000's range read with the hint summed over batch and features (the BYOT
    reference's reduction): c = 1, i = 5 outweighs the rest of the loss by orders of magnitude
    and the loss goes NaN in the first epoch; the baseline (i = 1e-6) trains."""
    run = tmp_path / "run"
    baseline = "{ a = 0.1, b = 0.05, c = 0.09, d = 25, e = 50, f = 1.0, g = 1.0, h = 0.1, i = 1e-6 }"
    blowup = "{ a = 1.0, b = 1.0, c = 1.0, d = 100, e = 100, f = 1.0, g = 1.0, h = 5.0, i = 5.0 }"
    sets = [
        "data.dataset=digits", "data.image_size=8", "num_trials=2", "searcher=random", "asha.min_epochs=1", "asha.max_epochs=3",
        "backend.max_concurrent=2", "settings.student_width=0.125", "settings.teacher_width=0.125", "settings.teacher_epochs=1",
        "settings.batch_size=64", "settings.lr=0.1", "settings.hint_reduction=sum", f"settings.teacher_cache={tmp_path / 'cache'}",
        f"points_to_evaluate=[{baseline}, {blowup}]",
    ]  # fmt: skip
    done = kdsweep("launch", "loss_weights", "--out", str(run), "--no-live", *[a for s in sets for a in ("--set", s)], timeout=600)
    assert done.returncode == 0, done.stderr
    ends = {r["trial_id"]: r for r in _rows(run) if r["event"] not in ("report", "paused")}
    assert ends["t0001"]["event"] == "diverged" and ends["t0001"]["error"].startswith("non-finite train_loss = nan at epoch 1")
    assert ends["t0000"]["event"] == "completed"
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    assert [r["trial_id"] for r in doc["leaderboard"]] == ["t0000"] and [d["trial_id"] for d in doc["diverged"]] == ["t0001"]
    assert "diverged 1" in kdsweep("status", str(run)).stdout
