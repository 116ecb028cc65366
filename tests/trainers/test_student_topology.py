"""The student-topology trainer: students built from filter lists (layer counts, shapes and
parameter counts checked by hand), proposal and config checks, a tiny distillation run on
digits that reports every metric, the once-per-sweep teacher reference, resume, and the
report section's Pareto front, limit curve and figure."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.orchestrator.config import ConfigError, load_sweep
from kdsweep.orchestrator.report import RunSummary
from kdsweep.trainers import topology_report
from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.data import DataSettings
from kdsweep.trainers.models import count_parameters
from kdsweep.trainers.objective import ObjectiveSettings, scores
from kdsweep.trainers.student_topology import REFERENCE_FILE, StudentTopologyTrainer, build_student
from kdsweep.trainers.student_topology_spec import StudentTopology, StudentTopologySettings, layer_names
from kdsweep.trainers.topology_report import limit_curve, pareto_front
from tests.conftest import kdsweep

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- builders


def conv_bn(cin: int, cout: int, k: int = 3) -> int:
    """Parameters of a bias-free k×k conv and its BatchNorm (weight + bias)."""
    return k * k * cin * cout + 2 * cout


def linear(cin: int, classes: int = 10) -> int:
    return cin * classes + classes


def convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def test_vgg_student_with_zeros_at_pool_positions_and_a_removed_stage() -> None:
    # conv 2 (before pool 1) removed, stage 3 (convs 5-7) and stage 5 (11-13) removed entirely.
    filters = [16, 0, 32, 32, 0, 0, 0, 64, 0, 16, 0, 0, 0]
    model = build_student("vgg", filters, 10)
    expected = conv_bn(3, 16) + conv_bn(16, 32) + conv_bn(32, 32) + conv_bn(32, 64) + conv_bn(64, 16) + linear(16)
    assert count_parameters(model) == expected == 42_394
    assert convs(model) == 5
    out = model.forward_features(torch.zeros(2, 3, 16, 16))
    assert out.logits.shape == (2, 10)
    # Every pool stays: 16 → 8 → 4 → 2 → 1 → 1; stage channels follow the last kept conv.
    assert [tuple(s.shape[1:]) for s in out.stages] == [(16, 8, 8), (32, 4, 4), (32, 2, 2), (16, 1, 1), (16, 1, 1)]


def test_vgg_student_whose_first_conv_is_removed_reads_the_image_channels() -> None:
    filters = [0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128]
    model = build_student("vgg", filters, 10)
    assert count_parameters(model) == conv_bn(3, 64) + conv_bn(64, 128) + linear(128)
    assert convs(model) == 2


def basic_block(cin: int, w: int, projection: bool) -> int:
    """Two 3×3 conv+BN of width w, plus a 1×1 conv + BN shortcut where width or stride changes."""
    return conv_bn(cin, w) + conv_bn(w, w) + (conv_bn(cin, w, k=1) if projection else 0)


def test_resnet_student_with_zeros_at_stage_starts_and_channel_changes() -> None:
    # f01 stem | stage 1 f02-f04 (stride 1) | stage 2 f05-f08 | stage 3 f09-f14 | stage 4 f15-f17
    filters = [16, 16, 0, 32, 0, 32, 32, 0, 64, 0, 0, 0, 0, 0, 0, 0, 128]
    model = build_student("resnet", filters, 10, stem="cifar")
    expected = (
        conv_bn(3, 16)  # stem
        + basic_block(16, 16, projection=False)  # f02: same width, stride 1: identity shortcut
        + basic_block(16, 32, projection=True)  # f04 (f03 = 0 passes 16 through): width change
        # f05 = 0 at stage 2's start: parameter-free subsample, 32 channels pass through;
        + basic_block(32, 32, projection=False)  # f06: stride 1 (not the stage start), same width
        + basic_block(32, 32, projection=False)  # f07
        + basic_block(32, 64, projection=True)  # f09: stage 3's start, stride 2 and width change
        # f15 = 0 subsamples at stage 4's start; f16 = 0;
        + basic_block(64, 128, projection=True)  # f17: stride 1 but width change
        + linear(128)
    )
    assert count_parameters(model) == expected == 345_946
    assert convs(model) == 1 + 2 * 6 + 3
    out = model.forward_features(torch.zeros(2, 3, 16, 16))
    assert out.logits.shape == (2, 10)
    assert [tuple(s.shape[1:]) for s in out.stages] == [(32, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]


def test_resnet_student_without_stem_projects_the_image_channels() -> None:
    filters = [0, 16] + [0] * 15
    for stem in ("cifar", "imagenet"):
        model = build_student("resnet", filters, 10, stem=stem)
        assert count_parameters(model) == basic_block(3, 16, projection=True) + linear(16)
        assert convs(model) == 3
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)


def test_resnet_student_imagenet_stem_is_a_7x7_stride_2_conv_and_a_max_pool() -> None:
    filters = [64, 64, 64, 64] + [0] * 13
    model = build_student("resnet", filters, 10)  # the default: the seed's torchvision stem
    expected = conv_bn(3, 64, k=7) + 3 * basic_block(64, 64, projection=False) + linear(64)
    assert count_parameters(model) == expected
    out = model.forward_features(torch.zeros(2, 3, 32, 32))
    # 32 → 16 (stride-2 conv) → 8 (max-pool); the dropped stage starts subsample 8 → 4 → 2 → 1.
    assert [tuple(s.shape[1:]) for s in out.stages] == [(64, 8, 8), (64, 4, 4), (64, 2, 2), (64, 1, 1)]
    # Without the stem conv the 4-fold downsampling stays, parameter-free.
    no_conv = build_student("resnet", [0] + filters[1:], 10).forward_features(torch.zeros(2, 3, 32, 32))
    assert [tuple(s.shape[1:]) for s in no_conv.stages] == [(64, 8, 8), (64, 4, 4), (64, 2, 2), (64, 1, 1)]


# --------------------------------------------------------------------------- checks


def test_check_params_rejects_all_zero_wrong_length_and_unknown_names() -> None:
    check = StudentTopology.check_params
    vgg, resnet = StudentTopologySettings(form="vgg"), StudentTopologySettings(form="resnet")
    zeros = dict.fromkeys(layer_names("vgg"), 0)
    assert "must not all be 0" in (check(zeros, vgg) or "")
    assert check({**zeros, "f05": 16}, vgg) is None
    short = {n: 16 for n in layer_names("vgg")[:-1]}
    assert "missing ['f13']" in (check(short, vgg) or "")
    assert "unknown ['f14']" in (check({**zeros, "f05": 16, "f14": 16}, vgg) or "")
    assert check(dict.fromkeys(layer_names("resnet"), 32), resnet) is None
    assert "f01..f17" in (check({**zeros, "f05": 16}, resnet) or "")
    assert "must not all be 0" in (check(dict.fromkeys(layer_names("resnet"), 0), resnet) or "")
    assert ">= 0" in (check({**zeros, "f01": -16}, vgg) or "")


def test_the_sweep_files_validate_and_mistakes_are_named() -> None:
    for form in ("vgg", "resnet"):
        cfg = load_sweep(ROOT / f"search_spaces/student_topology_{form}.toml", ["data.dataset=digits", "objective.r_t=10"])
        assert cfg.settings.form == form and len(cfg.space) == len(layer_names(form))
        assert cfg.asha.metric == "J" and cfg.objective == ObjectiveSettings(r_t=10.0)
        assert all(p.values == (0, 16, 32, 64, 128, 256, 512) for p in cfg.space)
    overrides = [
        "data.dataset=digits", "settings.form=resnet", "objective.r_t=-1", "objective.a_max=0.0",
        "settings.alpha=1.5", "settings.latency_repeats=0",
    ]  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_sweep(ROOT / "search_spaces/student_topology_vgg.toml", overrides)
    fields = {issue.field for issue in err.value.issues}
    assert {"space", "objective.r_t", "objective.a_max", "settings.alpha", "settings.latency_repeats"} <= fields
    missing = next(i for i in err.value.issues if i.field == "space")
    assert missing.value == ["f14", "f15", "f16", "f17"]
    zeros = "{" + ", ".join(f"{n} = 0" for n in layer_names("vgg")) + "}"
    with pytest.raises(ConfigError, match="must not all be 0"):
        load_sweep(ROOT / "search_spaces/student_topology_vgg.toml", ["data.dataset=digits", f"points_to_evaluate=[{zeros}]"])


# --------------------------------------------------------------------------- training

TINY = StudentTopologySettings(
    teacher_width=0.0625, teacher_epochs=1, batch_size=64, lr=0.05,
    latency_images=64, latency_batch_size=32, latency_warmup=1, latency_repeats=3,
)  # fmt: skip
DATA = DataSettings(dataset="digits", image_size=8)
STUDENTS = {
    "vgg": [16, 0, 16, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0],
    "resnet": [16, 16, 0, 0, 32] + [0] * 12,
}


def make(tmp_path: Path, form: str, objective: ObjectiveSettings | None = None) -> StudentTopologyTrainer:
    ctx = TrialContext(
        trial_id="t0000", seed=7, attempt=0, run_dir=tmp_path, cache_dir=tmp_path / "run-cache", device="cpu",
        data=DATA, budget_epochs=1, objective=objective or ObjectiveSettings(),
    )  # fmt: skip
    settings = dataclasses.replace(TINY, form=form, teacher_cache=str(tmp_path / "teachers"))
    return StudentTopologyTrainer(dict(zip(layer_names(form), STUDENTS[form])), settings, ctx)


@pytest.mark.parametrize("form", ["vgg", "resnet"])
def test_one_epoch_reports_every_metric_and_a_resumed_trial_its_latency(tmp_path: Path, form: str) -> None:
    trainer = make(tmp_path, form)
    metrics = trainer.train_epoch(1) | trainer.evaluate() | trainer.test()
    assert set(metrics) == set(StudentTopology.metric_names(TINY))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    # The per-example record behind val_acc (the worker's val_n and val_correct).
    assert trainer.val_correct.shape == (len(trainer.data.val.y),) and trainer.val_correct.mean() == metrics["val_acc"]
    assert set(trainer.test()) == {"test_acc", "test_loss", "test_J"}
    assert metrics["num_params"] == count_parameters(build_student(form, STUDENTS[form], 10))
    assert metrics["latency_s"] > 0 and metrics["macs"] > 0
    recorded = json.loads((tmp_path / "run-cache" / REFERENCE_FILE).read_text())["references"]
    assert len(recorded) == 1 and recorded[0]["t_max"] == metrics["t_max"] and recorded[0]["a_max"] == metrics["a_max"] == metrics["teacher_val_acc"]
    expected = scores(metrics["latency_s"], metrics["val_acc"], r_t=1.0, t_min=0.0, t_max=metrics["t_max"], a_min=0.0, a_max=metrics["a_max"])
    assert (metrics["j_t"], metrics["j_a"], metrics["J"]) == (expected.j_t, expected.j_a, expected.J)
    assert metrics["test_J"] == scores(metrics["latency_s"], metrics["test_acc"], r_t=1.0, t_min=0.0, t_max=metrics["t_max"], a_min=0.0, a_max=metrics["a_max"]).J

    save_checkpoint(tmp_path / "ck.pt", {"trainer": trainer.state_dict()})
    state = load_checkpoint(tmp_path / "ck.pt")  # torch.load(weights_only=True)
    assert state is not None
    resumed = make(tmp_path, form)  # a later trial of the sweep: reads the recorded reference
    resumed.load_state_dict(state["trainer"])
    again = resumed.evaluate()
    assert again == {k: metrics[k] for k in again}
    assert json.loads((tmp_path / "run-cache" / REFERENCE_FILE).read_text())["references"] == recorded


def test_objective_values_override_the_measured_reference(tmp_path: Path) -> None:
    trainer = make(tmp_path, "vgg", ObjectiveSettings(r_t=10.0, t_max=5.0, a_max=0.99))
    metrics = trainer.evaluate()
    assert (metrics["t_max"], metrics["a_max"]) == (5.0, 0.99)
    assert not (tmp_path / "run-cache" / REFERENCE_FILE).exists()  # nothing to measure
    assert metrics["j_t"] == pytest.approx((5.0 - metrics["latency_s"]) / 5.0 / 10.0)  # j_t in [0, 1/r_t]


def test_a_student_slower_than_t_max_or_over_a_limit_is_screened_out_before_training(tmp_path: Path) -> None:
    """Latency, parameters and MACs depend only on the architecture: measured before the first
    epoch, a student slower than t_max (J = 0 whatever its accuracy) or over a hard limit is
    rejected then, with the measurements; otherwise it trains, keeping that latency."""
    fast = make(tmp_path, "vgg", ObjectiveSettings(t_max=10.0))
    assert fast.screen() is None
    measured = fast.latency
    assert fast.evaluate()["latency_s"] == measured  # measured once, before training
    slow = make(tmp_path, "vgg", ObjectiveSettings(t_max=1e-9, a_max=0.99)).screen()
    assert slow is not None and "t_max" in slow.reason and "J = 0" in slow.reason and slow.metrics["J"] == 0.0
    assert slow.metrics["latency_s"] > 1e-9 and slow.metrics["num_params"] == count_parameters(build_student("vgg", STUDENTS["vgg"], 10))
    big = make(tmp_path, "vgg", ObjectiveSettings(t_max=10.0, max_params=100)).screen()
    assert big is not None and "objective.max_params 100" in big.reason
    capped = make(tmp_path, "vgg", ObjectiveSettings(t_max=10.0, max_latency_s=1e-9)).screen()
    assert capped is not None and "objective.max_latency_s" in capped.reason


# --------------------------------------------------------------------------- report


def test_pareto_front_of_chosen_points_with_ties() -> None:
    points = [
        (0.30, 0.90),  # 0: front (most accurate)
        (0.10, 0.70),  # 1: front (fastest)
        (0.20, 0.85),  # 2: front
        (0.25, 0.80),  # 3: dominated by 2
        (0.10, 0.60),  # 4: same latency as 1, less accurate
        (0.20, 0.85),  # 5: identical to 2: only the first is kept
        (0.40, 0.90),  # 6: as accurate as 0, slower
        (math.nan, 1.0),  # 7: ignored
    ]
    assert pareto_front(points) == [1, 2, 0]
    assert pareto_front([]) == [] and pareto_front([(0.1, 0.5)]) == [0]


def test_limit_curve_passes_near_the_front_and_handles_one_or_two_points() -> None:
    acc = [0.60, 0.75, 0.85, 0.90, 0.93]
    lat = [0.010, 0.015, 0.025, 0.040, 0.070]
    curve = limit_curve(acc, lat, points=34)  # a step of 0.01: the grid holds every front accuracy
    assert curve.accuracy[0] == 0.60 and curve.accuracy[-1] == pytest.approx(0.93) and len(curve.latency_s) == 34
    grid = {round(a, 6): t for a, t in zip(curve.accuracy, curve.latency_s)}
    for a, t in zip(acc, lat):
        assert abs(grid[round(a, 6)] - t) < 0.1 * (max(lat) - min(lat)), (a, t, grid[round(a, 6)])
    assert all(sd >= 0 for sd in curve.std_s)
    assert limit_curve(acc, lat, points=34) == curve  # seeded: the same front, the same curve
    assert limit_curve([0.8], [0.02], points=41) == topology_report.LimitCurve((0.8,), (0.02,), (0.0,))
    two = limit_curve([0.7, 0.9], [0.01, 0.05], points=5)
    assert len(two.latency_s) == 5 and all(math.isfinite(v) for v in two.latency_s + two.std_s)


def report_rows(cfg: Any) -> list[dict[str, Any]]:
    """Search-stage rows of a sweep of seven students, as the store would hold them: five
    trained for 3 epochs (t0006 dominated by t0001), two stopped after one (t0005 the fastest
    of all, but near chance)."""
    rows: list[dict[str, Any]] = []
    students = [
        ("t0000", 0.010, 0.80, 3), ("t0001", 0.030, 0.95, 3), ("t0002", 0.020, 0.70, 1), ("t0003", 0.050, 0.97, 3),
        ("t0004", 0.015, 0.90, 3), ("t0005", 0.005, 0.30, 1), ("t0006", 0.040, 0.85, 3),
    ]  # fmt: skip
    for tid, latency, acc, epochs in students:
        sc = scores(latency, acc, r_t=1.0, t_min=0.0, t_max=0.08, a_min=0.0, a_max=0.98)
        params = {f"param.{n}": 16 * (i % 3) + 16 for i, n in enumerate(layer_names("vgg"))}
        for epoch in range(1, epochs + 1):
            rows.append({
                "trial_id": tid, "event": "report", "epoch": epoch, "device": "cpu", "val_acc": acc - 0.1 * (epochs - epoch),
                "latency_s": latency, "J": sc.J, "num_params": 1000.0, "macs": 5000.0, "t_max": 0.08, "a_max": 0.98, **params,
            })  # fmt: skip
        rows.append({"trial_id": tid, "event": "completed" if epochs == 3 else "stopped", "epoch": epochs})
    return rows


def test_report_section_renders_serialises_and_plots_a_png(tmp_path: Path) -> None:
    cfg = load_sweep(ROOT / "search_spaces/student_topology_vgg.toml", ["data.dataset=digits"])
    summary = RunSummary(cfg, trials=[], rungs=[], driver=None, skipped=[], rows=report_rows(cfg))
    doc = topology_report.to_dict(summary)
    assert [s["trial_id"] for s in doc["pareto"]] == ["t0000", "t0004", "t0001", "t0003"]
    assert (doc["students"], doc["epochs"], doc["students_at_epochs"]) == (7, 3, 5) and doc["reference"] == {"t_max": 0.08, "a_max": 0.98, "r_t": 1.0, "teacher": True}
    assert len(doc["limit_curve"]) == topology_report.TABLE_POINTS
    json.dumps(doc)
    console = Console(width=200, record=True)
    topology_report.render(summary, console)
    text = console.export_text()
    assert "Pareto-optimal students" in text and "4 of the 5 trained for 3 epochs" in text and "t_max 0.08 s" in text and "limit curve" in text
    path = tmp_path / "front.png"
    topology_report.plot(summary, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


# --------------------------------------------------------------------------- end to end

E2E_SWEEP = """
name = "topology_e2e"
trainer = "student_topology"
searcher = "random"
num_trials = 3
# Seed 2's second random proposal is f01 = f02 = 0 (checked against the Searcher).
seed = 2

[space]
f01 = { type = "choice", values = [0, 16] }
f02 = { type = "choice", values = [0, 16] }
%s

[asha]
metric = "J"
mode = "max"
min_epochs = 1
max_epochs = 2
reduction_factor = 2

[backend]
max_concurrent = 1
gpus_per_trial = 0

[settings]
teacher_width = 0.0625
teacher_epochs = 1
batch_size = 64
teacher_cache = "%s"
latency_images = 64
latency_batch_size = 32
latency_warmup = 1
latency_repeats = 3

[data]
dataset = "digits"
image_size = 8

[objective]
r_t = 1.0
"""


@pytest.mark.slow
def test_a_digits_sweep_records_one_reference_rejects_empty_students_and_reports_the_front(tmp_path: Path) -> None:
    fixed_zero = "\n".join(f'{n} = {{ type = "choice", values = [0] }}' for n in layer_names("vgg")[2:])
    sweep = tmp_path / "topology.toml"
    sweep.write_text(E2E_SWEEP % (fixed_zero, tmp_path / "teachers"))
    out = tmp_path / "run"
    launched = kdsweep("launch", str(sweep), "--out", str(out), "--no-live", "--set", "objective.r_t=10")
    assert launched.returncode == 0, launched.stderr
    references = json.loads((out / "cache" / REFERENCE_FILE).read_text())["references"]
    assert len(references) == 1  # measured by the first trial, read by the others
    report = kdsweep("report", str(out), "--format", "json")
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    section = doc["student_topology"]
    assert section["reference"]["r_t"] == 10.0 and section["reference"]["t_max"] == references[0]["t_max"]
    assert section["students"] == 3 and section["pareto"]
    # f01 = f02 = 0 leaves no layer: rejected, never trained, not counted among the 3 trials.
    assert doc["rejected"] and all("must not all be 0" in r["reason"] for r in doc["rejected"])
    png = tmp_path / "front.png"
    plotted = kdsweep("report", str(out), "--plot", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_sweep_file_trains_every_student_ten_epochs_150_random_then_guided() -> None:
    cfg = load_sweep("student_topology_vgg_seed", ["data.dataset=digits"])
    assert (cfg.searcher, cfg.num_trials, cfg.searcher_options, cfg.asha.min_epochs, cfg.asha.max_epochs) == ("gp", 300, {"n_startup_trials": 150}, 10, 10)
    assert (cfg.settings.kd_alpha_on, cfg.settings.alpha, cfg.settings.form) == ("ce", 0.9, "vgg")
    with pytest.raises(ConfigError) as err:
        load_sweep("student_topology_vgg_seed", ["data.dataset=digits", 'settings.kd_alpha_on="both"'])
    assert "settings.kd_alpha_on = 'both': must be one of 'ce', 'kd'" in str(err.value)
