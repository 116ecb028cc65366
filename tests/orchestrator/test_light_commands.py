"""Commands that only read a run never import torch: they start in well under a second on a
login node or a laptop that holds a copy of the results. Reading a finished run imports no
statistics library either (its report's statistics were kept by launch: ``analyses.py``) and
no pandas (pyarrow would import it to convert time stamps: ``store._pylist``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import kdsweep

PROBE = """
import sys
sys.argv = ["kdsweep", *sys.argv[1:]]
from kdsweep.orchestrator import cli
try:
    cli.app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "ray", "submitit", "hyperopt") if m in sys.modules)
analysing = sorted(m for m in ("scipy", "sklearn", "optuna", "pandas") if m in sys.modules)
print("HEAVY", code, ",".join(heavy), ",".join(analysing), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SMALL_SWEEP

    root = tmp_path_factory.mktemp("light")
    (root / "small.toml").write_text(SMALL_SWEEP)
    done = kdsweep("launch", str(root / "small.toml"), "--out", str(root / "run"), "--no-live", "--set", "num_trials=4")
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.mark.parametrize("args", [["--help"], ["status"], ["report"], ["report", "--format", "json"], ["report", "--format", "csv"], ["compact"]], ids=" ".join)
def test_a_reading_command_imports_no_torch(finished: Path, args: list[str]) -> None:
    argv = args if args == ["--help"] else [args[0], str(finished), *args[1:]]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("HEAVY")][-1].split(" ")
    assert line[1] == "0", done.stderr
    assert line[2:] == ["", ""], f"{argv} imported {line[2]} {line[3]}"
    print(f"[light] kdsweep {' '.join(args)}: {elapsed:.2f} s")


@pytest.mark.parametrize("sweep", ["demo", "student_topology_vgg", "graph_gates"])
@pytest.mark.parametrize("args", [["status"], ["report", "--format", "json"]], ids=" ".join)
def test_reading_a_distillation_run_imports_no_torch(tmp_path: Path, sweep: str, args: list[str]) -> None:
    """The KD trainers' descriptions are torch-free (``TrainerSpec``): the loader validates
    their sweep files and reads their runs without importing the training code."""
    from kdsweep.orchestrator.config import load_sweep
    from kdsweep.orchestrator.rundir import RunDir

    run = RunDir.create(tmp_path / "run", load_sweep(sweep, ["data.dataset=\"digits\""]))
    done = subprocess.run([sys.executable, "-c", PROBE, args[0], str(run.path), *args[1:]], capture_output=True, text=True, timeout=120)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("HEAVY")][-1].split(" ")
    assert line[2] == "", f"kdsweep {args[0]} on a {sweep} run imported {line[2]}"
