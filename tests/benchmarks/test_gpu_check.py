"""``benchmarks/gpu_check.sh``: tiny mode runs anywhere, through the real Ray path, and prints
one line per figure; without CUDA and without ``--tiny`` it refuses to measure anything.

Tiny mode trains the packed sweeps on a local Ray instance whose one GPU is a declared
resource only (the trials compute on the CPU), so the Ray backend with ``gpus_per_trial``
0.25 and 1 is exercised on a CPU machine too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
#: Lines each figure prints (the module docstring of benchmarks/gpu_check.py lists them).
FIGURES = Counter({"device": 1, "train": 3, "loss_weights_step": 1, "topology_step": 1, "graph_gates_step": 1, "latency": 2, "packed": 2})


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # This interpreter: kdsweep is installed in it (the script checks it is this checkout).
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_tiny_mode_prints_one_line_per_figure() -> None:
    done = _run("--tiny", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tiny mode:") and "meaningless" in lines[0], lines[0]
    assert Counter(line.split()[0] for line in lines[1:]) == FIGURES, done.stdout
    packed = [_fields(line) for line in lines if line.startswith("packed ")]
    assert [(p["gpus_per_trial"], p["max_concurrent"]) for p in packed] == [("1.0", "1"), ("0.25", "4")]
    for p in packed:
        assert p["backend"] == "ray" and p["trials"] == "4"
        assert int(p["images"]) > 0 and float(p["wall_s"]) > 0 and float(p["train_window_s"]) > 0
    assert "vs_one_at_a_time" in packed[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_it_refuses_unless_tiny() -> None:
    done = _run(timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no CUDA device" in done.stderr and "--tiny" in done.stderr
