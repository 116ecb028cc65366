"""How a command ends when it is stopped or cannot write: a signal at any moment, a full
disk named by the file system actually written, a finished sweep whose page did not fit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdsweep.orchestrator.rundir import RunDir
from tests.conftest import SMALL_SWEEP, kdsweep, small_tmpfs


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: room for a small sweep's results, not for an HTML report (plotly.js alone
    is over 3 MB)."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


def test_a_finished_sweep_whose_page_does_not_fit_exits_0_with_a_warning(tiny_disk: Path, sweep_file: Path) -> None:
    run = tiny_disk / "run"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--html")
    assert result.returncode == 0, result.stderr
    assert f"warning: {run / 'report.html'} not written (No space left on device)" in result.stderr
    assert f"kdsweep report {run} --html {run / 'report.html'}" in result.stderr
    assert "leader t" in result.stdout  # the report was still printed
    # A report written elsewhere on a full file system names that file system, not the run's
    # and not the working directory's.
    with open(tiny_disk / "filler", "wb", buffering=0) as filler:
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 4096)
    page = tiny_disk / "elsewhere.html"
    full = kdsweep("report", str(run), "--html", str(page))
    assert full.returncode == 1
    assert f"no space left on the file system mounted at {tiny_disk} (writing {tiny_disk}/.elsewhere.html." in full.stderr, full.stderr
    assert not page.exists() and "Traceback" not in full.stderr


def test_a_full_disk_in_a_trial_names_the_file_system_the_trial_wrote(sweep_file: Path, tmp_path: Path) -> None:
    """A worker's write (here a checkpoint, on its own full file system) stops the sweep with
    that file system's mount point, not the run's."""
    run = tmp_path / "run"
    done = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", "num_trials=2")
    assert done.returncode == 0, done.stderr
    with small_tmpfs(run / "checkpoints", "8k") as disk:
        with open(disk / "filler", "wb", buffering=0) as filler:
            with pytest.raises(OSError):
                while True:
                    filler.write(b"\0" * 1024)
        full = kdsweep("launch", "--resume", str(run), "--no-live", "--set", "num_trials=12")
        assert full.returncode == 1, full.stderr
        assert f"no space left on the file system mounted at {disk} (writing {disk}/." in full.stderr, full.stderr


@pytest.mark.parametrize("after_s", [0.3, 2.5])
def test_sigterm_at_any_moment_of_a_launch_ends_it_with_the_message_and_143(tmp_path: Path, after_s: float) -> None:
    """During the imports (0.3 s: the interpreter itself has started; before it runs any
    Python, about the first 35 ms here and more under load, no handler can exist) and during
    the sweep: exit 143 with the ``interrupted (SIGTERM)`` line, naming how to continue once
    the run exists, and a run directory either resumable or not there at all."""
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL_SWEEP.replace("sleep_s = 0.0", "sleep_s = 0.2"))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", str(sweep), "--out", str(run), "--no-live"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(after_s)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    if RunDir(run).is_run():
        assert f"continue with: kdsweep launch --resume {run}" in err
        resumed = kdsweep("launch", "--resume", str(run), "--no-live")
        assert resumed.returncode == 0, resumed.stderr
        status = kdsweep("report", str(run), "--format", "json")
        assert len(json.loads(status.stdout)["leaderboard"]) == 10  # the default --top
    else:
        assert not run.exists()
