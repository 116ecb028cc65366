"""The GPU path measured: what the seed-faithful sweep files' time estimates rest on.

Prints one line per figure, ``name key=value ...``, to stdout:

- ``device``: the GPU (or ``cpu`` in tiny mode), its NVIDIA driver (from ``nvidia-smi``;
  ``n/a`` where there is none), the torch, CUDA and cuDNN versions torch was built with, and
  whether tiny mode ran;
- ``train`` (3 lines): epoch seconds and images/s of the ResNet18 student (CE step: forward,
  backward, SGD, on device-resident generated CIFAR-sized data with the trainers' batched
  crop + flip), ImageNet stem (the seeds') with and without bf16 autocast + channels_last,
  and the CIFAR stem with them, for comparison;
- ``loss_weights_step``: the loss-weights trainer's step (ResNet18 student + BYOT heads, a
  frozen ResNet18 teacher, ``combined_loss``); its epoch time is what a trial costs;
- ``topology_step``: the student-topology step with the largest seed-space VGG form there is
  in practice, VGG16 itself, distilled from a VGG16 teacher (``label_kd_loss``);
- ``graph_gates_step``: the graph-gates trainer's step of ``graph_gates.toml``'s 3-node
  all-through graph (ResNet32 target, ResNet110, WRN-28-2; CIFAR-100's 100 classes, batch 64,
  ``node_loss`` for every node, one backward, three SGD steps), for that file's estimate;
- ``latency`` (2 lines): student (ResNet18, ImageNet stem) and teacher (VGG16) latency as the
  student-topology trainer measures it (``measure_latency``: the first 1024 images in batches
  of 128, 2 warm-up passes, median of 5);
- ``packed`` (2 lines): a real kdsweep sweep through kdsweep's own Ray backend, one at a time
  (``backend.gpus_per_trial = 1``, ``max_concurrent = 1``) and four trials packed on the one
  GPU (``gpus_per_trial = 0.25``, ``max_concurrent = 4``). The sweep is
  ``search_spaces/loss_weights_seed.toml`` (its research baseline and 3 random proposals:
  4 trials) on generated CIFAR-10 files in torchvision's layout (20 000 training images,
  18 000 after the validation split), 3 epochs each, one ASHA rung at epoch 3 (no early
  stopping), its ResNet18 teacher pretrained for 1 epoch before either sweep so that neither
  pays for it. Ray runs locally with one GPU (``ray.init(num_gpus=1)``). From the results
  store: ``epochs_trained`` = the completed trials' epochs, summed; ``images`` = that × the
  full batches of the training split × batch size (what the trainer steps through);
  ``total_images_per_s`` = images / ``wall_s``, the sweep's wall time from the driver's start
  to its end (actor start-up, data loading and evaluation included, as a user waits for it);
  ``train_images_per_s`` = images / ``train_window_s``, from the first trial's training start
  (its first report's ``reported_at`` − ``wall_s``: after its data, teacher and models were
  built) to the last trial's end. The packed line adds ``vs_one_at_a_time``, the ratio of the
  total images/s. Any failed trial stops the script with the trial's error. Each line
  also carries the GPU's utilisation while that sweep ran, sampled every 0.5 s by
  ``nvidia-smi`` on this host (``gpu_util_median_pct``, ``gpu_util_max_pct``,
  ``gpu_mem_max_mib``, ``gpu_samples``; ``gpu_util=n/a`` where there is no ``nvidia-smi``);
- ``packed`` through SLURM (2 more lines, ``backend=slurm``): the same two sweeps through
  kdsweep's SLURM backend when ``sinfo`` here shows a node with a GPU gres: one trial per
  ``gpu:1`` job, one at a time, and four ``gpus_per_trial = 0.25`` trials that SLURM packs
  onto one GPU through its shards (``shard:K``, K = a quarter of a GPU's shards). Where the
  packed sweep's partition has no shards, its line is ``packed backend=slurm
  gpus_per_trial=0.25 skipped: <kdsweep's message>``; without SLURM, or without a GPU gres,
  one line ``packed backend=slurm skipped: <why>``. On one GPU machine this is
  ``slurm/testcluster/start.sh``'s cluster (its stand-in device 0 is the real GPU 0 to
  the jobs, which receive ``CUDA_VISIBLE_DEVICES`` from SLURM); the utilisation is still
  sampled on this host, so on a real cluster, whose jobs run elsewhere, it says nothing.

Epoch figures are projected for CIFAR-10's 45 000 training images (val_fraction 0.1) at the
step's batch size from the measured step rate, after warm-up steps; on CUDA the clock reads
after a synchronize.

Time on one H200 (an estimate, from the rates the ``*_seed.toml`` headers quote for this
script's earlier run on an H200: loss-weights step ~3000 images/s, topology step 6800-8400):
start-up and CUDA initialisation ~20 s; ``train`` 3 × 240 steps of 128 ≤ 30 s; the
loss-weights step 240 × 128 / 3000 ≈ 10 s; topology ≈ 5 s; graph gates 240 × 64 images at
an assumed ≥ 1500 images/s ≤ 10 s; latency < 5 s; ``packed``: generated files, Ray start and
the teacher's epoch ~20 s, one at a time 4 trials × 3 epochs × 18 000 images / 3000 ≈ 72 s
plus ~25 s of actor start and data loading, packed ~72 / 3.9 ≈ 20 s plus ~25 s: ~2.7 min.
In all about 4 min; at half the quoted rates about 6.5 min, still under 8. Where SLURM's
path runs too, add about as much again as the Ray sweeps (each job starts its own Python and
loads its data): about 6.5 min, under 10 at half the quoted rates.

Tiny mode (``--tiny``): one torch thread, one warm-up and one timed step of batch 8 for each
step figure, 8 latency images, and the packed sweeps at width 0.25 (student and teacher),
batch 16, on 200 generated training images, one epoch per trial; Ray's one GPU is then a
declared resource only where there is no CUDA (the trials compute on the CPU), and Ray gets
at least 4 logical CPUs whatever the cores. It checks that the script and its Ray path work,
e.g. on a CPU in the test suite, SLURM's path included on the test cluster's stand-in GPUs
(their trials compute on the CPU; 1 GB per trial job); its first line says that
its numbers mean nothing. Without CUDA and without ``--tiny`` the script exits with status 2
and a message saying so, measuring nothing.

kdsweep must be installed from this checkout (``pip install -e .``, README): the sweep runs
through its entry points and Ray workers import it. ``benchmarks/gpu_check.sh`` runs the
script with the repository's ``.venv/bin/python`` when there is one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import threading
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import kdsweep.trainers
from kdsweep.trainers.architectures import Stem
from kdsweep.trainers.data import Batches, Split, load_data
from kdsweep.trainers.graph import baseline
from kdsweep.trainers.graph_gates import node_loss
from kdsweep.trainers.loss_weights import LossWeightsSettings, combined_loss
from kdsweep.trainers.losses import label_kd_loss
from kdsweep.trainers.models import SelfDistillationHeads, build_model, resnet18
from kdsweep.trainers.student_topology import measure_latency
from kdsweep.trainers.teachers import load_teacher
from kdsweep.trainers.training import Device, SGDSettings, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
#: CIFAR-10's training images with the sweeps' val_fraction 0.1.
EPOCH_IMAGES = 45_000
#: The sweep the packed figures run (its research baseline first).
PACKED_SWEEP = ROOT / "search_spaces" / "loss_weights_seed.toml"
PACKED_TRIALS = 4


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run: full on CUDA, tiny with ``--tiny``."""

    device: str
    tiny: bool
    #: Generated images the step figures cycle through.
    images: int
    batch: int
    warmup: int
    steps: int
    latency_images: int
    #: Generated CIFAR-10 files of the packed sweeps: images per training batch file (5 of
    #: them) and in the test file.
    sweep_images_per_file: int
    sweep_test_images: int
    sweep_epochs: int
    #: ``--set`` overrides that shrink the packed sweeps' models in tiny mode.
    sweep_overrides: tuple[str, ...]


def plan(tiny: bool) -> Plan:
    """The sizes of a tiny or a full run, on CUDA when torch sees it, else on the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if tiny:
        shrink = ("settings.student_width=0.25", "settings.teacher_width=0.25", "settings.batch_size=16")
        return Plan(device, True, images=32, batch=8, warmup=1, steps=1, latency_images=8,
                    sweep_images_per_file=40, sweep_test_images=20, sweep_epochs=1, sweep_overrides=shrink)  # fmt: skip
    return Plan(device, False, images=EPOCH_IMAGES, batch=128, warmup=40, steps=200, latency_images=1024,
                sweep_images_per_file=4_000, sweep_test_images=1_000, sweep_epochs=3, sweep_overrides=())  # fmt: skip


def generated_data(p: Plan, device: torch.device, num_classes: int = 10) -> Split:
    """Uniform random CIFAR-sized images and labels, seeded, on the device (as ``load_data``
    keeps the real ones); the convolutions cost the same whatever the pixels."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(p.images, 3, 32, 32, generator=g)
    y = torch.randint(0, num_classes, (p.images,), generator=g)
    return Split(x.to(device), y.to(device))


def batches_of(data: Split, batch: int) -> Batches:
    """The trainers' training batches: shuffled, random crop + flip, full batches only."""
    generator = torch.Generator(device=data.x.device).manual_seed(0)
    return Batches(data, batch, shuffle=True, augment=True, flip=True, generator=generator, drop_last=True)


def timed_steps(p: Plan, dev: Device, batches: Batches, step: Callable[[torch.Tensor, torch.Tensor], None]) -> float:
    """Seconds for ``p.steps`` calls of ``step`` after ``p.warmup`` untimed ones, cycling
    through ``batches``; CUDA work is synchronised before each clock read."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    while len(pairs) < p.warmup + p.steps:
        pairs.extend(batches)
    for x, y in pairs[: p.warmup]:
        step(dev.batch(x), y)
    if dev.cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for x, y in pairs[p.warmup : p.warmup + p.steps]:
        step(dev.batch(x), y)
    if dev.cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def report(name: str, p: Plan, seconds: float, batch: int, **extra: object) -> None:
    """Print the line of a step figure: ``p.steps`` steps of ``batch`` took ``seconds``."""
    rate = p.steps * batch / seconds
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"{name} {fields} batch={batch} images_per_s={rate:.0f} epoch_s={EPOCH_IMAGES / rate:.2f}", flush=True)


def ce_step(dev: Device, model: torch.nn.Module, settings: SGDSettings) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One cross-entropy SGD step of ``model`` per call, as the teacher cache trains."""
    optimizer = make_optimizer(model.parameters(), settings)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with dev.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_figures(p: Plan, data: Split) -> None:
    """The ResNet18 student's CE step: both stems, with and without bf16 + channels_last."""
    variants: tuple[tuple[Stem, bool], ...] = (("imagenet", False), ("imagenet", True), ("cifar", True))
    for stem, fast in variants:
        settings = SGDSettings(batch_size=p.batch, bf16=fast, channels_last=fast)
        dev = Device(p.device, settings)
        model = dev.model(resnet18(10, stem=stem)).train()
        seconds = timed_steps(p, dev, batches_of(data, p.batch), ce_step(dev, model, settings))
        report("train", p, seconds, p.batch, model=f"resnet18_{stem}_stem", bf16_channels_last=fast)


def loss_weights_figure(p: Plan, data: Split) -> None:
    """``LossWeightsTrainer.train_epoch``'s step at the seed's baseline weights."""
    s = LossWeightsSettings(batch_size=p.batch)
    dev = Device(p.device, s)
    student = dev.model(build_model("resnet18", 10, stem=s.stem)).train()
    heads = dev.model(SelfDistillationHeads.for_student(student, s.head_kernels)).train()
    # The teacher cache builds ResNet18 with the registry's default (CIFAR) stem.
    teacher = dev.model(build_model(s.teacher, 10)).eval()
    optimizer = make_optimizer(list(student.parameters()) + list(heads.parameters()), s)
    weights = {name: float(getattr(s, name)) for name in "abcdefghi"}

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with dev.autocast():
            out = student.forward_features(x)
            with torch.no_grad():
                t = teacher.forward_features(x)
            h = heads(out.stages)
        terms = combined_loss(weights, s, out, t, h, y)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()

    seconds = timed_steps(p, dev, batches_of(data, p.batch), step)
    report("loss_weights_step", p, seconds, p.batch, student="resnet18_imagenet_stem", teacher="resnet18_cifar_stem")


def topology_figure(p: Plan, data: Split) -> None:
    """The student-topology step: VGG16 student, VGG16 teacher, 0.9·CE + 0.1·T²·KL at T = 4."""
    s = SGDSettings(batch_size=p.batch)
    dev = Device(p.device, s)
    student = dev.model(build_model("vgg16", 10)).train()
    teacher = dev.model(build_model("vgg16", 10)).eval()
    optimizer = make_optimizer(student.parameters(), s)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with dev.autocast():
            logits = student(x)
            with torch.no_grad():
                teacher_logits = teacher(x)
        loss = label_kd_loss(logits.float(), teacher_logits.float(), y, alpha=0.9, temperature=4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    report("topology_step", p, timed_steps(p, dev, batches_of(data, p.batch), step), p.batch, student="vgg16", teacher="vgg16")


def graph_gates_figure(p: Plan) -> None:
    """``GraphGatesTrainer.train_epoch``'s step for graph_gates.toml's all-through baseline
    (ResNet32, ResNet110, WRN-28-2, every node trained): 1.61 GMAC per image forward and
    backward, against 1.28 for the average random graph of that file's header."""
    batch = 64 if not p.tiny else p.batch
    s = SGDSettings(batch_size=batch, nesterov=True)
    dev = Device(p.device, s)
    graph = baseline("all_through", "resnet32", ("resnet110", "wrn28_2"))
    nets = {k: dev.model(build_model(graph.model(k), 100)).train() for k in graph.trainable}
    optimizers = {k: make_optimizer(nets[k].parameters(), s) for k in graph.trainable}
    total_steps = p.warmup + p.steps

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with dev.autocast():
            logits = {k: net(x).float() for k, net in nets.items()}
        losses = [node_loss(graph, k, logits, y, step=0, total_steps=total_steps) for k in graph.trainable]
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        for optimizer in optimizers.values():
            optimizer.step()

    data = generated_data(p, torch.device(p.device), num_classes=100)
    models = "+".join(graph.models)
    report("graph_gates_step", p, timed_steps(p, dev, batches_of(data, batch), step), batch, graph="all_through", models=models)


def latency_figures(p: Plan, data: Split) -> None:
    """Student and teacher latency on the first ``p.latency_images`` of ``data``."""
    dev = Device(p.device, SGDSettings())
    timed = [dev.batch(data.x[i : min(i + 128, p.latency_images)]) for i in range(0, p.latency_images, 128)]
    for name, model in (("student_resnet18_imagenet_stem", resnet18(10, stem="imagenet")), ("teacher_vgg16", build_model("vgg16", 10))):
        seconds = measure_latency(dev.model(model), timed, dev, warmup=2, repeats=5)
        print(f"latency model={name} images={sum(len(x) for x in timed)} seconds={seconds:.4f}", flush=True)


# ---------------------------------------------------------------------------- packed sweeps


def write_generated_cifar10(root: Path, per_file: int, test_images: int) -> Path:
    """``root/cifar-10-batches-py/`` in torchvision's layout (5 training files of ``per_file``
    images, a test file, the meta file): uniform random pixels, labels cycling through the
    classes. Returns ``root``, the sweep's ``data.root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [(f"data_batch_{i}", per_file) for i in range(1, 6)] + [("test_batch", test_images)]
    for name, n in files:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": [int(v) for v in rng.permutation(np.arange(n) % 10)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class_{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@dataclasses.dataclass(frozen=True)
class SweepTiming:
    """What one packed sweep trained and how long it took (see the module docstring)."""

    images: int
    epochs: int
    wall_s: float
    train_window_s: float


def run_sweep(overrides: Sequence[str], out: Path, epoch_images: int) -> SweepTiming:
    """The packed sweep under ``overrides`` in the new run directory ``out``, driven here
    through its backend (Ray: the instance this process holds; SLURM: the cluster ``sinfo``
    answers for); its timing read back from the results store."""
    from kdsweep.orchestrator.backends import backend_spec, make_backend
    from kdsweep.orchestrator.config import load_sweep
    from kdsweep.orchestrator.driver import Driver
    from kdsweep.orchestrator.rundir import RunDir
    from kdsweep.orchestrator.store import Store

    cfg = load_sweep(PACKED_SWEEP, overrides)
    # As `kdsweep launch` does: the backend may refuse the sweep (ConfigError) before any
    # file is written, e.g. a GPU fraction on a SLURM partition without shards.
    backend_spec(cfg.backend.kind).preflight(cfg, out)
    run = RunDir.create(out, cfg)
    with run.acquire_driver_lock():
        started = time.perf_counter()
        Driver(cfg, run, make_backend(cfg)).run_sweep()
        wall = time.perf_counter() - started
    rows = Store(run.path).rows()
    failed = [r for r in rows if r["event"] not in ("report", "completed")]
    if failed:
        raise RuntimeError(f"packed sweep {out}: trial {failed[0]['trial_id']} ended {failed[0]['event']}: {failed[0]['error']}")
    reports = [r for r in rows if r["event"] == "report"]
    ends = [r for r in rows if r["event"] == "completed"]
    if len(ends) != PACKED_TRIALS:
        raise RuntimeError(f"packed sweep {out}: {len(ends)} trials completed, expected {PACKED_TRIALS}")
    firsts: dict[str, dict[str, Any]] = {}
    for r in reports:
        trial = str(r["trial_id"])
        if trial not in firsts or int(r["epoch"]) < int(firsts[trial]["epoch"]):
            firsts[trial] = r
    # A trial's training started wall_s seconds before its first report (the worker's clock
    # starts once the trainer is built).
    start = min(r["reported_at"].timestamp() - float(r["wall_s"]) for r in firsts.values())
    end = max(r["reported_at"].timestamp() for r in ends)
    epochs = sum(int(r["epoch"]) for r in ends)
    return SweepTiming(images=epochs * epoch_images, epochs=epochs, wall_s=wall, train_window_s=end - start)


def nvidia_smi(*query: str) -> list[str]:
    """``nvidia-smi --query-gpu=...`` for the GPU this process computes on (CUDA device 0:
    the first entry of ``CUDA_VISIBLE_DEVICES``, else 0), one output line per sample; []
    where there is no ``nvidia-smi`` or it fails (a driver that does not match its tools):
    the figures go on without it."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", f"--id={gpu_index()}", *query], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return done.stdout.splitlines()


def gpu_index() -> str:
    """nvidia-smi's id of CUDA device 0 in this process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


class GpuUtilisation:
    """The GPU's utilisation and memory while the ``with`` block runs, sampled every 0.5 s by
    ``nvidia-smi`` in its own loop (``-lms 500``); :meth:`fields` renders them, or
    ``gpu_util=n/a`` where there is no ``nvidia-smi``."""

    QUERY = ("--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500")

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuUtilisation:
        if shutil.which("nvidia-smi") is not None:
            self._proc = subprocess.Popen(["nvidia-smi", f"--id={gpu_index()}", *self.QUERY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
            self._reader.start()
        return self

    def _read(self, lines: Iterable[str]) -> None:
        for line in lines:
            sample = parse_utilisation(line)
            if sample is not None:
                self.samples.append(sample)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(timeout=30)

    def fields(self) -> str:
        if self._proc is None:
            return "gpu_util=n/a"
        if not self.samples:
            return "gpu_util=no_samples"
        util = [u for u, _ in self.samples]
        return (
            f"gpu_util_median_pct={statistics.median(util):.0f} gpu_util_max_pct={max(util):.0f} "
            f"gpu_mem_max_mib={max(m for _, m in self.samples):.0f} gpu_samples={len(self.samples)}"
        )


def parse_utilisation(line: str) -> tuple[float, float] | None:
    """(utilisation %, memory used MiB) from one line of ``nvidia-smi
    --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits`` (``"87, 40321"``);
    None for a line that is not one (``[N/A]`` on GPUs that do not report it)."""
    parts = [part.strip() for part in line.split(",")]
    try:
        return float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        return None


def slurm_gpu_nodes() -> tuple[list[str], str]:
    """The nodes ``sinfo`` here shows with a GPU gres, or [] and why there are none."""
    if shutil.which("sinfo") is None:
        return [], "no SLURM here (sinfo is not on PATH)"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%N|%G"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return [], f"sinfo failed ({e})".replace("\n", " ")
    nodes = sorted({name for name, _, gres in (line.partition("|") for line in out.splitlines()) if "gpu" in gres})
    return nodes, "" if nodes else "sinfo shows no node with a GPU gres"


@dataclasses.dataclass(frozen=True)
class Packing:
    """One sweep of the packed figures: how many GPUs each trial asks for, how many run at once."""

    gpus_per_trial: float
    max_concurrent: int

    def overrides(self) -> list[str]:
        return [f"backend.gpus_per_trial={self.gpus_per_trial}", f"backend.max_concurrent={self.max_concurrent}"]


PACKINGS = (Packing(1.0, 1), Packing(0.25, PACKED_TRIALS))


def packed_lines(backend: str, overrides: Sequence[str], work: Path, epoch_images: int) -> None:
    """The two packed sweeps through ``backend`` (one at a time, then four on one GPU), a
    line each; a sweep the backend refuses (ConfigError) prints a ``skipped`` line."""
    from kdsweep.orchestrator.config import ConfigError

    single: SweepTiming | None = None
    for packing in PACKINGS:
        head = f"packed backend={backend} trials={PACKED_TRIALS} gpus_per_trial={packing.gpus_per_trial} max_concurrent={packing.max_concurrent}"
        try:
            with GpuUtilisation() as gpu:
                t = run_sweep([*overrides, *packing.overrides()], work / f"{backend}-{packing.max_concurrent}", epoch_images)
        except ConfigError as e:
            print(f"{head} skipped: {' / '.join(str(i) for i in e.issues)}", flush=True)
            continue
        total = t.images / t.wall_s
        if single is None:
            single, ratio = t, ""
        else:
            ratio = f" vs_one_at_a_time={total / (single.images / single.wall_s):.2f}x"
        print(
            f"{head} epochs_trained={t.epochs} images={t.images} wall_s={t.wall_s:.1f} total_images_per_s={total:.0f} "
            f"train_window_s={t.train_window_s:.1f} train_images_per_s={t.images / t.train_window_s:.0f}{ratio} {gpu.fields()}",
            flush=True,
        )


def packed_figures(p: Plan, work: Path) -> None:
    """One at a time against four packed on the GPU, through kdsweep's Ray backend, then
    through its SLURM backend where ``sinfo`` shows a GPU gres."""
    import ray

    from kdsweep.orchestrator.config import load_sweep

    data_root = write_generated_cifar10(work / "data", p.sweep_images_per_file, p.sweep_test_images)
    common = [
        f"data.root={str(data_root)!r}", f"num_trials={PACKED_TRIALS}",
        f"asha.min_epochs={p.sweep_epochs}", f"asha.max_epochs={p.sweep_epochs}",
        "settings.teacher_epochs=1", f"settings.teacher_cache={str(work / 'cache')!r}",
        "backend.max_retries=0", "backend.cpus_per_trial=1", *p.sweep_overrides,
    ]  # fmt: skip
    # The teacher, trained before any sweep so that none pays for it; the same spec as the
    # trials' (load_teacher from the sweep's own settings and data).
    cfg = load_sweep(PACKED_SWEEP, common)
    dev = Device(p.device, cfg.settings)
    data = load_data(cfg.data, dev.torch)
    load_teacher(cfg.settings, cfg.data, dev, data)
    batch = min(cfg.settings.batch_size, len(data.train.y))
    epoch_images = len(data.train.y) // batch * batch
    del data
    if dev.cuda:
        torch.cuda.empty_cache()
    # One GPU, declared: on a GPU machine Ray hands it to the trials (CUDA_VISIBLE_DEVICES);
    # in tiny mode without CUDA it is a resource name only, and the trials compute on the CPU.
    # Four logical CPUs at least, one per packed trial, whatever the cores. Worker output
    # stays out of this script's one-line-per-figure stdout; failures come back as rows.
    cpus = max(PACKED_TRIALS, len(os.sched_getaffinity(0)))
    ray.init(address="local", num_cpus=cpus, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        packed_lines("ray", [*common, 'backend.kind="ray"'], work, epoch_images)
    finally:
        ray.shutdown()
    nodes, why_not = slurm_gpu_nodes()
    if not nodes:
        print(f"packed backend=slurm skipped: {why_not}", flush=True)
        return
    # Tiny trials fit in 1 GB: four packed ones then fit on one node of a small test cluster.
    memory = ["backend.mem_gb=1"] if p.tiny else []
    packed_lines("slurm", [*common, 'backend.kind="slurm"', *memory], work, epoch_images)


def check_checkout() -> None:
    """Exit unless ``kdsweep`` is this checkout: the sweep's Ray workers import the installed
    package, and a check of other code would be silently wrong."""
    loaded = Path(kdsweep.trainers.__file__).resolve().parent
    if loaded != ROOT / "trainers":
        sys.exit(
            f"gpu_check: kdsweep is imported from {loaded.parent}, not from this checkout {ROOT}; "
            f"install it into the Python that runs the check: {sys.executable} -m pip install -e {ROOT}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true",
        help="a few steps and a tiny sweep, also without CUDA: checks that the script works; its numbers mean nothing",
    )  # fmt: skip
    args = parser.parse_args()
    check_checkout()
    p = plan(args.tiny)
    if p.device != "cuda" and not p.tiny:
        print(
            f"gpu_check: no CUDA device is visible (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "this check measures the GPU path and needs one. Run it on a GPU machine, or pass --tiny to check "
            "that the script itself works (its numbers then mean nothing).",
            file=sys.stderr,
        )
        sys.exit(2)
    if p.tiny:
        # One thread, as the test suite trains: on a shared machine multi-threaded OMP spins
        # collapse throughput, and tiny mode measures nothing anyway.
        torch.set_num_threads(1)
        print("tiny mode: a few steps on tiny data to check that the script works; every number below is meaningless", flush=True)
    name = torch.cuda.get_device_name() if p.device == "cuda" else "cpu"
    driver = next(iter(nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")), "n/a").strip()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(
        f"device name={name.replace(' ', '_')} driver={driver} torch={torch.__version__} cuda={torch.version.cuda} "
        f"cudnn={cudnn} tiny={p.tiny}",
        flush=True,
    )
    data = generated_data(p, torch.device(p.device))
    train_figures(p, data)
    loss_weights_figure(p, data)
    topology_figure(p, data)
    graph_gates_figure(p)
    latency_figures(p, data)
    del data
    with tempfile.TemporaryDirectory(prefix="kdsweep-gpu-check-") as work:
        packed_figures(p, Path(work))


if __name__ == "__main__":
    main()
