"""``kdsweep retrain`` and rejected proposals, end to end on the local backend: real worker
processes, the Parquet store on disk, the installed CLI."""

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

from kdsweep.orchestrator.schema import TERMINAL_EVENTS
from tests.conftest import kdsweep


def rows(run: Path) -> list[dict]:
    return ds.dataset(run / "results").to_table().to_pylist()


def final_rows(run: Path) -> list[dict]:
    return [r for r in rows(run) if r["stage"] == "final"]


def launch(sweep_file: Path, run: Path, *sets: str) -> None:
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *sets)
    assert result.returncode == 0, result.stderr


def test_retrain_runs_the_best_configurations_for_the_full_budget_and_reports_mean_std(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    launch(sweep_file, run)
    board_before = json.loads(kdsweep("report", str(run), "--format", "json").stdout)["leaderboard"]
    best, second = board_before[0]["trial_id"], board_before[1]["trial_id"]

    result = kdsweep("retrain", str(run), "--top", "2", "--trial", "t0000", "--repeats", "3", "--epochs", "12", "--no-live")
    assert result.returncode == 0, result.stderr
    assert "final evaluation" in result.stdout and "± " in result.stdout

    final = final_rows(run)
    ids = sorted({r["trial_id"] for r in final})
    sources = sorted({best, second, "t0000"})
    assert len(sources) >= 2
    assert ids == sorted(f"{s}.r{k}" for s in sources for k in range(3))
    by_run: dict[str, list[dict]] = {}
    for r in final:
        by_run.setdefault(r["trial_id"], []).append(r)
    params = {r["trial_id"]: (r["param.lr"], r["param.momentum"], r["param.width"]) for r in rows(run) if r["stage"] != "final"}
    for tid, trows in by_run.items():
        # The full budget, every epoch once, no ASHA: no rung, no stop; one completed row.
        assert [r["epoch"] for r in trows if r["event"] == "report"] == list(range(1, 13))
        assert [r["event"] for r in trows if r["event"] in TERMINAL_EVENTS] == ["completed"]
        assert {r["rung"] for r in trows} == {-1}
        # The test split is evaluated once, after the last epoch, never during the search.
        assert [r["epoch"] for r in trows if r["test_acc"] is not None] == [12, 12]
        assert (trows[0]["param.lr"], trows[0]["param.momentum"], trows[0]["param.width"]) == params[tid.split(".r")[0]]
    # Repeats differ (their own seeds), so the std is real.
    tests_of_best = [r["test_acc"] for r in final if r["trial_id"].startswith(best) and r["event"] == "completed"]
    assert len(set(tests_of_best)) == 3
    assert all(r["test_acc"] is None for r in rows(run) if r["stage"] != "final")

    # The search's report is unchanged by the final stage; the final results sit beside it.
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    assert doc["leaderboard"] == board_before
    finals = {f["source"]: f for f in doc["final"]}
    assert set(finals) == set(sources)
    mean, std, n = finals[best]["stats"]["test_acc"]
    assert n == 3 and 0 < mean <= 1 and std > 0
    assert finals[best]["completed"] == finals[best]["runs"] == 3 and finals[best]["epochs"] == 12

    status = kdsweep("status", str(run)).stdout
    n = 3 * len(sources)
    assert f"final stage (kdsweep retrain): {n} of {n} runs completed" in status

    # Asking again resumes nothing and adds nothing; a different budget is refused.
    before = len(rows(run))
    again = kdsweep("retrain", str(run), "--top", "2", "--trial", "t0000", "--repeats", "3", "--epochs", "12", "--no-live")
    assert again.returncode == 0, again.stderr
    assert len(rows(run)) == before
    refused = kdsweep("retrain", str(run), "--top", "1", "--repeats", "3", "--epochs", "5", "--no-live")
    assert refused.returncode == 2
    assert "--epochs = 5" in refused.stderr and "already retrained for 12 epochs" in refused.stderr
    assert len(rows(run)) == before


def test_retrain_rejects_bad_arguments_before_writing_anything(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    launch(sweep_file, run)
    before = len(rows(run))
    result = kdsweep("retrain", str(run), "--trial", "t9999", "--repeats", "0", "--epochs", "0", "--no-live")
    assert result.returncode == 2
    for expected in ("--trial = 't9999': a trial of this run that trained (t", "--repeats = 0: an integer >= 1", "--epochs = 0: an integer from 1 to 1000000"):
        assert expected in result.stderr, result.stderr
    assert len(rows(run)) == before and not (run / "final").exists()
    assert kdsweep("retrain", str(tmp_path / "nothing")).returncode == 2


def test_retrain_killed_mid_way_resumes_and_loses_or_repeats_nothing(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    launch(sweep_file, run, "--set", "settings.sleep_s=0.05")
    cmd = [sys.executable, "-m", "kdsweep.orchestrator.cli", "retrain", str(run), "--top", "2", "--repeats", "3", "--epochs", "20", "--no-live"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(1 for r in final_rows(run) if r["event"] == "completed") >= 1:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the retrain ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)
    before = {(r["trial_id"], r["event"], r["epoch"]) for r in final_rows(run)}
    result = kdsweep("retrain", str(run), "--top", "2", "--repeats", "3", "--epochs", "20", "--no-live")
    assert result.returncode == 0, result.stderr
    after = final_rows(run)
    assert before <= {(r["trial_id"], r["event"], r["epoch"]) for r in after}, "a recorded row was lost"
    ends = Counter(r["trial_id"] for r in after if r["event"] in TERMINAL_EVENTS)
    assert len(ends) == 6 and set(ends.values()) == {1}
    reports = Counter((r["trial_id"], r["epoch"]) for r in after if r["event"] == "report")
    assert max(reports.values()) == 1 and len(reports) == 6 * 20


def test_untrainable_proposals_are_rejected_not_failed_and_not_counted(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # width 128 is in the space but untrainable here: TPE proposes it, the trainer refuses it.
    launch(sweep_file, run, "--set", "settings.max_width=64", "--set", "num_trials=10")
    all_rows = rows(run)
    rejected = [r for r in all_rows if r["event"] == "rejected"]
    assert rejected, "the space should have produced some width-128 proposals"
    assert all(r["param.width"] == 128 and "exceeds settings.max_width 64" in r["error"] for r in rejected)
    trained = {r["trial_id"] for r in all_rows if r["event"] == "report"}
    assert len(trained) == 10 and not trained & {r["trial_id"] for r in rejected}
    assert not [r for r in all_rows if r["event"] == "failed"]
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    assert len(doc["leaderboard"]) == 10 and len(doc["rejected"]) == len(rejected)
    status = kdsweep("status", str(run)).stdout
    assert f"rejected {len(rejected)}" in status
    # A fixed point the trainer cannot train is a config error, before anything is written.
    bad = kdsweep("launch", str(sweep_file), "--out", str(tmp_path / "bad"), "--set", "settings.max_width=32", "--no-live")
    assert bad.returncode == 2 and "points_to_evaluate[0]" in bad.stderr and "exceeds settings.max_width 32" in bad.stderr
    assert not (tmp_path / "bad").exists()
