"""Trainers are plug-ins: a trainer in another installed package, registered through the
``kdsweep.trainers`` entry-point group, runs a sweep without any edit to kdsweep.

The plug-in is installed the way pip installs a package — its module and a ``.dist-info``
directory with ``entry_points.txt`` on the import path — into a directory of its own that
the subprocesses get on ``PYTHONPATH``, so the test environment itself is not changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.dataset as ds
import pytest

PLUGIN = '''
"""A fourth trainer from outside kdsweep: accuracy grows with epochs towards ``ceiling``."""
import dataclasses
from typing import Any, ClassVar

from kdsweep.trainers.base import TrainerSpec


@dataclasses.dataclass(frozen=True)
class TinySettings:
    ceiling: float = 0.9


class Tiny(TrainerSpec):
    Settings: ClassVar[type] = TinySettings
    training: ClassVar[str] = "tinyplugin.training:TinyTraining"

    @classmethod
    def metric_names(cls, settings):
        return ("val_acc", "test_acc")

    @classmethod
    def validate(cls, settings, data, space, objective):
        return [] if 0 < settings.ceiling <= 1 else [("settings.ceiling", settings.ceiling, "a number in (0, 1]")]

    @classmethod
    def check_params(cls, params, settings):
        return "rate 0 never learns" if params["rate"] == 0 else None
'''

TRAINING = '''
from kdsweep.trainers.base import Training


class TinyTraining(Training):

    def __init__(self, params, settings, ctx):
        self.rate, self.ceiling, self.epoch = float(params["rate"]), settings.ceiling, 0

    def train_epoch(self, epoch):
        self.epoch = epoch
        return {}

    def evaluate(self):
        return {"val_acc": self.ceiling * (1 - (1 - self.rate) ** self.epoch)}

    def test(self):
        return {"test_acc": self.evaluate()["val_acc"]}

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]
'''

SWEEP = """
name = "tiny"
trainer = "tiny"
searcher = "random"
num_trials = 6
seed = 3
points_to_evaluate = [{ rate = 0.5 }]

[settings]
ceiling = 0.8

[space]
rate = { type = "uniform", low = 0.05, high = 0.6 }

[asha]
metric = "val_acc"
max_epochs = 4
reduction_factor = 2
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding the installed plug-in package ``tinyplugin``."""
    root = tmp_path / "site"
    package = root / "tinyplugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (package / "training.py").write_text(textwrap.dedent(TRAINING))
    info = root / "tinyplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kdsweep.trainers]\ntiny = tinyplugin:Tiny\n")
    return root


def run(*args: str, site: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "kdsweep.orchestrator.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_an_installed_plugin_trainer_runs_a_sweep_without_editing_kdsweep(site: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(SWEEP)
    out = tmp_path / "run"
    done = run("launch", str(sweep), "--out", str(out), "--no-live", site=site)
    assert done.returncode == 0, done.stderr
    rows = ds.dataset(out / "results").to_table().to_pylist()
    ends = [r for r in rows if r["event"] in ("completed", "stopped")]
    assert len(ends) == 6 and {r["trial_id"] for r in ends} == {f"t{i:04d}" for i in range(6)}
    baseline = [r for r in rows if r["trial_id"] == "t0000" and r["event"] == "report"]
    assert baseline[0]["val_acc"] == pytest.approx(0.8 * 0.5)  # the plug-in's own curve
    report = run("report", str(out), "--format", "json", site=site)
    assert report.returncode == 0 and json.loads(report.stdout)["leaderboard"]

    # The plug-in's own validation speaks through the loader: one message, exit 2.
    bad = run("launch", str(sweep), "--out", str(tmp_path / "bad"), "--set", "settings.ceiling=2", "--dry-run", site=site)
    assert bad.returncode == 2 and "settings.ceiling" in bad.stderr and "(0, 1]" in bad.stderr
    # Without the package installed the trainer is unknown, and the message lists those there are.
    missing = run("launch", str(sweep), "--dry-run", site=None)
    assert missing.returncode == 2 and "trainer" in missing.stderr and "synthetic" in missing.stderr and "Traceback" not in missing.stderr
