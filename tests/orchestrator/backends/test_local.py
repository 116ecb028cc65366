"""The backend contract, run against the local backend (worker processes on this machine)."""

from __future__ import annotations

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
