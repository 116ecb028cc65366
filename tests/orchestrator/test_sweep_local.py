"""End to end on the local backend: real worker processes, a real Parquet store on disk,
the installed CLI. Covers completion, reports, retries, failures, the promote variant, and
resume after ``kill -9`` of the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.schema import REQUIRED_COLUMNS, TERMINAL_EVENTS
from tests.conftest import kdsweep


def rows(run: Path) -> list[dict]:
    return ds.dataset(run / "results").to_table().to_pylist()


def terminal_events(run: Path) -> Counter[str]:
    return Counter(r["trial_id"] for r in rows(run) if r["event"] in TERMINAL_EVENTS)


def test_sweep_runs_to_the_end_and_reports(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live")
    assert result.returncode == 0, result.stderr
    assert "small: top 10 of 12 trials by val_acc" in result.stdout
    assert "rung survival" in result.stdout

    table = ds.dataset(run / "results").to_table()
    assert REQUIRED_COLUMNS <= set(table.column_names)
    assert {"val_acc", "train_loss", "param.lr", "param.width", "param.momentum"} <= set(table.column_names)
    ends = terminal_events(run)
    assert sorted(ends) == [f"t{i:04d}" for i in range(12)] and set(ends.values()) == {1}
    events = Counter(r["event"] for r in rows(run))
    assert events["stopped"] > 0 and events["completed"] > 0
    # The fixed point is trial 0, with exactly its parameters, marked as such.
    first = [r for r in rows(run) if r["trial_id"] == "t0000"][0]
    assert (first["param.lr"], first["param.momentum"], first["param.width"], first["origin"]) == (0.1, 0.9, 64, "fixed")
    # Rung milestones only at 1, 3, 9; reports every epoch.
    assert {r["rung"] for r in rows(run) if r["event"] == "report"} == {-1, 0, 1, 2}
    assert {r["epoch"] for r in rows(run) if r["rung"] == 1} == {3}

    as_json = json.loads(kdsweep("report", str(run), "--format", "json", "--top", "5").stdout)
    board = as_json["leaderboard"]
    assert len(board) == 5 and board[0]["epochs"] == 9 and board[0]["status"] == "completed"
    assert [r["rung"] for r in as_json["rungs"]] == [0, 1, 2] and as_json["rungs"][0]["reached"] == 12
    csv_out = kdsweep("report", str(run), "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("rank,trial_id,val_acc,epochs,status") and len(csv_out) == 11
    status = kdsweep("status", str(run))
    assert status.returncode == 0 and "12 of 12 trials started; driver: none" in status.stdout

    # The driver compacts the results when the sweep ends: reports open one file, not hundreds.
    assert len(list((run / "results").glob("*.parquet"))) == 1


@pytest.mark.parametrize("mode", ["exception", "exit"])
def test_crashed_trials_are_retried_from_their_checkpoint(sweep_file: Path, tmp_path: Path, mode: str) -> None:
    run = tmp_path / "run"
    sets = ["--set", "settings.crash_at_epoch=2", "--set", f"settings.crash_mode={mode}", "--set", "num_trials=4"]
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *sets)
    assert result.returncode == 0, result.stderr
    all_rows = rows(run)
    assert set(terminal_events(run).values()) == {1} and len(terminal_events(run)) == 4
    assert not [r for r in all_rows if r["event"] == "failed"]
    assert any(r["attempt"] == 1 for r in all_rows), "no trial crashed: the test proves nothing"
    for tid in terminal_events(run):
        reports = [r for r in all_rows if r["trial_id"] == tid and r["event"] == "report"]
        epochs = [r["epoch"] for r in reports]
        assert len(epochs) == len(set(epochs)), f"{tid} reported an epoch twice: {epochs}"
        # Epoch 1 came from attempt 0; the retry resumed from the epoch-1 checkpoint.
        assert reports[0]["attempt"] == 0 and all(r["attempt"] == 1 for r in reports[1:])


def test_trial_failing_every_attempt_is_recorded_failed_with_its_error(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    sets = ["--set", "settings.crash_at_epoch=1", "--set", "settings.crash_attempts=9", "--set", "num_trials=3"]
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *sets)
    assert result.returncode == 0, result.stderr
    failed = [r for r in rows(run) if r["event"] == "failed"]
    assert sorted(r["trial_id"] for r in failed) == ["t0000", "t0001", "t0002"]
    assert all("InjectedCrash: injected crash at epoch 1 (attempt 1)" in r["error"] for r in failed)
    assert all(r["attempt"] == 1 and r["epoch"] == 0 for r in failed)
    assert "failed t0000 after 2 attempts" in result.stdout


def test_promote_variant_runs_exactly_ashas_get_job_over_the_store(sweep_file: Path, tmp_path: Path) -> None:
    """With one slot the job order is deterministic: replaying the store's rows through the
    pure ``asha.promotion`` must predict every job the driver started (promotion or new)."""
    run = tmp_path / "run"
    sets = ["--set", "asha.variant=promote", "--set", "num_trials=18", "--set", "backend.max_concurrent=1"]
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *sets)
    assert result.returncode == 0, result.stderr
    all_rows = sorted(rows(run), key=lambda r: r["reported_at"])
    ladder = (1, 3, 9)
    # Each job is a segment of one trial: its rows from the first epoch after a pause (or 1)
    # up to its next pause or completion. Recover the job sequence from the rows.
    jobs: list[tuple[str, int]] = []  # (trial, rung the segment starts from; -1: a new trial)
    seen: set[str] = set()
    for r in all_rows:
        if r["event"] == "report" and (r["trial_id"] not in seen or r["epoch"] - 1 in ladder and r["epoch"] - 1 == _last_pause(all_rows, r)):
            jobs.append((r["trial_id"], -1 if r["trial_id"] not in seen else ladder.index(r["epoch"] - 1)))
            seen.add(r["trial_id"])
    promotions = [j for j in jobs if j[1] >= 0]
    assert promotions, "no trial was ever promoted"
    assert all(r["event"] in ("report", "paused", "completed") for r in all_rows)
    # Replay: before each job, the rows of all earlier jobs are in the store.
    for index, (tid, from_rung) in enumerate(jobs):
        started = _job_start(all_rows, jobs[index])
        before = [r for r in all_rows if r["reported_at"] < started]
        rungs = [{r["trial_id"]: r["val_acc"] for r in before if r["event"] == "report" and r["rung"] == k} for k in range(3)]
        promoted = [{t for t, k in jobs[:index] if k >= rung} for rung in range(3)]
        last_event = {r["trial_id"]: r["event"] for r in before}
        busy = {t for t in last_event if last_event[t] != "paused"}
        expected = asha.promotion(rungs, promoted, 3, "max", busy)
        if expected is None:
            assert from_rung == -1, f"job {index}: driver promoted {tid} where get_job starts a new trial"
        else:
            assert (tid, from_rung + 1) == expected, f"job {index}: driver ran {(tid, from_rung)}, get_job says {expected}"
    completed = {r["trial_id"] for r in all_rows if r["event"] == "completed"}
    assert completed == {r["trial_id"] for r in all_rows if r["rung"] == 2}
    for tid in seen:  # no trial trained an epoch twice across its pause/resume cycles
        epochs = [r["epoch"] for r in all_rows if r["trial_id"] == tid and r["event"] == "report"]
        assert len(epochs) == len(set(epochs))


def _last_pause(all_rows: list[dict], row: dict) -> int | None:
    """Epoch of the trial's latest pause before ``row``."""
    pauses = [r["epoch"] for r in all_rows if r["trial_id"] == row["trial_id"] and r["event"] == "paused" and r["reported_at"] < row["reported_at"]]
    return max(pauses) if pauses else None


def _job_start(all_rows: list[dict], job: tuple[str, int]) -> object:
    """The store time just after which the job's segment began: the end of the previous job
    (one slot), i.e. the first row of the segment is the earliest row after that moment."""
    tid, from_rung = job
    first_epoch = 1 if from_rung < 0 else (1, 3, 9)[from_rung] + 1
    first = min(r["reported_at"] for r in all_rows if r["trial_id"] == tid and r["epoch"] == first_epoch and r["event"] == "report")
    return first


def test_resume_after_kill_9_of_the_driver_loses_and_repeats_nothing(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    sets = ["--set", "settings.sleep_s=0.05", "--set", "num_trials=16"]
    cmd = [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", str(sweep_file), "--out", str(run), "--no-live", *sets]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "results").is_dir() and len(terminal_events(run)) >= 5:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the sweep ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)  # workers die with the driver (PDEATHSIG); give them a moment
    before = rows(run)
    ended_before = {r["trial_id"]: r for r in before if r["event"] in TERMINAL_EVENTS}
    assert 5 <= len(ended_before) < 16

    # The interrupted run's fragments are merged by hand; the rows stay the same, except
    # that an append a killed worker had claimed but not yet renamed becomes visible.
    report_before = kdsweep("report", str(run), "--format", "json").stdout
    compacted = kdsweep("compact", str(run))
    merged = rows(run)
    assert compacted.returncode == 0 and f"({len(merged)} rows)" in compacted.stdout
    assert [p.name.startswith("compact-") for p in (run / "results").glob("[!.]*.parquet")] == [True]
    assert not Counter(map(str, before)) - Counter(map(str, merged)), "compaction lost a row"
    assert len(merged) - len(before) <= 2  # at most one claimed row per killed worker
    if len(merged) == len(before):
        assert kdsweep("report", str(run), "--format", "json").stdout == report_before

    result = kdsweep("launch", "--resume", str(run), "--no-live")
    assert result.returncode == 0, result.stderr
    after = rows(run)
    ends = terminal_events(run)
    assert sorted(ends) == [f"t{i:04d}" for i in range(16)] and set(ends.values()) == {1}
    assert sorted(p.stem for p in (run / "trials").glob("*.json")) == sorted(ends)
    after_keys = {(r["trial_id"], r["event"], r["epoch"]) for r in after}
    assert all((r["trial_id"], r["event"], r["epoch"]) in after_keys for r in before), "a recorded row was lost"
    reports = Counter((r["trial_id"], r["epoch"]) for r in after if r["event"] == "report")
    assert max(reports.values()) == 1, [k for k, v in reports.items() if v > 1]
