"""The backend contract, run against the local backend (worker processes on this machine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdsweep.orchestrator.backends import Backend
from kdsweep.orchestrator.backends.local import LocalBackend
from kdsweep.orchestrator.config import SweepConfig
from tests.orchestrator.backends.contract import *  # noqa: F403 - the shared contract tests


@pytest.fixture
def backend_factory() -> object:
    def make(cfg: SweepConfig, slots: int) -> Backend:
        return LocalBackend(slots, timeout_s=cfg.backend.timeout_min * 60)

    return make


def test_a_worker_that_died_unseen_still_ends_its_attempt_when_another_is_submitted(tmp_path: Path) -> None:
    """The race that hung a sweep under load: a worker dies (``os._exit`` at epoch 2) after
    the driver's last wait, and the driver submits another attempt before waiting again.
    The dead worker's slot stays its attempt's until wait reports the death; the new attempt
    takes another slot. (It used to take the dead slot over, the first attempt was never
    reported, and the driver counted it running forever.)"""
    cfg, run = make_run(tmp_path, "settings.crash_at_epoch=2", "settings.crash_mode=exit")  # noqa: F405
    backend = LocalBackend(2)
    try:
        backend.submit(spec(run, "t0000"))  # noqa: F405
        deadline = time.monotonic() + 120
        while not any(r["trial_id"] == "t0000" for r in store_rows(run) if (run.results).is_dir()):  # noqa: F405
            assert time.monotonic() < deadline, "t0000 never reported epoch 1"
            time.sleep(0.05)
        time.sleep(1.0)  # its epoch-2 os._exit follows the epoch-1 report within milliseconds
        backend.submit(spec(run, "t0001", attempt=1))  # noqa: F405 - a retry: it does not crash
        ended = {f.spec.trial_id: f for f in wait_all(backend, 2, timeout_s=120)}  # noqa: F405
    finally:
        backend.close()
    assert "worker process died" in (ended["t0000"].error or "")
    assert ended["t0001"].outcome is not None and ended["t0001"].outcome.event == "completed"
