"""``kdsweep teacher train`` goes through the trainer's own hook (``TrainerSpec.teachers``):
it trains into the cache exactly the entries a sweep's trials would use, once, and a trainer
that distils from no teacher is named with exit 2."""

from __future__ import annotations

from pathlib import Path

from kdsweep.orchestrator.config import load_sweep
from tests.conftest import kdsweep

#: A teacher of one epoch at width 1/8 on digits: seconds on a CPU.
TINY_DEMO = ("--set", "settings.teacher_epochs=1", "--set", "settings.teacher_width=0.125")


def test_a_trainer_without_teachers_is_named_with_exit_2() -> None:
    done = kdsweep("teacher", "train", "synthetic")
    assert done.returncode == 2, done.stderr
    assert "trainer = 'synthetic': a trainer that distils from cached teachers (graph_gates, loss_weights, student_topology)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_demos_teacher_is_trained_once_into_the_entry_its_trials_use(tmp_path: Path) -> None:
    from kdsweep.trainers.teachers import teacher_spec

    sets = (*TINY_DEMO, "--set", f"settings.teacher_cache={str(tmp_path)!r}")
    first = kdsweep("teacher", "train", *sets, "--device", "cpu")
    assert first.returncode == 0, first.stderr
    cfg = load_sweep(None, [s for s in sets if s != "--set"])
    path = tmp_path / "teachers" / f"{teacher_spec(cfg.settings, cfg.data).name}.pt"
    assert path.is_file() and f"({path})" in first.stdout
    trained_at = path.stat().st_mtime_ns
    again = kdsweep("teacher", "train", *sets, "--device", "cpu")
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
    assert path.stat().st_mtime_ns == trained_at, "a cached teacher is not trained again"


def test_graph_gates_pretrains_every_model_a_frozen_node_may_run(tmp_path: Path) -> None:
    from kdsweep.trainers.graph_gates import frozen_spec

    sets = [
        'data.dataset="digits"', "settings.width=0.125", "settings.frozen_epochs=1", f"settings.teacher_cache={str(tmp_path)!r}",
        'settings.models=["resnet20", "resnet32"]', 'space.baseline_models=["resnet20", "resnet32", "resnet20", "resnet20"]',
    ]  # fmt: skip
    done = kdsweep("teacher", "train", "graph_gates", *(arg for s in sets for arg in ("--set", s)), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    cfg = load_sweep("graph_gates", sets)
    names = [frozen_spec(cfg.settings, cfg.data, arch).name for arch in ("resnet20", "resnet32")]
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [f"teacher {n}" for n in names]
    assert all((tmp_path / "teachers" / f"{n}.pt").is_file() for n in names)
