"""The backend contract, run against the simulated backend (attempts interleaved in this
process on a virtual clock), so that ``kdsweep simulate`` and the driver tests built on it
stand on a backend that keeps the same promises as the real ones."""

from __future__ import annotations

import datetime as dt

import pytest

from kdsweep.orchestrator.backends import Backend
from kdsweep.orchestrator.backends.simulated import SimulatedBackend
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.simulate import synthetic_epoch_seconds
from tests.orchestrator.backends.contract import *  # noqa: F403 - the shared contract tests


@pytest.fixture
def backend_factory() -> object:
    def make(cfg: SweepConfig, slots: int) -> Backend:
        clock = VirtualClock(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        return SimulatedBackend(slots, clock, synthetic_epoch_seconds(cfg), timeout_s=cfg.backend.timeout_min * 60)

    return make


@pytest.fixture
def in_process() -> bool:
    return True


@pytest.fixture
def overlap_sleep_s() -> float:
    """Virtual epochs overlap by construction; a real sleep would only slow the test."""
    return 0.0
