"""``benchmarks/gpu_check.sh``: tiny mode runs anywhere, through the real Ray path, and prints
one line per figure; without CUDA and without ``--tiny`` it refuses to measure anything.

Tiny mode trains the packed sweeps on a local Ray instance whose one GPU is a declared
resource only (the trials compute on the CPU), so the Ray backend with ``gpus_per_trial``
0.25 and 1 is exercised on a CPU machine too; and, on the project's SLURM test cluster (CI
starts it), through the SLURM backend on its stand-in GPUs: ``gpu:1`` jobs one at a time and
four quarter-GPU trials through shards.
"""

from __future__ import annotations

import os
import shutil
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
FIGURES = Counter({"device": 1, "train": 3, "loss_weights_step": 1, "topology_step": 1, "graph_gates_step": 1, "latency": 2})
#: (gpus_per_trial, max_concurrent) of the packed lines of one backend, in order.
PACKINGS = [("1.0", "1"), ("0.25", "4")]


def slurm_gpus_here() -> bool:
    """Whether the script will run SLURM's path: sinfo answers and shows a GPU gres."""
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%G"], capture_output=True, text=True, timeout=60)
    return done.returncode == 0 and "gpu" in done.stdout


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # This interpreter: kdsweep is installed in it (the script checks it is this checkout).
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_tiny_mode_prints_one_line_per_figure() -> None:
    with_slurm = slurm_gpus_here()
    if not with_slurm and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI starts the SLURM test cluster with stand-in GPUs (slurm/testcluster/start.sh --nodes 2); sinfo shows none")
    done = _run("--tiny", timeout=420)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tiny mode:") and "meaningless" in lines[0], lines[0]
    figures = Counter(line.split()[0] for line in lines[1:])
    assert figures - Counter({"packed": figures["packed"]}) == FIGURES, done.stdout
    device = _fields(next(line for line in lines if line.startswith("device ")))
    assert device["torch"] == torch.__version__ and device["cuda"] == str(torch.version.cuda), device
    assert (device["driver"] == "n/a") == (shutil.which("nvidia-smi") is None) and device["tiny"] == "True"
    packed = [line for line in lines if line.startswith("packed ")]
    ray_lines = [_fields(line) for line in packed if "backend=ray" in line]
    slurm_lines = [line for line in packed if "backend=slurm" in line]
    assert len(ray_lines) + len(slurm_lines) == len(packed)
    ran = list(ray_lines)
    if with_slurm:
        # The test cluster's kd1 has shards: both SLURM sweeps run, none is skipped.
        assert not any("skipped" in line for line in slurm_lines), slurm_lines
        ran += [_fields(line) for line in slurm_lines]
        assert [p["backend"] for p in ran] == ["ray", "ray", "slurm", "slurm"]
    else:
        assert len(slurm_lines) == 1 and "packed backend=slurm skipped: " in slurm_lines[0], slurm_lines
    assert [(p["gpus_per_trial"], p["max_concurrent"]) for p in ray_lines] == PACKINGS
    if with_slurm:
        assert [(p["gpus_per_trial"], p["max_concurrent"]) for p in ran[2:]] == PACKINGS
    for p in ran:
        assert p["trials"] == "4" and p["epochs_trained"] == "4"
        assert int(p["images"]) > 0 and float(p["wall_s"]) > 0 and float(p["train_window_s"]) > 0
        assert p.get("gpu_util") == ("n/a" if shutil.which("nvidia-smi") is None else None)
    assert all("vs_one_at_a_time" in p for p in ran[1::2])


def test_nvidia_smi_lines_parse() -> None:
    """The utilisation sampler reads nvidia-smi's csv,noheader,nounits lines; a GPU that does
    not report a figure prints [N/A], which is no sample."""
    from benchmarks.gpu_check import parse_utilisation

    assert parse_utilisation("87, 40321\n") == (87.0, 40321.0)
    assert parse_utilisation("0, 0") == (0.0, 0.0)
    assert parse_utilisation("[N/A], 512") is None
    assert parse_utilisation("") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_it_refuses_unless_tiny() -> None:
    done = _run(timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no CUDA device" in done.stderr and "--tiny" in done.stderr
