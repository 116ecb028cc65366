"""Backends are plug-ins: a backend from outside kdsweep, registered through a real entry point
of the ``kdsweep.backends`` group, with its own ``[backend.<kind>]`` table and check, passes
the backend contract suite and runs a sweep, and the loader validates its table as its own.

The plug-in is installed as pip would install it — a ``.dist-info`` directory whose
``entry_points.txt`` names this module's :class:`Inline` — on ``sys.path`` for this module's
tests (and on ``PYTHONPATH`` for the CLI's subprocesses); nothing of the environment changes.
Its backend runs attempts inline, in the caller's thread while it waits, one epoch of each in
turn: the worker's own generator on the real clock, as the simulated backend runs it on a
virtual one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator.backends import BACKENDS, Backend, BackendSpec, Finished, make_backend
from kdsweep.orchestrator.config import BackendConfig, ConfigError, SweepConfig, load_sweep_text, to_toml
from kdsweep.orchestrator.plugins import Issue
from kdsweep.orchestrator.worker import TrialOutcome, TrialSpec, attempt_steps
from tests.conftest import SMALL_SWEEP
from tests.orchestrator.backends.contract import *  # noqa: F403 - the shared contract tests

ROOT = Path(__file__).resolve().parents[2]

#: The kind the plug-in registers as (its entry point's name).
KIND = "inline"


@dataclasses.dataclass(frozen=True)
class InlineOptions:
    """``[backend.inline]``."""

    #: Epochs an attempt trains before the next one gets its turn.
    epochs_per_turn: int = 1


class Inline(BackendSpec):
    backend: ClassVar[str] = f"{__name__}:InlineBackend"
    Options: ClassVar[type | None] = InlineOptions

    @classmethod
    def check(cls, kind: str, options: InlineOptions, backend: BackendConfig) -> list[Issue]:
        if options.epochs_per_turn < 1:
            return [(f"backend.{kind}.epochs_per_turn", options.epochs_per_turn, "an integer >= 1")]
        return []


class InlineBackend:
    """Runs up to ``slots`` attempts while :meth:`wait` runs, ``epochs_per_turn`` epochs of
    each in turn; a cancelled attempt stops between two epochs and writes nothing more."""

    def __init__(self, slots: int, epochs_per_turn: int) -> None:
        self.slots = slots
        self.epochs_per_turn = epochs_per_turn
        self._running: dict[str, tuple[TrialSpec, Generator[int, None, TrialOutcome]]] = {}

    @classmethod
    def from_config(cls, cfg: SweepConfig) -> InlineBackend:
        options: InlineOptions = cfg.backend.options[KIND]
        return cls(cfg.backend.max_concurrent, options.epochs_per_turn)

    def submit(self, spec: TrialSpec) -> None:
        if len(self._running) >= self.slots:
            raise RuntimeError(f"all {self.slots} inline slots are busy")
        self._running[spec.trial_id] = (spec, attempt_steps(spec))

    def adopt(self, spec: TrialSpec) -> bool:
        return False

    def busy(self) -> int:
        return len(self._running)

    def wait(self, timeout_s: float) -> list[Finished]:
        deadline = time.monotonic() + timeout_s
        done: list[Finished] = []
        while self._running and not done:
            for trial_id, (spec, steps) in list(self._running.items()):
                ended = self._turn(spec, steps)
                if ended is not None:
                    del self._running[trial_id]
                    done.append(ended)
            if time.monotonic() >= deadline:
                break
        return done

    def _turn(self, spec: TrialSpec, steps: Generator[int, None, TrialOutcome]) -> Finished | None:
        """One turn of an attempt: how it ended, or None while it goes on."""
        try:
            for _ in range(self.epochs_per_turn):
                next(steps)
        except StopIteration as end:
            return Finished(spec, end.value)
        except Exception:  # noqa: BLE001 - as a worker process reports any failure
            return Finished(spec, None, traceback.format_exc())
        return None

    def cancel(self, trial_id: str) -> None:
        running = self._running.pop(trial_id, None)
        if running is not None:
            running[1].close()

    def close(self) -> None:
        for trial_id in list(self._running):
            self.cancel(trial_id)


@pytest.fixture(scope="module", autouse=True)
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plug-in's distribution, installed on ``sys.path`` while this module's tests run."""
    root = tmp_path_factory.mktemp("site")
    info = root / "kdsweep_inline-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kdsweep-inline\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kdsweep.backends]\n{KIND} = {__name__}:Inline\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    BACKENDS.refresh()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        importlib.invalidate_caches()
        BACKENDS.refresh()


@pytest.fixture
def backend_factory() -> object:
    """The contract's backends, built as the driver builds one: from the sweep's
    ``backend.kind``, through the entry point."""

    def make(cfg: SweepConfig, slots: int) -> Backend:
        return make_backend(dataclasses.replace(cfg, backend=dataclasses.replace(cfg.backend, kind=KIND, max_concurrent=slots)))

    return make


@pytest.fixture
def in_process() -> bool:
    return True


@pytest.fixture
def overlap_sleep_s() -> float:
    """Attempts take turns in one thread, so they overlap by construction."""
    return 0.05


def issues_of(text: str, *overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, "bad.toml", overrides)
    return [str(i) for i in info.value.issues]


ON_INLINE = SMALL_SWEEP.replace('kind = "local"', f'kind = "{KIND}"')


def test_a_sweep_file_naming_the_plugin_loads_with_its_own_table() -> None:
    cfg = load_sweep_text(ON_INLINE + f"\n[backend.{KIND}]\nepochs_per_turn = 3\n", "inline.toml")
    assert cfg.backend.kind == KIND and cfg.backend.options[KIND] == InlineOptions(3)
    assert cfg.document["backend"][KIND] == {"epochs_per_turn": 3}
    assert load_sweep_text(to_toml(cfg.document), "frozen").document == cfg.document
    # A sweep on another backend leaves the plug-in's table out of its frozen file (it
    # would not load where the plug-in is not installed) but still reads its defaults.
    local = load_sweep_text(SMALL_SWEEP, "small.toml")
    assert KIND not in local.document["backend"] and local.backend.options[KIND] == InlineOptions()


def test_a_bad_value_in_the_plugins_table_is_named_by_the_loader() -> None:
    assert issues_of(ON_INLINE + f"\n[backend.{KIND}]\nepochs_per_turn = 0\n") == [f"bad.toml: backend.{KIND}.epochs_per_turn = 0: an integer >= 1"]
    assert issues_of(ON_INLINE, f"backend.{KIND}.epochs_per_turn=0") == [f"--set: backend.{KIND}.epochs_per_turn = 0: an integer >= 1"]
    assert issues_of(ON_INLINE, f"backend.{KIND}.epochs_per_turn=\"two\"") == [f"--set: backend.{KIND}.epochs_per_turn = 'two': must be an integer"]
    assert issues_of(ON_INLINE, f"backend.{KIND}.turns=2") == [f"--set: backend.{KIND}.turns = 2: unknown key; valid: epochs_per_turn"]


def test_an_unknown_kind_lists_every_installed_backend() -> None:
    assert issues_of(SMALL_SWEEP, 'backend.kind="k8s"') == [f"--set: backend.kind = 'k8s': must be one of '{KIND}', 'local', 'ray', 'slurm'"]
    found = issues_of(SMALL_SWEEP, "backend.k8s={}")
    assert found == [f"--set: backend.k8s = {{}}: unknown key; valid: kind, device, max_concurrent, max_retries, cpus_per_trial, gpus_per_trial, mem_gb, timeout_min, {KIND}, ray, slurm"]


def kdsweep_with_plugin(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "kdsweep.orchestrator.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_launches_a_sweep_on_the_plugin_and_names_its_bad_values(site: Path, sweep_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = kdsweep_with_plugin(site, "launch", str(sweep_file), "--backend", KIND, "--num-trials", "4", "--no-live", "--out", str(out), "--set", f"backend.{KIND}.epochs_per_turn=2")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = ds.dataset(out / "results").to_table().to_pylist()
    assert {r["trial_id"] for r in rows if r["event"] in ("completed", "stopped")} == {f"t{i:04d}" for i in range(4)}
    bad = kdsweep_with_plugin(site, "launch", str(sweep_file), "--backend", KIND, "--dry-run", "--set", f"backend.{KIND}.epochs_per_turn=0")
    assert bad.returncode == 2 and f"--set: backend.{KIND}.epochs_per_turn = 0: an integer >= 1" in bad.stderr, bad.stderr
