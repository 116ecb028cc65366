"""The backend contract, run against the Ray backend on a real local Ray instance.

One Ray instance (2 CPUs) serves the whole module; each test builds its own backend (its own
actors) on it. Under CI a Ray that cannot start fails the suite rather than skipping it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import ray

from kdsweep.orchestrator.backends import Backend
from kdsweep.orchestrator.config import SweepConfig
from tests.orchestrator.backends.contract import *  # noqa: F403 - the shared contract tests


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - any reason Ray cannot start
        if os.environ.get("CI", "").lower() == "true":
            raise  # CI must prove the backend; a Ray that cannot start is a failure there
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def backend_factory(ray_instance: None) -> object:
    from kdsweep.orchestrator.backends.ray import RayBackend

    def make(cfg: SweepConfig, slots: int) -> Backend:
        b = cfg.backend
        return RayBackend(slots, cpus_per_trial=b.cpus_per_trial, gpus_per_trial=b.gpus_per_trial, timeout_s=b.timeout_min * 60)

    return make
