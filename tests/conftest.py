"""Shared fixtures: a small synthetic sweep file and helpers to run the CLI as a user would."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SMALL_SWEEP = """
name = "small"
trainer = "synthetic"
searcher = "tpe"
num_trials = 12
seed = 3
n_startup_trials = 4
points_to_evaluate = [{ lr = 0.1, momentum = 0.9, width = 64 }]

[space]
lr = { type = "loguniform", low = 1e-4, high = 1.0 }
momentum = { type = "uniform", low = 0.0, high = 0.99 }
width = { type = "choice", values = [16, 32, 64, 128] }

[asha]
metric = "val_acc"
mode = "max"
min_epochs = 1
max_epochs = 9
reduction_factor = 3
variant = "stop"

[backend]
kind = "local"
max_concurrent = 2
max_retries = 1

[settings]
sleep_s = 0.0
"""


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SWEEP)
    return path


def kdsweep(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``kdsweep`` entry point in a subprocess, as a user would."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kdsweep.orchestrator.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests that train in-process use one intra-op thread: deterministic, and on a busy
    2-core machine multi-threaded OMP spins collapse throughput (measured: 15x slower at a
    load average of 7). Workers do the same through ``backend.cpus_per_trial``."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``) mounted at directory ``where`` (created if
    missing) for the block, to fill a disk for real. Skips where it cannot be mounted, never
    in CI."""
    where.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"cannot mount a small tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


#: Test modules that start the project's clusters (the SLURM test cluster, local Ray
#: instances); tests of other modules whose names mention them do too.
_CLUSTER_MODULES = frozenset({
    "tests/orchestrator/backends/test_slurm.py", "tests/orchestrator/backends/test_ray.py",
    "tests/orchestrator/test_sweep_slurm.py", "tests/orchestrator/test_sweep_ray.py",
    "tests/orchestrator/test_slurm_nodes.py", "tests/benchmarks/test_gpu_check.py",
})  # fmt: skip
#: Held by the test that drives a cluster, across pytest-xdist's workers.
_CLUSTER_LOCK = Path(tempfile.gettempdir()) / "kdsweep-cluster-tests.lock"


@pytest.fixture(autouse=True)
def _one_cluster_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist (the README's test command runs two workers), a test that drives a
    cluster holds an exclusive lock while it runs: the SLURM test cluster is one shared
    machine (a test sets a node down, another counts the jobs running at once), and two Ray
    instances at once would only fight for the same two cores. (xdist's ``loadgroup`` would
    say this with a marker, but 3.8 does not group under pytest 9, whose node ids it can no
    longer rewrite.)"""
    item = request.node
    module = Path(str(item.fspath)).relative_to(item.config.rootpath).as_posix()
    if module not in _CLUSTER_MODULES and not {"ray", "slurm"} & set(item.name.split("_")):
        yield
        return
    with open(_CLUSTER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
