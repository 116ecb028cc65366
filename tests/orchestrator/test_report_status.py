"""`kdsweep status` tells where a sweep stands: finished, or what is left and how to go on."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.config import load_sweep, to_toml
from kdsweep.orchestrator.report import TrialSummary, _sweep_state
from kdsweep.orchestrator.schedulers import scheduler_of
from kdsweep.orchestrator.atomic import write_atomic
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from tests.conftest import SMALL_SWEEP, kdsweep


@pytest.fixture(scope="module")
def sweep_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "small.toml"
    path.write_text(SMALL_SWEEP)
    return path


def _launch(sweep: Path, run: Path, *sets: str) -> None:
    args = [a for item in sets for a in ("--set", item)]
    result = kdsweep("launch", str(sweep), "--out", str(run), "--no-live", *args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def promote_run(sweep_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("promote") / "run"
    _launch(sweep_path, run, "asha.variant=promote")
    return run


def _last_events(run: Path) -> Counter[str]:
    last = {r["trial_id"]: r["event"] for r in ds.dataset(run / "results").to_table().to_pylist()}
    return Counter(last.values())


def test_finished_promote_sweep_says_finished_and_names_trials_asha_left_behind(promote_run: Path) -> None:
    rows = ds.dataset(promote_run / "results").to_table().to_pylist()
    paused = _last_events(promote_run)["paused"]
    assert paused > 0, "a promote sweep of 12 trials leaves trials paused below the rung quota"
    # Independently of the report: get_job over the store promotes nobody any more.
    rungs = [{r["trial_id"]: r["val_acc"] for r in rows if r["event"] == "report" and r["rung"] == k} for k in range(3)]
    promoted = [{r["trial_id"] for r in rows if r["event"] == "report" and r["rung"] == k + 1} for k in range(2)] + [set()]
    assert asha.promotion(rungs, promoted, 3, "max", busy=frozenset()) is None

    out = kdsweep("status", str(promote_run))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "12 of 12 trials started; driver: none; finished: all 12 trials proposed and none left to run" in text
    assert f"paused for good {paused}" in text and f"{paused} paused trials are below it: they stay paused for good" in text
    assert "resume" not in text and "RUN_DIR" not in text and "left to run" not in text.replace("none left to run", "")


def test_finished_stop_sweep_says_finished_without_resume(sweep_path: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _launch(sweep_path, run)
    text = kdsweep("status", str(run)).stdout
    assert "finished: all 12 trials proposed and none left to run" in text
    assert "resume" not in text and "paused" not in text


def test_unfinished_sweep_prints_the_real_resume_command_and_resuming_finishes_it(promote_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "grown"
    shutil.copytree(promote_run, run, symlinks=True)  # the store may keep links among its files
    # What `kdsweep launch --resume RUN --set num_trials=15` writes before it drives: a
    # bigger budget, so the sweep is no longer finished and paused trials may yet rise.
    cfg = RunDir(run).load_config(["num_trials=15"])
    write_atomic(RunDir(run).frozen, to_toml(cfg.document).encode())
    text = kdsweep("status", str(run)).stdout
    assert f"12 of 15 trials started; driver: none; not finished, resume with: kdsweep launch --resume {run}" in text
    assert "paused, not promoted so far" in text and "may still lift them" in text and "finished:" not in text

    result = kdsweep("launch", "--resume", str(run), "--no-live")
    assert result.returncode == 0, result.stderr
    assert "finished: all 15 trials proposed and none left to run" in kdsweep("status", str(run)).stdout


def _paused(tid: str, value: float, epochs: int = 1) -> TrialSummary:
    return TrialSummary(tid, "tpe", "paused", epochs, value, {}, 1, None)


def test_state_lists_promoted_promotable_queued_and_not_promoted(sweep_path: Path) -> None:
    """Rung 0 holds six paused trials (quota ⌊6/3⌋ = 2: t0000, t0001); the driver already
    promoted t0000 (its record targets epoch 3), so get_job would hand out t0001 next; t0006
    is proposed but has not reported."""
    cfg = load_sweep(str(sweep_path), ["asha.variant=promote", "num_trials=7"])
    values = {f"t{i:04d}": 0.9 - 0.1 * i for i in range(6)}
    trials = [_paused(tid, v) for tid, v in values.items()]
    records = {tid: TrialRecord(tid, {}, "tpe", 0, 3 if tid == "t0000" else 1) for tid in [*values, "t0006"]}
    state = _sweep_state(cfg, scheduler_of(cfg.asha, cfg.seed), trials, set(), records, [values, {}, {}])
    assert (state.promoted, state.promotable, state.queued) == (["t0000"], ["t0001"], ["t0006"])
    assert state.not_promoted == ["t0002", "t0003", "t0004", "t0005"]
    assert state.left == ["t0000", "t0001", "t0006"] and not state.finished and state.proposed == 7

    # Two paused trials at rung 0: quota ⌊2/3⌋ = 0, nothing can run, the budget is spent.
    cfg2 = load_sweep(str(sweep_path), ["asha.variant=promote", "num_trials=2"])
    last_two = {tid: values[tid] for tid in ("t0004", "t0005")}
    state2 = _sweep_state(cfg2, scheduler_of(cfg2.asha, cfg2.seed), trials[4:], set(), {tid: TrialRecord(tid, {}, "tpe", 0, 1) for tid in last_two}, [last_two, {}, {}])
    assert state2.finished and state2.not_promoted == ["t0004", "t0005"] and not state2.left
