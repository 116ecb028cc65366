"""The contract every backend passes (local, Ray, SLURM): the same tests, each backend's
module parametrises ``backend_factory`` and imports ``*`` from here.

A backend is only *where* ``run_trial`` runs: these tests submit real trials of the
synthetic trainer into a real run directory and check what comes back and what lands in
the Parquet store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator.backends import Backend, Finished
from kdsweep.orchestrator.config import SweepConfig, load_sweep_text
from kdsweep.orchestrator.policies import order_of
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.worker import TrialSpec
from tests.conftest import SMALL_SWEEP

#: (config, slots) -> backend. Each backend's test module provides this fixture.
Factory = Callable[[SweepConfig, int], Backend]


def make_run(tmp_path: Path, *overrides: str) -> tuple[SweepConfig, RunDir]:
    cfg = load_sweep_text(SMALL_SWEEP, "contract", ("points_to_evaluate=[]", *overrides))
    return cfg, RunDir.create(tmp_path / "run", cfg)


def spec(run: RunDir, tid: str, lr: float = 0.05, attempt: int = 0, until_epoch: int | None = None, stage: str = "search") -> TrialSpec:
    record = TrialRecord(tid, {"lr": lr, "momentum": 0.9, "width": 64}, "random", attempt, until_epoch, stage)
    return TrialSpec.of(run.path, record, order_of(run.load_config(), record))


def wait_all(backend: Backend, n: int, timeout_s: float = 240.0) -> list[Finished]:
    done: list[Finished] = []
    deadline = time.monotonic() + timeout_s
    while len(done) < n:
        assert time.monotonic() < deadline, f"only {len(done)} of {n} attempts finished in {timeout_s}s"
        done += backend.wait(1.0)
    return done


def run_one(backend: Backend, attempt: TrialSpec) -> Finished:
    """Submit one attempt, wait for it to end, close the backend; return how it ended."""
    try:
        backend.submit(attempt)
        (finished,) = wait_all(backend, 1)
    finally:
        backend.close()
    return finished


def store_rows(run: RunDir) -> list[dict]:
    return ds.dataset(run.results).to_table().to_pylist()


def test_a_submitted_trial_runs_to_completion_and_lands_in_the_store(backend_factory: Factory, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path)
    finished = run_one(backend_factory(cfg, 1), spec(run, "t0000"))
    assert finished.error is None and finished.outcome is not None
    assert (finished.outcome.trial_id, finished.outcome.event, finished.outcome.epoch) == ("t0000", "completed", 9)
    rows = store_rows(run)
    assert [r["epoch"] for r in rows if r["event"] == "report"] == list(range(1, 10))
    assert rows[-1]["event"] == "completed"


def test_a_final_stage_run_trains_its_budget_without_asha_and_evaluates_the_test_split(backend_factory: Factory, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path)
    finished = run_one(backend_factory(cfg, 1), spec(run, "t0003.r1", until_epoch=12, stage="final"))
    assert finished.error is None and finished.outcome is not None
    assert (finished.outcome.event, finished.outcome.epoch) == ("completed", 12)
    rows = store_rows(run)
    assert {r["stage"] for r in rows} == {"final"} and {r["rung"] for r in rows} == {-1}
    assert [r["epoch"] for r in rows if r["event"] == "report"] == list(range(1, 13))
    assert [r["epoch"] for r in rows if r["test_acc"] is not None] == [12, 12]


@pytest.fixture
def overlap_sleep_s() -> float:
    """Per-epoch sleep in the slots test: three epochs must outlast the spread of the two
    attempts' start times. Every backend starts its first attempts in fresh processes (worker
    processes, Ray actors, SLURM jobs) that import torch first: seconds, varying with load
    (measured up to ~5 s apart on a loaded 2-core machine)."""
    return 3.0


def test_slots_run_at_the_same_time(backend_factory: Factory, tmp_path: Path, overlap_sleep_s: float) -> None:
    cfg, run = make_run(tmp_path, f"settings.sleep_s={overlap_sleep_s}", "asha.max_epochs=3")
    backend = backend_factory(cfg, 2)
    try:
        backend.submit(spec(run, "t0000"))
        backend.submit(spec(run, "t0001", lr=0.06))
        done = wait_all(backend, 2)
    finally:
        backend.close()
    assert sorted(f.outcome.trial_id for f in done if f.outcome) == ["t0000", "t0001"]
    rows = store_rows(run)
    first = {r["trial_id"]: r["reported_at"] for r in rows if r["epoch"] == 1}
    # The end row: ASHA may stop the one of the two that reports second at rung 0 if worse.
    last = {r["trial_id"]: r["reported_at"] for r in rows if r["event"] in ("completed", "stopped")}
    # Each trial sleeps 3 epochs; run one after the other, one would start after the other ended.
    assert first["t0001"] < last["t0000"] and first["t0000"] < last["t0001"]


def test_an_exception_comes_back_as_an_error_with_its_traceback(backend_factory: Factory, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path, "settings.crash_at_epoch=2")
    finished = run_one(backend_factory(cfg, 1), spec(run, "t0000"))
    assert finished.outcome is None and finished.spec.trial_id == "t0000"
    assert "InjectedCrash: injected crash at epoch 2 (attempt 0)" in (finished.error or "")


@pytest.fixture
def in_process() -> bool:
    """Whether the backend runs attempts in the test's own process (the simulated one)."""
    return False


def test_a_dead_worker_process_is_reported_and_the_backend_keeps_working(backend_factory: Factory, tmp_path: Path, in_process: bool) -> None:
    if in_process:
        pytest.skip("an attempt that kills its process kills the driver too when both are one process")
    cfg, run = make_run(tmp_path, "settings.crash_at_epoch=2", "settings.crash_mode=exit")
    backend = backend_factory(cfg, 1)
    try:
        backend.submit(spec(run, "t0000"))
        (crashed,) = wait_all(backend, 1)
        backend.submit(spec(run, "t0000", attempt=1))
        (retried,) = wait_all(backend, 1)
    finally:
        backend.close()
    assert crashed.outcome is None and crashed.error
    assert retried.error is None and retried.outcome is not None and retried.outcome.event == "completed"
    reports = [(r["epoch"], r["attempt"]) for r in store_rows(run) if r["event"] == "report"]
    assert reports == [(1, 0)] + [(e, 1) for e in range(2, 10)], "the retry must resume from the epoch-1 checkpoint"


def test_a_cancelled_attempt_is_not_reported(backend_factory: Factory, tmp_path: Path) -> None:
    # The promote variant, so that t0001 trains to its first rung and pauses there.
    cfg, run = make_run(tmp_path, "settings.sleep_s=0.5", "asha.variant=promote")
    backend = backend_factory(cfg, 2)
    try:
        # A final-stage run: no ASHA that could end it before the cancel does.
        backend.submit(spec(run, "t0000", stage="final", until_epoch=9))
        backend.submit(spec(run, "t0001", lr=0.06, until_epoch=1))
        time.sleep(1.0)
        backend.cancel("t0000")
        done = wait_all(backend, 1)
        # Uncancelled, t0000 would finish its 9 epochs of 0.5 s within this wait.
        assert backend.wait(5.0) == []
    finally:
        backend.close()
    assert [f.spec.trial_id for f in done] == ["t0001"]
    assert done[0].outcome is not None and done[0].outcome.event == "paused"
    # Cancel must stop the attempt, not only hide it: it never reached its end in the store.
    assert [r["event"] for r in store_rows(run) if r["trial_id"] == "t0000" and r["event"] != "report"] == []


def test_close_is_idempotent(backend_factory: Factory, tmp_path: Path) -> None:
    cfg, _ = make_run(tmp_path)
    backend = backend_factory(cfg, 1)
    backend.close()
    backend.close()


def test_too_many_submissions_are_refused(backend_factory: Factory, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path, "settings.sleep_s=0.2")
    backend = backend_factory(cfg, 1)
    try:
        backend.submit(spec(run, "t0000"))
        with pytest.raises(RuntimeError):
            backend.submit(spec(run, "t0001"))
    finally:
        backend.close()


def test_an_attempt_whose_trial_already_ended_returns_that_end_and_trains_nothing(backend_factory: Factory, tmp_path: Path) -> None:
    """A resubmission of an attempt that ended (a requeued SLURM job, an orphan's race) gets
    the recorded end back and writes no row."""
    cfg, run = make_run(tmp_path, "asha.max_epochs=3")
    first = run_one(backend_factory(cfg, 1), spec(run, "t0000"))
    before = store_rows(run)
    again = run_one(backend_factory(cfg, 1), spec(run, "t0000"))
    assert first.outcome is not None and again.outcome is not None and again.error is None
    assert (again.outcome.event, again.outcome.epoch, again.outcome.value) == (first.outcome.event, 3, first.outcome.value)
    assert store_rows(run) == before
