"""Student-topology trainer: the student's per-layer filter counts are searched, distilled from
a VGG16 teacher, and scored by accuracy against latency.

METHODS.md §2 (seed 002): a student is a list of filter counts in {0, 16, 32, 64, 128, 256,
512}, one per conv of VGG16 (``form = "vgg"``, 13 numbers, parameters ``f01``..``f13``) or
per stem + basic block of the ResNet34 layout (``form = "resnet"``, 17 numbers, ``f01`` the
stem, ``f02``..``f17`` the blocks); 0 removes the layer, an all-zero list is rejected before
training (``check_params``). It learns from the cached teacher with

    L = α·CE(z_s, y) + (1 − α)·T²·KL(p_t^T || p_s^T)          (α = 0.9, T = 4)

as the seed's eq. 3 prints it (``settings.kd_alpha_on = "ce"``); the widely used reference
puts α on the KD term instead (``"kd"``: (1 − α)·CE + α·T²·KL), and the seed's citation for
the loss does not resolve which was run. ResNet-form students use torchvision's ImageNet stem
by default (``settings.stem``), as the seed's ResNet18 baseline is torchvision's: with the
CIFAR stem a full ResNet18 costs 555 M MACs at 32×32 against the VGG16 teacher's 313 M, and
most ResNet-form students would score J = 0 (slower than t_max).

and each trial reports its validation accuracy a, its latency t (``measure_latency``: the
first ``latency_images`` validation images in batches, eval mode, no_grad, warm-up passes,
median of ``latency_repeats`` timed passes, CUDA synchronised), parameters, MACs, and the
objective of ``trainers/objective.py``: j_t(t), j_a(a) and their harmonic mean J, the sweep
metric. The references t_max and a_max are the teacher's latency (same procedure, same
images) and validation accuracy, measured by the first trial that needs them and recorded in
``RUN_DIR/cache/objective_reference.json`` (``teacher_reference``), so every trial of a sweep
and ``kdsweep retrain`` score against the same numbers; ``[objective]`` may set them instead.

Latency is measured once per trial, at its first evaluation, and kept in the checkpoint, so a
resumed trial reports the latency it reported before (measurement noise would otherwise move
J between rungs of one trial).

Measured claim (2026-11-22, 2-core CPU, one torch thread per trial, one trial at a time): on
digits at 16×16, a VGG16 teacher (width 1, 15 epochs) trains in 100 s to val_acc 0.993 and
classifies the 144 validation images in 0.19 s (t_max); a student epoch with evaluation (batch
32, teacher forward included) takes 4–14 s, ~40 s for the slowest proposed (8× the teacher's
latency). Two 16-trial sweeps (``student_topology_vgg.toml`` with the seed's filter choices;
TPE after 8 random, seed 0; ASHA rungs 1 and 3; teacher cached), run back to back: r_t = 1 in
4 min 32 s, winner [0, 32, 16, 128, 512, 128, 64, 512, 32, 0, 0, 16, 32] at 0.057 s (3.3×
faster than the teacher), val_acc 0.951, J 0.807; r_t = 10 in 4 min 4 s, winner
[32, 16, 32, 32, 128, 32, 32, 32, 16, 128, 256, 16, 128] at 0.018 s (10.5× faster), val_acc
0.882, J 0.179 — the speed weight moves the winner 3.2× faster for 7 points of accuracy.
Resuming from a checkpoint reports the latency measured before
(``tests/trainers/test_student_topology.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import math
import os
import socket
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdsweep.orchestrator.atomic import open_lock, write_atomic
from kdsweep.trainers.base import Screening, Training, TrialContext
from kdsweep.trainers.data import DataSettings, Split, load_data, uses_flip
from kdsweep.trainers.losses import label_kd_loss
from kdsweep.trainers.models import ResNetStudent, StagedClassifier, Stem, VGGStudent, count_macs, count_parameters
from kdsweep.trainers.objective import ObjectiveSettings, Scores, check_objective, scores
from kdsweep.trainers.student_topology_spec import StudentTopologySettings, filters_of
from kdsweep.trainers.teachers import load_teacher
from kdsweep.trainers.training import Device, StepSchedule, evaluate_classifier, make_optimizer, seeded, train_batches

#: Where the once-per-sweep teacher reference is recorded, inside the sweep's cache directory.
REFERENCE_FILE = "objective_reference.json"


def build_student(form: str, filters: Sequence[int], num_classes: int, in_channels: int = 3, stem: Stem = "imagenet") -> StagedClassifier:
    """The student of ``form`` with per-layer ``filters`` (``VGGStudent``, or ``ResNetStudent``
    behind ``stem``)."""
    if form == "vgg":
        return VGGStudent(filters, num_classes, in_channels)
    return ResNetStudent(filters, num_classes, in_channels, stem)


def latency_batches(split: Split, settings: StudentTopologySettings, device: Device) -> list[Tensor]:
    """The fixed inputs every latency measurement of a sweep times: the first
    ``latency_images`` images of ``split`` (all if fewer) in batches, in the device's layout."""
    n = min(settings.latency_images, len(split))
    size = settings.latency_batch_size
    return [device.batch(split.x[start : start + size]) for start in range(0, n, size)]


@torch.no_grad()
def measure_latency(model: nn.Module, batches: Sequence[Tensor], device: Device, *, warmup: int, repeats: int) -> float:
    """Median seconds, over ``repeats`` timed passes, for ``model`` to classify all of
    ``batches`` in eval mode under no_grad (and the device's autocast), after ``warmup``
    untimed passes. On CUDA the clock reads after a synchronize, so queued kernels count.
    The model's train/eval flag is restored."""
    was_training = model.training
    model.eval()

    def one_pass() -> None:
        with device.autocast():
            for x in batches:
                model(x)

    def sync() -> None:
        if device.cuda:
            torch.cuda.synchronize(device.torch)

    try:
        for _ in range(warmup):
            one_pass()
        times = []
        for _ in range(repeats):
            sync()
            started = time.perf_counter()
            one_pass()
            sync()
            times.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    return statistics.median(times)


def teacher_reference(cache_dir: Path, conditions: Mapping[str, Any], measure: Callable[[], float], teacher_val_acc: float) -> dict[str, Any]:
    """The sweep's teacher reference measured under ``conditions``, measuring it if no trial has.

    ``RUN_DIR/cache/objective_reference.json`` holds ``{"references": [record, ...]}``, one
    record per measurement conditions (teacher, device, threads, images, batch size, layout):
    ``conditions``, ``t_max`` (the teacher's latency, ``measure()``), ``a_max`` (its
    validation accuracy), who measured and when. The first caller takes an exclusive ``flock``
    on ``objective_reference.json.lock``, measures and writes the file atomically; callers at
    the same time wait on the lock and read the record, so it is measured once. A retrain on
    another device (other conditions) adds its own record rather than compare its students'
    latencies with a reference timed elsewhere. ``conditions`` must hold JSON scalars only.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / REFERENCE_FILE
    wanted = json.loads(json.dumps(dict(conditions)))  # compare as the file will hold it
    with os.fdopen(open_lock(cache_dir / f"{REFERENCE_FILE}.lock")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records: list[dict[str, Any]] = json.loads(path.read_text())["references"] if path.exists() else []
        for record in records:
            if record["conditions"] == wanted:
                return record
        record = {
            "conditions": wanted,
            "t_max": measure(),
            "a_max": teacher_val_acc,
            "measured_by": f"{socket.gethostname()}:{os.getpid()}",
            "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        write_atomic(path, json.dumps({"references": [*records, record]}, indent=2).encode())
        return record


class StudentTopologyTrainer(Training):
    """One student of a searched topology, distilled from the teacher and scored by J."""

    def __init__(self, params: Mapping[str, Any], settings: StudentTopologySettings, ctx: TrialContext) -> None:
        self.filters = filters_of(params, settings.form)
        self.s = settings
        # A context built without an [objective] (by hand, or by a caller that predates it)
        # scores against the defaults, which every sweep file may also leave implicit.
        self.objective: ObjectiveSettings = ctx.objective if ctx.objective is not None else ObjectiveSettings()
        problems = check_objective(self.objective)
        if problems:
            raise ValueError("; ".join(f"{field} = {value!r}: must be {allowed}" for field, value, allowed in problems))
        self.device = Device(ctx.device, settings)
        data_settings: DataSettings = ctx.data
        self.data = load_data(data_settings, self.device.torch)
        self.teacher = load_teacher(settings, data_settings, self.device, self.data)
        num_classes = self.data.num_classes
        student = seeded(ctx.seed, lambda: build_student(settings.form, self.filters, num_classes, stem=settings.stem))
        image_shape = list(self.data.val.x.shape[1:])
        self.num_params = count_parameters(student)
        self.macs = count_macs(student, image_shape)
        self.student = self.device.model(student)
        self.timed = latency_batches(self.data.val, settings, self.device)
        self.t_max, self.a_max = self._references(ctx.cache_dir)
        #: Seconds, measured at the first evaluation and then kept (also across resumes).
        self.latency: float | None = None
        self.generator = torch.Generator(device=self.data.train.x.device).manual_seed(ctx.seed)
        self.batches = train_batches(self.data.train, settings, self.generator, augment=data_settings.augment, flip=uses_flip(data_settings))
        self.optimizer = make_optimizer(self.student.parameters(), settings)
        self.schedule = StepSchedule(self.optimizer, settings, ctx.budget_epochs * len(self.batches))

    def _references(self, cache_dir: Path) -> tuple[float, float]:
        """(t_max, a_max): the ``[objective]`` values where set, else the sweep's recorded
        teacher reference (the teacher is timed only when t_max is not given)."""
        o, teacher = self.objective, self.teacher
        teacher_acc = float(teacher.info["val_acc"])
        if o.t_max is not None:
            return o.t_max, o.a_max if o.a_max is not None else teacher_acc
        dev = self.device
        conditions = {
            "teacher": str(teacher.info["name"]),
            "device": f"cuda:{torch.cuda.get_device_name(dev.torch)}" if dev.cuda else "cpu",
            # CPU latency scales with the intra-op threads (the worker sets backend.cpus_per_trial).
            "threads": None if dev.cuda else torch.get_num_threads(),
            "images": sum(len(x) for x in self.timed),
            "batch_size": self.s.latency_batch_size,
            "bf16": dev.bf16,
            "channels_last": dev.channels_last,
        }
        record = teacher_reference(cache_dir, conditions, lambda: self._time(teacher.model), teacher_acc)
        return float(record["t_max"]), o.a_max if o.a_max is not None else float(record["a_max"])

    def _time(self, model: nn.Module) -> float:
        return measure_latency(model, self.timed, self.device, warmup=self.s.latency_warmup, repeats=self.s.latency_repeats)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        s, dev = self.s, self.device
        self.student.train()
        # Summed on the device and read once: a float() per step would synchronise CUDA.
        total = torch.zeros((), device=dev.torch)
        n = 0
        for x, y in self.batches:
            x = dev.batch(x)
            with dev.autocast():
                logits = self.student(x)
                with torch.no_grad():
                    teacher_logits = self.teacher.model(x)
            # float32 losses: softmax at T = 4 loses too much in bf16, and it is cheap.
            loss = label_kd_loss(logits.float(), teacher_logits.float(), y, alpha=s.alpha, temperature=s.temperature, alpha_on=s.kd_alpha_on)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total += loss.detach()
            n += 1
        return {"train_loss": float(total) / max(1, n)}

    def _latency(self) -> float:
        if self.latency is None:
            self.latency = self._time(self.student)
        return self.latency

    def screen(self) -> Screening | None:
        """Before the first epoch: latency, parameters and MACs depend only on the
        architecture, so a student slower than t_max (J = 0 whatever its accuracy, eq. 4) or
        over ``objective.max_latency_s`` / ``max_params`` is rejected before it costs an
        epoch; the measurements go into the rejected row."""
        latency, o = self._latency(), self.objective
        measured = {"latency_s": latency, "num_params": float(self.num_params), "macs": float(self.macs), "t_max": self.t_max, "a_max": self.a_max}
        if latency > self.t_max:
            reason = f"latency {latency:.4g} s > t_max {self.t_max:.4g} s: J = 0 whatever its accuracy (seed 002 eq. 4)"
            # Its J is known: the searcher is told 0, not a failure, so that a model-based
            # one (GP) learns where the latency boundary lies.
            measured |= {"j_t": 0.0, "J": 0.0}
        elif o.max_latency_s is not None and latency > o.max_latency_s:
            reason = f"latency {latency:.4g} s > objective.max_latency_s {o.max_latency_s:.4g} s"
        elif o.max_params is not None and self.num_params > o.max_params:
            reason = f"{self.num_params} parameters > objective.max_params {o.max_params}"
        else:
            return None
        return Screening(reason, measured)

    def _scores(self, accuracy: float) -> Scores:
        o = self.objective
        return scores(self._latency(), accuracy, r_t=o.r_t, t_min=o.t_min, t_max=self.t_max, a_min=o.a_min, a_max=self.a_max)

    def evaluate(self) -> dict[str, float]:
        val = evaluate_classifier(self.student, self.data.val, self.device)
        self.val_correct = val.correct
        sc = self._scores(val.acc)
        return {
            "val_acc": val.acc,
            "val_loss": val.loss,
            "latency_s": self._latency(),
            "num_params": float(self.num_params),
            "macs": float(self.macs),
            "t_max": self.t_max,
            "a_max": self.a_max,
            "j_t": sc.j_t,
            "j_a": sc.j_a,
            "J": sc.J,
            "teacher_val_acc": float(self.teacher.info["val_acc"]),
        }

    def test(self) -> dict[str, float]:
        """Test-split accuracy and loss, and J with the test accuracy in place of the
        validation one (same latency, same t_max and a_max)."""
        test = evaluate_classifier(self.student, self.data.test, self.device)
        return {"test_acc": test.acc, "test_loss": test.loss, "test_J": self._scores(test.acc).J}

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "latency": self.latency,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        self.latency = state["latency"]
