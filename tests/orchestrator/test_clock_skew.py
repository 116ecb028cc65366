"""A trial's last row is the last one the engine wrote, whatever the clocks said.

Fragment names and ``reported_at`` come from the wall clock, which an NTP step moves back
mid-sweep and which differs between nodes. Status, summaries, the driver's rebuild and the
replay read a trial's rows in store order (by epoch: report, pause, end), so they agree
under a step either way and under offset clocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.schema import Event, trial_order_key
from kdsweep.orchestrator import store_maintenance
from kdsweep.orchestrator.store import Store
from tests.conftest import SMALL_SWEEP, kdsweep
from tests.orchestrator.test_store import SCHEMA, row

SHIM = Path(__file__).parent / "clockshift"


def test_a_trial_written_under_a_stepped_back_clock_ends_with_its_last_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_ns = time.time_ns
    shift = {"s": 0}
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + shift["s"] * 10**9)
    store = Store(tmp_path, SCHEMA)
    # t1 reports epochs 1..3 while the clock steps back an hour before each, then stops;
    # t2 is written by a "node" whose clock is a day ahead.
    for epoch in (1, 2, 3):
        store.append([row("t1", epoch, rung=epoch - 1, val_acc=0.1 * epoch)])
        shift["s"] -= 3600
    store.append([row("t1", 3, event=Event.STOPPED, rung=2, val_acc=0.3)])
    shift["s"] = 86400
    store.append([row("t2", 1, rung=0, val_acc=0.9)])
    shift["s"] = -86400
    store.append([row("t2", 1, event=Event.PAUSED, rung=0, val_acc=0.9)])
    names = sorted(p.name for p in store.results_dir.glob("part-*"))
    assert len(names) == 6
    for reader in (store, Store(tmp_path, SCHEMA), Store(tmp_path)):
        rows = reader.rows()
        assert [(r["trial_id"], r["epoch"], r["event"]) for r in rows] == [
            ("t1", 1, "report"), ("t1", 2, "report"), ("t1", 3, "report"), ("t1", 3, "stopped"),
            ("t2", 1, "report"), ("t2", 1, "paused"),
        ]  # fmt: skip
        assert reader.trial_rows("t1")[-1]["event"] == "stopped"
        assert reader.rung_values(2, "val_acc") == {"t1": pytest.approx(0.3)}
    store_maintenance.compact(store, everything=True)
    assert Store(tmp_path).rows() == store.rows() == rows


def _out_of_clock_order(run: Path) -> list[str]:
    """Trials whose rows, ordered by the clock (``reported_at``, read from the same clock as
    fragment names), are not in the order the engine wrote them."""
    by_trial: dict[str, list[tuple[object, tuple[int, int]]]] = {}
    for r in ds.dataset(run / "results").to_table().to_pylist():
        by_trial.setdefault(r["trial_id"], []).append((r["reported_at"], trial_order_key(r["event"], r["epoch"])))
    return [tid for tid, rows in by_trial.items() if [k for _, k in sorted(rows)] != sorted(k for _, k in rows)]


def test_a_sweep_through_clock_steps_and_skewed_workers_ends_finished_with_its_last_values(tmp_path: Path) -> None:
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL_SWEEP.replace("sleep_s = 0.0", "sleep_s = 0.03").replace("num_trials = 12", "num_trials = 16"))
    clock = tmp_path / "clock"
    clock.write_text("0")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHIM), os.environ.get("PYTHONPATH", "")]),
           "KDSWEEP_TEST_CLOCK": str(clock), "KDSWEEP_TEST_SKEW_S": "1800"}  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", str(sweep), "--out", str(run), "--no-live"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Step the clocks of the driver and every worker back an hour, then forward two, mid-sweep.
    for step, after in (("-3600", 15), ("3600", 45)):
        deadline = time.monotonic() + 120
        while len(list((run / "results").glob("*.parquet"))) < after and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.write_text(step)
    out, errors = driver.communicate(timeout=300)
    assert driver.returncode == 0, errors
    assert _out_of_clock_order(run), "the clocks never put a trial's rows out of order: the test proves nothing"

    status = kdsweep("status", str(run))
    assert status.returncode == 0, status.stderr
    assert "finished: all 16 trials proposed and none left to run" in status.stdout
    assert "interrupted" not in status.stdout and "resume" not in status.stdout
    summary = summarize(str(run))
    rows = ds.dataset(run / "results").to_table().to_pylist()
    for trial in summary.trials:
        reports = [r for r in rows if r["trial_id"] == trial.trial_id and r["event"] == "report"]
        last = max(reports, key=lambda r: r["epoch"])
        assert (trial.epochs, trial.value) == (last["epoch"], last["val_acc"])
        assert trial.status in ("completed", "stopped")
    # A resume has nothing to do: the driver's rebuild sees every trial ended.
    again = kdsweep("launch", "--resume", str(run), "--no-live")
    assert again.returncode == 0, again.stderr
    assert len(ds.dataset(run / "results").to_table()) == len(rows)
    # The replay reads the same curves: each trial's recorded value at each epoch it replays
    # (which epochs ASHA lets it reach on the virtual clock is the replay's own business).
    replay = kdsweep("simulate", "--replay", str(run), "--out", str(tmp_path / "replay"))
    assert replay.returncode == 0, replay.stderr
    recorded = {(r["trial_id"], r["epoch"]): r["val_acc"] for r in rows if r["event"] == "report"}
    replayed = {(r["trial_id"], r["epoch"]): r["val_acc"] for r in ds.dataset(tmp_path / "replay" / "results").to_table().to_pylist() if r["event"] == "report"}
    assert replayed and all(recorded[key] == value for key, value in replayed.items())
    assert {tid for tid, _ in replayed} == {t.trial_id for t in summary.trials}
