"""Training throughput of the loss-weights trainer: device-resident data against a DataLoader.

What is measured
    Images per second of ``LossWeightsTrainer``'s training step (student + BYOT heads forward,
    frozen teacher forward, CE + KD + RKD + SKD loss, backward, SGD step, learning-rate
    schedule step, the per-step loss read-back) on CIFAR-10 at 32×32, batch 128, fed from

    (A) device-resident: ``load_data`` puts the training split on the device once and
        ``Batches`` cuts, randomly crops and flips each batch there with a few batched
        kernels (the trainer's own ``batches``);
    (B) torchvision DataLoader: ``cifar_dataloader``, the same split and normalisation with
        per-sample PIL ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` + ``ToTensor``
        + ``Normalize`` in ``--num-workers`` worker processes (pinned memory on CUDA), each
        batch copied to the device with ``non_blocking=True``.

    The model, loss and optimiser work is identical: both paths drive the very same trainer
    object, and the step is ``LossWeightsTrainer.train_epoch`` itself (its batch iterable is
    swapped for N batches of the path under test), so nothing of the step is re-implemented
    here. Alongside, each data path is timed alone: N batches drawn and moved to the device,
    no model, which shows how much of (B)'s deficit is the pipeline itself. The epoch time is
    projected for CIFAR-10's 45000 training images (val_fraction 0.1) from the step rate; it
    leaves out the start of each epoch's iterator and the evaluation.

    On CUDA the trainer's defaults are bf16 autocast + channels_last (``Device``); a second
    trainer with both off is measured too, as extra rows.

How
    The student (ResNet18 × ``--width``), its heads, the teacher (ResNet18 ×
    ``--teacher-width``) and the optimiser are built once per precision setting, by
    constructing a ``LossWeightsTrainer``. The teacher goes through the real teacher cache (a
    temporary directory) with ``teacher_epochs = 0``: its weights are the seeded
    initialisation, which costs the same to run as trained ones. Every measurement draws
    ``--warmup`` batches from a fresh iterator untimed (the data-only timings 2 per DataLoader
    worker more: a fresh iterator starts with that many batches queued, which a consumer
    without a model would get for free), then times ``--steps`` batches; on CUDA the clock is
    read after ``torch.cuda.synchronize()``. The measurements are interleaved: each of
    ``--repeats`` rounds times every path and setting once, so a burst of load on a shared
    machine hits them alike, and the table shows the median round.

    Without ``--data-root`` a fake CIFAR-10 (uniform random pixels, 5 × 2000 training and
    2000 test images, so a 9000-image training split) is written to a temporary directory with
    the tests' writer (``tests/trainers/fake_cifar.py``); pixel values do not change the cost
    of any stage measured here.

How to run (repository root, venv active)
    python benchmarks/train_throughput.py                        # CPU, a few minutes
    python benchmarks/train_throughput.py --device cuda          # bf16/channels_last on and off
    python benchmarks/train_throughput.py --device cuda --data-root ~/data --num-workers 8

Measured here (2026-11-22, 2 cores of an AMD EPYC, shared and heavily loaded by other jobs:
load average 6-13; torch 2.14.1, CPU; fake CIFAR-10; defaults: ``--threads 1 --num-workers
2``, student ResNet18 × 0.25, teacher ResNet18 × 0.5, batch 128, 8 timed steps after 2
warm-up, median of 3 rounds)::

    path                                images/s   epoch(45k) s   data-only images/s
    device-resident                           47          951.3                27403
    torchvision DataLoader                    53          850.1                 1651
    ratio                                  0.89x          0.89x               16.60x

    per round, images/s training (A, B) / data only (A, B):
    54, 47 / 22356, 1638;  44, 58 / 27403, 2989;  47, 53 / 40173, 1651

    An earlier run of the same configuration (then with a 1-epoch learning-rate schedule,
    which changes no cost) gave 52 vs 38 images/s, ratio 1.39x, data only 16x.

On this CPU the step is compute-bound: about 2.5 s per batch, while the DataLoader's two
workers (other processes) deliver a batch every 0.08 s, a few percent of that, so the two paths
train at the same rate to within the machine's noise (0.89x and 1.39x in two runs), while the
data path alone is 15-17x faster device-resident. Whether that difference shows in training
is a question for a GPU, where the step is far shorter: run ``--device cuda`` there.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.data import DataSettings, cifar_dataloader
from kdsweep.trainers.loss_weights import LossWeightsSettings, LossWeightsTrainer

#: CIFAR-10's training split at the default val_fraction 0.1: what one epoch is projected for.
EPOCH_IMAGES = 45_000
#: Images per fake training batch file (5 files): a 9000-image training split.
FAKE_PER_BATCH = 2000
SEED = 0
REPO = Path(__file__).resolve().parent.parent

Batch = tuple[Tensor, Tensor]


def write_fake_cifar10(root: Path) -> Path:
    """The tests' fake CIFAR-10 writer, imported by path (``tests`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location("fake_cifar", REPO / "tests" / "trainers" / "fake_cifar.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import {REPO / 'tests/trainers/fake_cifar.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written: Path = module.write_fake_cifar10(root, n_per_batch=FAKE_PER_BATCH, seed=SEED)
    return written


def on_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """Batches of ``batches``, epoch after epoch, on ``device`` (no copy when already there)."""
    while True:
        for x, y in batches:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@dataclasses.dataclass
class Feed:
    """The next ``steps`` batches of ``stream``, counting the images handed out."""

    stream: Iterator[Batch]
    steps: int
    images: int = 0

    def __iter__(self) -> Iterator[Batch]:
        for x, y in itertools.islice(self.stream, self.steps):
            self.images += len(y)
            yield x, y


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(trainer: LossWeightsTrainer, stream: Iterator[Batch], warmup: int, steps: int) -> float:
    """Images/s of ``steps`` training steps on batches of ``stream``, after ``warmup`` untimed ones."""
    device = trainer.device.torch
    trainer.batches = Feed(stream, warmup)
    trainer.train_epoch(0)
    feed = Feed(stream, steps)
    trainer.batches = feed
    synchronize(device)
    start = time.perf_counter()
    metrics = trainer.train_epoch(0)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not math.isfinite(metrics["train_loss"]):
        raise FloatingPointError(f"training diverged (train_loss {metrics['train_loss']}): timings would be meaningless")
    return feed.images / elapsed


def data_rate(stream: Iterator[Batch], device: torch.device, warmup: int, steps: int) -> float:
    """Images/s of drawing ``steps`` batches of ``stream`` onto the device, no model, after
    ``warmup`` untimed ones."""
    for _ in Feed(stream, warmup):
        pass
    feed = Feed(stream, steps)
    synchronize(device)
    start = time.perf_counter()
    for _ in feed:
        pass
    synchronize(device)
    return feed.images / (time.perf_counter() - start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="directory holding torchvision's cifar-10-batches-py/ (default: a fake copy in a temp dir)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, help="timed training steps per measurement (default: 100 on CUDA, 8 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps before each measurement (default: 10 on CUDA, 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, help="student ResNet18 width multiplier (default: 1.0 on CUDA, 0.25 on CPU)")
    p.add_argument("--teacher-width", type=float, help="teacher ResNet18 width multiplier (default: 1.0 on CUDA, 0.5 on CPU)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported (default: 3)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: 1 on CPU, torch's own on CUDA)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    defaults = {"steps": (100, 8), "warmup": (10, 2), "width": (1.0, 0.25), "teacher_width": (1.0, 0.5), "threads": (None, 1)}
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--steps and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="kdsweep-throughput-") as tmp:
        root = args.data_root or str(write_fake_cifar10(Path(tmp) / "cifar"))
        data = DataSettings(dataset="cifar10", root=root)
        settings = LossWeightsSettings(
            student_width=args.width,
            teacher_width=args.teacher_width,
            teacher_epochs=0,
            teacher_cache=str(Path(tmp) / "teachers"),
            batch_size=args.batch_size,
        )
        # A 200-epoch schedule keeps the learning rate near its peak over the few steps run.
        ctx = TrialContext(
            trial_id="throughput", seed=SEED, attempt=0, run_dir=Path(tmp), cache_dir=Path(tmp),
            device=args.device, data=data, budget_epochs=200,
        )  # fmt: skip
        # Precision settings to compare: on CPU Device ignores bf16/channels_last, so one suffices.
        precisions = {"": settings}
        if device.type == "cuda":
            precisions = {" bf16+CL": settings, " fp32": dataclasses.replace(settings, bf16=False, channels_last=False)}
        trainers = {label: LossWeightsTrainer({}, s, ctx) for label, s in precisions.items()}
        resident = next(iter(trainers.values())).batches
        loader = cifar_dataloader(data, "train", batch_size=args.batch_size, num_workers=args.num_workers, seed=SEED)
        paths: dict[str, Iterable[Batch]] = {"device-resident": resident, "torchvision DataLoader": loader}

        print(
            f"device {args.device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
            f"torch {torch.__version__}, threads {torch.get_num_threads()}, DataLoader workers {args.num_workers}\n"
            f"data {'fake CIFAR-10' if args.data_root is None else args.data_root}: {len(resident.split)} training images; "
            f"student resnet18 x{args.width:g}, teacher resnet18 x{args.teacher_width:g}, batch {args.batch_size}, "
            f"{args.steps} timed steps after {args.warmup} warm-up, {args.repeats} rounds"
        )
        # A fresh DataLoader iterator starts with 2 batches per worker queued (prefetch_factor):
        # drawn without a model in between, they would come for free, so they go untimed.
        data_warmup = args.warmup + 2 * args.num_workers
        train: dict[tuple[str, str], list[float]] = {(p, q): [] for p in paths for q in trainers}
        alone: dict[str, list[float]] = {p: [] for p in paths}
        for round_ in range(1, args.repeats + 1):
            for path, batches in paths.items():
                for label, trainer in trainers.items():
                    train[path, label].append(train_rate(trainer, on_device(batches, device), args.warmup, args.steps))
                alone[path].append(data_rate(on_device(batches, device), device, data_warmup, args.steps))
            print(
                f"round {round_}: "
                + ", ".join(f"{p}{q} {v[-1]:.0f}" for (p, q), v in train.items())
                + "; data only: "
                + ", ".join(f"{p} {v[-1]:.0f}" for p, v in alone.items())
                + " images/s",
                flush=True,
            )

    print(f"\n{'path':<34}{'images/s':>10}{'epoch(45k) s':>15}{'data-only images/s':>21}")
    a, b = paths
    for label in trainers:
        rate = {p: statistics.median(train[p, label]) for p in paths}
        data_only = {p: statistics.median(alone[p]) for p in paths}
        for p in paths:
            print(f"{p + label:<34}{rate[p]:>10.0f}{EPOCH_IMAGES / rate[p]:>15.1f}{data_only[p]:>21.0f}")
        speedup = rate[a] / rate[b]
        print(f"{'ratio' + label:<34}{speedup:>9.2f}x{speedup:>14.2f}x{data_only[a] / data_only[b]:>20.2f}x")
    print(f"\nratio: {a} / {b} speed (the epoch-time ratio is its inverse: {b} epoch / {a} epoch)")


if __name__ == "__main__":
    main()
