"""The loss-weights trainer: exact resume, training from a CIFAR copy on disk, the teacher
cache under concurrency, the missing-data error, and a real sweep on digits with the baseline."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.data import DataSettings
from kdsweep.trainers.loss_weights import LossWeightsSettings, LossWeightsTrainer, combined_loss
from kdsweep.trainers.losses import kd_loss, rkd_angle_loss, rkd_distance_loss, self_distillation_loss
from kdsweep.trainers.models import HeadOutput, ModelOutput
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
    # The per-example record behind val_acc (the worker's val_n and val_correct).
    assert trainer.val_correct.shape == (len(trainer.data.val.y),) and trainer.val_correct.mean() == evaluation["val_acc"]


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
    assert len(baseline) == 1 and baseline[0]["param.b"] == 0.05 and baseline[0]["param.i"] == 0.065536
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


# ------------------------------------------------------------------- how a..i enter the loss

#: One distinctive value per weight, none equal, so a swap of any two changes the loss.
DISTINCT = {"a": 0.3, "b": 0.7, "c": 1.3, "d": 29.0, "e": 61.0, "f": 0.21, "g": 0.83, "h": 2.9, "i": 0.011}


def _outputs(seed: int = 0) -> tuple[ModelOutput, ModelOutput, list[HeadOutput], torch.Tensor]:
    """Random student / teacher / head outputs for B = 6, C = 4, D = 5, in float32 as the
    trainer computes its losses, spread widely enough that the terms are far from 0."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    student = ModelOutput(r(6, 4, scale=2.0), r(6, 5, scale=3.0), [])
    teacher = ModelOutput(r(6, 4, scale=2.0), r(6, 5), [])
    heads = [HeadOutput(r(6, 4, scale=2.0), r(6, 5, scale=2.0)) for _ in range(3)]
    return student, teacher, heads, torch.randint(0, 4, (6,), generator=g)


def _by_hand(w: dict[str, float], s: LossWeightsSettings) -> dict[str, float]:
    """Each term from the loss functions themselves, with the weights where METHODS §1 puts them."""
    student, teacher, heads, y = _outputs()
    ce = F.cross_entropy(student.logits, y)
    kd = kd_loss(student.logits, teacher.logits, s.kd_temperature)
    rkd = w["d"] * rkd_distance_loss(student.embedding, teacher.embedding, w["f"]) + w["e"] * rkd_angle_loss(student.embedding, teacher.embedding, w["g"])
    skd = self_distillation_loss(
        [h.logits for h in heads], [h.feature for h in heads], student.logits, student.embedding, y,
        temperature=s.skd_temperature, kd_weight=w["h"], feature_weight=w["i"], feature_reduction=s.hint_reduction,
    )  # fmt: skip
    total = s.f_ce * ce + w["a"] * kd + w["b"] * rkd + w["c"] * skd
    return {"total": total.item(), "ce": ce.item(), "kd": kd.item(), "rkd": rkd.item(), "skd": skd.item()}


def _terms(w: dict[str, float], s: LossWeightsSettings = LossWeightsSettings()) -> dict[str, float]:
    return {k: v.item() for k, v in combined_loss(w, s, *_outputs())._asdict().items()}


def test_combined_loss_puts_each_weight_where_methods_says() -> None:
    settings = LossWeightsSettings()
    assert _terms(DISTINCT, settings) == pytest.approx(_by_hand(DISTINCT, settings), rel=1e-6)
    # A swapped pair (f <-> g, h <-> i, ...) would give another value: the weights are distinct
    # and the swapped loss differs from the wired one.
    for x, y in (("f", "g"), ("h", "i"), ("d", "e"), ("a", "b"), ("b", "c")):
        swapped = {**DISTINCT, x: DISTINCT[y], y: DISTINCT[x]}
        assert _by_hand(swapped, settings)["total"] != pytest.approx(_terms(DISTINCT, settings)["total"], rel=1e-4), (x, y)


#: Which logged terms each weight may move (the total always moves).
MOVES = {"a": set(), "b": set(), "c": set(), "d": {"rkd"}, "e": {"rkd"}, "f": {"rkd"}, "g": {"rkd"}, "h": {"skd"}, "i": {"skd"}}


@pytest.mark.parametrize("name", sorted(MOVES))
def test_setting_one_weight_moves_only_its_term(name: str) -> None:
    base = {k: getattr(LossWeightsSettings(), k) for k in MOVES}  # the research baseline
    before = _terms(base)
    after = _terms({**base, name: DISTINCT[name]})
    moved = {k for k in ("ce", "kd", "rkd", "skd") if after[k] != before[k]}
    assert moved == MOVES[name]
    assert after["total"] != pytest.approx(before["total"], rel=1e-4)
    assert after == pytest.approx(_by_hand({**base, name: DISTINCT[name]}, LossWeightsSettings()), rel=1e-6)


def test_seed_sweep_file_is_random_search_without_early_stopping_baseline_first() -> None:
    from kdsweep.orchestrator.config import load_sweep

    cfg = load_sweep("loss_weights_seed", ["data.dataset=digits"])
    assert (cfg.searcher, cfg.num_trials, cfg.asha.min_epochs, cfg.asha.max_epochs) == ("random", 100, 10, 10)
    baseline = {k: getattr(LossWeightsSettings(), k) for k in MOVES}
    assert [dict(p) for p in cfg.points_to_evaluate] == [baseline]
    assert (cfg.settings.stem, cfg.settings.hint_reduction) == ("imagenet", "mean")
    # Seed 000's baseline i = 1e-6 in summed units at B = 128, D = 512, in mean units.
    assert cfg.points_to_evaluate[0]["i"] == pytest.approx(1e-6 * 128 * 512, rel=1e-12) and cfg.settings.batch_size == 128
