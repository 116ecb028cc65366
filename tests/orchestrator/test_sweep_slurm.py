"""End to end on SLURM: the installed CLI drives a real (one-node) SLURM cluster, trial jobs
append to the Parquet store and stop themselves by ASHA. Covers a 40-trial sweep, a job
requeued mid-trial, a driver killed with SIGKILL and resumed while its jobs run on, and
settings SLURM refuses (caught before anything is submitted or written).

The cluster is ``slurm/testcluster/start.sh``'s; see ``backends/test_slurm.py`` for when
these tests skip or fail without one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator.backends.slurm import job_records
from kdsweep.orchestrator.schema import TERMINAL_EVENTS
from tests.conftest import kdsweep
from tests.orchestrator.backends.test_slurm import slurm_cluster  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

#: SLURM settings of every sweep here: the test node has few CPUs, jobs need little memory,
#: and a job that dies should be noticed within seconds.
ON_SLURM = (
    "--backend", "slurm",
    "--set", "backend.mem_gb=0.5",
    "--set", "backend.device=\"cpu\"",
    "--set", "backend.slurm.squeue_interval_s=2",
    "--set", "backend.slurm.signal_delay_s=30",
    "--set", "backend.timeout_min=10",
)  # fmt: skip


def rows(run: Path) -> list[dict]:
    return ds.dataset(run / "results").to_table().to_pylist()


def terminal_events(run: Path) -> Counter[str]:
    return Counter(r["trial_id"] for r in rows(run) if r["event"] in TERMINAL_EVENTS)


def launch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "--no-live", *args]


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.2)


def squeue_ids(states: str = "all") -> set[str]:
    """Ids of this user's jobs SLURM knows in these states (all: ended ones too)."""
    out = subprocess.run(["squeue", "--me", "--noheader", "--array", f"--states={states}", "--format=%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def slurm_jobs_of(run: Path) -> set[str]:
    """Ids of the jobs SLURM knows (ended ones included) whose batch script is in the run's
    submitit folder: what was really submitted for this run, whatever the records say."""
    out = subprocess.run(["squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%o"], capture_output=True, text=True, check=True)
    folder = f"{run.resolve() / 'slurm'}/"
    return {job_id for job_id, _, script in (line.partition("|") for line in out.stdout.splitlines()) if script.startswith(folder)}


def assert_each_attempt_submitted_once(run: Path) -> dict[tuple[str, int, int | None], list[dict]]:
    records = job_records(run)
    twice = {k: v for k, v in records.items() if len(v) > 1}
    assert not twice, f"attempts submitted more than once: {twice}"
    ids = [subs[0]["job_id"] for subs in records.values()]
    assert len(set(ids)) == len(ids)
    return records


def test_a_40_trial_sweep_runs_on_slurm_with_asha_stopping_at_rungs(sweep_file: Path, tmp_path: Path) -> None:
    run, local = tmp_path / "run", tmp_path / "local"
    started = time.monotonic()
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--num-trials", "40", "--max-concurrent", "4", *ON_SLURM, timeout=900)
    wall_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"40-trial SLURM sweep: {wall_s:.1f} s")
    assert "small: top 10 of 40 trials by val_acc" in result.stdout

    ends = terminal_events(run)
    assert sorted(ends) == [f"t{i:04d}" for i in range(40)] and set(ends.values()) == {1}
    all_rows = rows(run)
    events = Counter(r["event"] for r in all_rows)
    assert events["stopped"] >= 10 and events["completed"] >= 1 and events["failed"] == 0, events
    stopped_at = {r["epoch"] for r in all_rows if r["event"] == "stopped"}
    assert stopped_at <= {1, 3}, f"ASHA stops only at rungs below the top: {stopped_at}"
    reports = Counter((r["trial_id"], r["epoch"]) for r in all_rows if r["event"] == "report")
    assert max(reports.values()) == 1
    # The results' node column is SLURM's node name; the trials spread over every node
    # (two with start.sh --nodes 2, which CI runs: tests/orchestrator/test_slurm_nodes.py).
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=30, check=True).stdout.split()
    by_node = Counter(r["node"] for r in all_rows if r["event"] == "report")
    assert set(by_node) == set(nodes), f"reports per node: {by_node}"

    records = assert_each_attempt_submitted_once(run)
    assert sorted(records) == [(f"t{i:04d}", 0, None) for i in range(40)]
    assert any("_" in subs[0]["job_id"] for subs in records.values()), "trials starting together go out as job arrays"
    assert list((run / "slurm").glob("*_log.out")), "job logs live in RUN_DIR/slurm/"

    # The same columns as a local run of the same sweep.
    assert kdsweep("launch", str(sweep_file), "--out", str(local), "--no-live", "--num-trials", "2").returncode == 0
    assert ds.dataset(run / "results").schema.names == ds.dataset(local / "results").schema.names


def test_a_job_requeued_mid_trial_resumes_from_its_checkpoint(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # One trial (the sweep's fixed point), 9 epochs with rungs at 1, 3, 9.
    driver = subprocess.Popen(launch_cmd(str(sweep_file), "--out", str(run), "--num-trials", "1", "--set", "settings.sleep_s=1.0", *ON_SLURM), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (run / "results").is_dir() and len(rows(run)) >= 4, 120, "epoch 4 of t0000")
        ((job,),) = job_records(run).values()
        # Kills the job (SIGTERM, then SIGKILL after the cluster's KillWait of 2 s, well before
        # the trial's 5 s left) and puts it back in the queue, as preemption does.
        subprocess.run(["scontrol", "requeue", job["job_id"]], check=True)
        _, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    all_rows = rows(run)
    reports = Counter(r["epoch"] for r in all_rows if r["event"] == "report")
    assert sorted(reports) == list(range(1, 10)) and set(reports.values()) == {1}, reports
    assert Counter(r["rung"] for r in all_rows if r["event"] == "report" and r["rung"] >= 0) == {0: 1, 1: 1, 2: 1}
    assert [r["event"] for r in all_rows if r["event"] != "report"] == ["completed"]
    log = (run / "slurm" / f"{job['job_id']}_0_log.out").read_text()
    assert log.count("Starting with JobEnvironment") == 2, "the job was not restarted"
    assert_each_attempt_submitted_once(run)


def test_a_killed_driver_resumes_without_duplicate_jobs_or_lost_results(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    sweep = ("--num-trials", "8", "--max-concurrent", "3", "--set", "settings.sleep_s=0.4")
    driver = subprocess.Popen(launch_cmd(str(sweep_file), "--out", str(run), *sweep, *ON_SLURM), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: (run / "results").is_dir() and len(terminal_events(run)) >= 2, 240, "two trials to end")
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    before = rows(run)
    ended_before = set(terminal_events(run))
    assert 2 <= len(ended_before) < 8
    submitted = {subs[0]["job_id"] for subs in job_records(run).values()}
    # The jobs outlive their driver: the ones not yet ended are still in SLURM's queue.
    alive = submitted & squeue_ids("PENDING,RUNNING")
    assert alive, "no job of the killed driver was left to adopt: the test proves nothing"

    result = kdsweep("launch", "--resume", str(run), "--no-live", timeout=600)
    assert result.returncode == 0, result.stderr
    ends = terminal_events(run)
    assert sorted(ends) == [f"t{i:04d}" for i in range(8)] and set(ends.values()) == {1}
    after = rows(run)
    after_keys = {(r["trial_id"], r["event"], r["epoch"]) for r in after}
    assert all((r["trial_id"], r["event"], r["epoch"]) in after_keys for r in before), "a recorded row was lost"
    reports = Counter((r["trial_id"], r["epoch"]) for r in after if r["event"] == "report")
    assert max(reports.values()) == 1, [k for k, v in reports.items() if v > 1]
    records = assert_each_attempt_submitted_once(run)
    assert sorted(records) == [(f"t{i:04d}", 0, None) for i in range(8)]
    assert slurm_jobs_of(run) == {subs[0]["job_id"] for subs in records.values()}, "SLURM ran a job the records do not show"


@pytest.mark.parametrize(
    ("setting", "field", "slurm_says"),
    [
        ("backend.slurm.partition=\"no-such-partition\"", "backend.slurm.partition", "invalid partition specified: no-such-partition"),
        ("backend.slurm.extra={time=\"banana\"}", "backend.slurm.extra.time", "Invalid --time specification"),
    ],
)
def test_a_setting_slurm_refuses_fails_before_anything_is_submitted(sweep_file: Path, tmp_path: Path, setting: str, field: str, slurm_says: str) -> None:
    run = tmp_path / "run"
    jobs_before = squeue_ids()
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *ON_SLURM, "--set", setting)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"{field} = " in message and slurm_says in message and "sbatch --test-only said" in message, message
    assert not run.exists()
    assert squeue_ids() == jobs_before


def test_dry_run_prints_the_trial_job_script_and_creates_nothing(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), *ON_SLURM, "--set", "backend.slurm.partition=\"debug\"", "--set", "backend.slurm.setup=[\"echo set up\"]", "--dry-run")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert script.startswith("#!/bin/bash")
    for line in ("#SBATCH --partition=debug", "#SBATCH --time=10", "#SBATCH --mem=512M", "#SBATCH --cpus-per-task=1", "#SBATCH --signal=USR2@30", "#SBATCH --requeue", "echo set up"):
        assert line in script.splitlines(), f"{line!r} not in:\n{script}"
    assert f"-m submitit.core._submit {run.resolve() / 'slurm'}" in script
    assert not run.exists()
