"""The loss-weights trainer: exact resume, training from a CIFAR copy on disk, the teacher
cache under concurrency, the missing-data error, and a real sweep on digits with the baseline."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.data import DataSettings
from kdsweep.trainers.loss_weights import LossWeightsSettings, LossWeightsTrainer
from kdsweep.trainers.teachers import TeacherSpec, get_teacher
from kdsweep.trainers.training import Device, SGDSettings
from tests.conftest import kdsweep
from tests.trainers.fake_cifar import write_fake_cifar10

TINY = LossWeightsSettings(student_width=0.125, teacher_width=0.125, teacher_epochs=1, batch_size=64, lr=0.05)
SEARCHED = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 50, "e": 25, "f": 0.5, "g": 0.7, "h": 1.0, "i": 0.5}


def make(tmp_path: Path, data: DataSettings, settings: LossWeightsSettings = TINY, budget: int = 4) -> LossWeightsTrainer:
    ctx = TrialContext(trial_id="t0000", seed=7, attempt=0, run_dir=tmp_path, cache_dir=tmp_path, device="cpu", data=data, budget_epochs=budget)
    return LossWeightsTrainer(SEARCHED, dataclasses.replace(settings, teacher_cache=str(tmp_path / "cache")), ctx)


def test_two_epochs_checkpoint_two_more_equals_four_straight(tmp_path: Path) -> None:
    data = DataSettings(dataset="digits", image_size=8)
    straight = make(tmp_path, data)
    for epoch in range(1, 5):
        straight.train_epoch(epoch)

    first = make(tmp_path, data)
    for epoch in (1, 2):
        first.train_epoch(epoch)
    save_checkpoint(tmp_path / "ck.pt", {"trainer": first.state_dict()})
    del first
    resumed = make(tmp_path, data)
    state = load_checkpoint(tmp_path / "ck.pt")  # torch.load(weights_only=True)
    assert state is not None
    resumed.load_state_dict(state["trainer"])
    for epoch in (3, 4):
        resumed.train_epoch(epoch)

    a, b = straight.state_dict(), resumed.state_dict()
    for key in ("student", "heads"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert straight.evaluate() == resumed.evaluate()


def test_trains_one_epoch_from_a_cifar_copy_on_disk(tmp_path: Path) -> None:
    root = write_fake_cifar10(tmp_path / "cifar", n_per_batch=40)
    trainer = make(tmp_path, DataSettings(dataset="cifar10", root=str(root)), budget=1)
    metrics = trainer.train_epoch(1)
    assert set(metrics) == {"train_loss", "train_ce", "train_kd", "train_rkd", "train_skd"}
    assert all(v == v and v > 0 for v in metrics.values()), metrics
    evaluation = trainer.evaluate()
    assert 0.0 <= evaluation["val_acc"] <= 1.0 and "teacher_val_acc" in evaluation


def _teacher_worker(cache: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    spec = TeacherSpec(data=DataSettings(dataset="digits", image_size=8), arch="resnet20", width=0.25, epochs=1, sgd=SGDSettings(batch_size=64))
    teacher = get_teacher(spec, Device("cpu", SGDSettings()), Path(cache))
    queue.put(teacher.info["trained_by"])


def test_two_trials_asking_for_a_missing_teacher_train_it_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_teacher_worker, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    trained_by = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(trained_by) == 1, f"teacher trained more than once: {trained_by}"
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_missing_cifar_copy_is_a_clear_error_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    missing = tmp_path / "no-such-dir"
    result = kdsweep("launch", "loss_weights", "--out", str(out), "--set", f"data.root={missing}")
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr and "cifar-10-batches-py" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_digits_sweep_reports_the_baseline_beside_the_searched_trials(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [
        "data.dataset=digits", "data.image_size=8", "num_trials=5", "asha.max_epochs=3", "n_startup_trials=2",
        "backend.max_concurrent=2", "settings.student_width=0.125", "settings.teacher_width=0.125",
        "settings.teacher_epochs=2", "settings.batch_size=64", f"settings.teacher_cache={tmp_path / 'cache'}",
    ]  # fmt: skip
    args = ["launch", "loss_weights", "--out", str(out), "--no-live", "--top", "5"]
    for s in sets:
        args += ["--set", s]
    result = kdsweep(*args, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "fixed" in result.stdout and "tpe" in result.stdout
    board = json.loads(kdsweep("report", str(out), "--format", "json").stdout)["leaderboard"]
    baseline = [r for r in board if r["origin"] == "fixed"]
    assert len(baseline) == 1 and baseline[0]["param.b"] == 0.05 and baseline[0]["param.i"] == 1e-6
    assert len(board) == 5 and all(r["val_acc"] is not None for r in board)
    assert {r["teacher_val_acc"] for r in _rows(out)} and len({r["teacher_val_acc"] for r in _rows(out)}) == 1
    # The final stage of this trainer: the winner retrained twice, measured on the test split.
    retrained = kdsweep("retrain", str(out), "--top", "1", "--repeats", "2", "--epochs", "2", "--no-live", timeout=600)
    assert retrained.returncode == 0, retrained.stderr
    (final,) = json.loads(kdsweep("report", str(out), "--format", "json").stdout)["final"]
    assert final["source"] == board[0]["trial_id"] and final["completed"] == 2
    assert final["stats"]["test_acc"][2] == 2 and 0.0 <= final["stats"]["test_acc"][0] <= 1.0


def _rows(run: Path) -> list[dict]:
    import pyarrow.dataset as ds

    return [r for r in ds.dataset(run / "results").to_table().to_pylist() if r["event"] == "report"]
