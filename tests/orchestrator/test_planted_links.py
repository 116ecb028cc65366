"""Nothing in a run directory is followed out of it.

Run directories live on shared file systems where other people can write. A symbolic link
planted where kdsweep writes a file (or a folder) must be refused with a message naming it,
and nothing outside the run may be created, truncated or overwritten through it. The
driver's lock must hold even when its file is deleted as "stale".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kdsweep.orchestrator.atomic import PlantedLinkError, open_lock, read_bytes, real_dir, write_atomic
from kdsweep.orchestrator.checkpoint import load_checkpoint
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.store import Store
from tests.conftest import SMALL_SWEEP, kdsweep


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    sweep = root / "small.toml"
    sweep.write_text(SMALL_SWEEP)
    run = root / "run"
    result = kdsweep("launch", str(sweep), "--out", str(run), "--no-live", "--set", "num_trials=4")
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


def _resume(run: Path) -> list[str]:
    return ["launch", "--resume", str(run), "--no-live", "--set", "num_trials=5"]


def _junk_then_compact(run: Path) -> list[str]:
    (run / "results" / "part-junk.parquet").write_bytes(b"not parquet")
    return ["compact", str(run)]


# (the link's path in the run, whether it points at a file outside that exists, the command)
CASES: dict[str, tuple[str, bool, Callable[[Path], list[str]]]] = {
    "driver lock": (".driver.lock", True, _resume),
    "compaction lock": ("results/.compact.lock", False, lambda run: ["compact", str(run)]),
    "quarantine reason": ("quarantine/part-junk.parquet.reason", True, _junk_then_compact),
    "trial record": ("trials/t0004.json", False, _resume),
    "claims of a trial": ("results/.keys/t0004", False, _resume),
    "frozen sweep rewritten on resume": ("sweep.toml", True, lambda run: [*_resume(run)[:-2], "--set", "backend.max_concurrent=1"]),
    "html report": ("report.html", True, lambda run: ["report", str(run), "--html", str(run / "report.html")]),
    "a folder of the run": ("checkpoints", False, _resume),
    "the quarantine folder": ("quarantine", False, _junk_then_compact),
    "a retraining record": ("final/t0000.r0.json", False, lambda run: ["retrain", str(run), "--trial", "t0000", "--repeats", "1", "--no-live"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_link_is_refused_naming_it_and_nothing_outside_is_touched(run: Path, tmp_path: Path, case: str) -> None:
    name, exists, command = CASES[case]
    outside = tmp_path / "outside" / "victim"
    outside.parent.mkdir()
    link = run / name
    if name == "sweep.toml":
        shutil.copy(link, outside)  # the run reads as unedited through the link
    elif exists:
        outside.write_text("someone else's file\n")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir():
        shutil.rmtree(link)
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    before = outside.read_bytes() if exists else None
    result = kdsweep(*command(run))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert str(link) in result.stderr and "symbolic link" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    if exists:
        assert outside.read_bytes() == before
    else:
        assert not outside.exists() and list(outside.parent.iterdir()) == []


def test_a_checkpoint_link_fails_the_trial_naming_it_and_writes_nothing_outside(run: Path, tmp_path: Path) -> None:
    """Workers write checkpoints: the attempt fails with the link named, retries fail alike,
    and the trial ends failed; the sweep itself finishes."""
    outside = tmp_path / "victim.pt"
    (run / "checkpoints" / "t0004.pt").symlink_to(outside)
    result = kdsweep(*_resume(run))
    assert result.returncode == 0, result.stderr
    end = Store(run).trial_rows("t0004")[-1]
    assert end["event"] == "failed" and f"is a symbolic link (to {outside})" in end["error"]
    assert str(run / "checkpoints" / "t0004.pt") in end["error"]
    assert not outside.exists()


def test_a_linked_statistics_cache_is_neither_read_nor_written(run: Path, tmp_path: Path) -> None:
    """The cache only saves time: a link in its place is passed over (the report computes
    afresh), so a planted file can neither feed the report statistics nor be overwritten."""
    cache = run / "cache" / "analyses.json"
    cache.unlink(missing_ok=True)
    outside = tmp_path / "victim.json"
    outside.write_text('{"digest": "forged"}')
    cache.symlink_to(outside)
    result = kdsweep("report", str(run))
    assert result.returncode == 0, result.stderr
    assert f"warning: {cache}: is a symbolic link (to {outside})" in result.stderr
    assert outside.read_text() == '{"digest": "forged"}' and cache.is_symlink()


def test_the_primitives_refuse_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for make in (lambda p: write_atomic(p, b"x"), open_lock, real_dir, read_bytes, load_checkpoint):
        link = tmp_path / "link"
        link.unlink(missing_ok=True)
        link.symlink_to(outside)
        with pytest.raises(PlantedLinkError) as caught:
            make(link)
        assert caught.value.filename == str(link)
        assert not outside.exists()


def test_deleting_the_lock_file_does_not_let_a_second_driver_in(finished: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "slow.toml"
    sweep.write_text(SMALL_SWEEP.replace("sleep_s = 0.0", "sleep_s = 0.5"))
    run = tmp_path / "slow"
    first = subprocess.Popen([sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", str(sweep), "--out", str(run), "--no-live"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while RunDir(run).driver_holder() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert RunDir(run).driver_holder() == f"pid {first.pid} on {os.uname().nodename}"
        (run / ".driver.lock").unlink()  # a "stale lock" clean-up
        assert RunDir(run).driver_holder() == "unknown"  # still driven; who is no longer written
        second = kdsweep("launch", "--resume", str(run), "--no-live")
        assert second.returncode == 2 and "not already being driven" in second.stderr, second.stderr
        status = kdsweep("status", str(run))
        assert "driver: unknown" in status.stdout or "driver: pid" in status.stdout, status.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
