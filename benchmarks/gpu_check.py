"""The GPU path measured: what the seed-faithful sweep files' time estimates rest on.

Prints one line per figure, ``name key=value ...``:

- ``train``: epoch seconds and images/s of the ResNet18 student (CE step: forward, backward,
  SGD, on device-resident generated CIFAR-sized data with the trainers' batched crop + flip),
  ImageNet stem (the seeds') with and without bf16 autocast + channels_last, and the CIFAR
  stem with them, for comparison;
- ``loss_weights_step``: the loss-weights trainer's step (ResNet18 student + BYOT heads, a
  frozen ResNet18 teacher, ``combined_loss``), its epoch time is what a trial costs;
- ``topology_step``: the student-topology step with the largest seed-space VGG form there is
  in practice, VGG16 itself, distilled from a VGG16 teacher (``label_kd_loss``);
- ``packed``: total images/s of 1 and of 4 processes training the ResNet18 student at once on
  the one device (what ``backend.gpus_per_trial = 0.25`` does);
- ``latency``: student (ResNet18, ImageNet stem) and teacher (VGG16) latency as the
  student-topology trainer measures it (``measure_latency``: the first 1024 images in batches
  of 128, 2 warm-up passes, median of 5).

Epoch figures are projected for CIFAR-10's 45 000 training images (val_fraction 0.1) at batch
128 from the measured step rate, after warm-up steps; on CUDA the clock reads after a
synchronize. Tiny mode (``GPU_CHECK_TINY=1``, or automatically without CUDA): few steps,
small batches and data, so that the script itself is tested on a CPU; its numbers mean nothing.

Run it through ``benchmarks/gpu_check.sh``, which makes ``kdsweep.trainers`` importable from
the source tree without installing (no ray, hyperopt or submitit needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdsweep.trainers.data import Batches, Split
from kdsweep.trainers.loss_weights import LossWeightsSettings, combined_loss
from kdsweep.trainers.losses import label_kd_loss
from kdsweep.trainers.models import SelfDistillationHeads, build_model, resnet18
from kdsweep.trainers.student_topology import measure_latency
from kdsweep.trainers.training import Device, SGDSettings, make_optimizer

#: CIFAR-10's training images with the sweeps' val_fraction 0.1.
EPOCH_IMAGES = 45_000


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run: full on CUDA, tiny elsewhere (or with GPU_CHECK_TINY=1)."""

    device: str
    images: int
    batch: int
    warmup: int
    steps: int
    packed_steps: int
    latency_images: int


def plan() -> Plan:
    cuda = torch.cuda.is_available()
    if os.environ.get("GPU_CHECK_TINY") == "1" or not cuda:
        return Plan("cuda" if cuda else "cpu", images=256, batch=16, warmup=1, steps=2, packed_steps=2, latency_images=32)
    return Plan("cuda", images=EPOCH_IMAGES, batch=128, warmup=40, steps=200, packed_steps=300, latency_images=1024)


def generated_data(p: Plan, device: torch.device) -> Split:
    """Uniform random CIFAR-sized images and labels, seeded, on the device (as ``load_data``
    keeps the real ones); the convolutions cost the same whatever the pixels."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(p.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (p.images,), generator=g)
    return Split(x.to(device), y.to(device))


def timed_steps(p: Plan, dev: Device, batches: Batches, step: Callable[[torch.Tensor, torch.Tensor], None], steps: int) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``p.warmup`` untimed ones, cycling
    through ``batches``; CUDA work is synchronised before each clock read."""

    def draw() -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        while len(out) < p.warmup + steps:
            out.extend(batches)
        return out

    pairs = draw()
    for x, y in pairs[: p.warmup]:
        step(dev.batch(x), y)
    if dev.cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for x, y in pairs[p.warmup :]:
        step(dev.batch(x), y)
    if dev.cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def ce_step(dev: Device, model: torch.nn.Module, settings: SGDSettings) -> Callable[[torch.Tensor, torch.Tensor], None]:
    optimizer = make_optimizer(model.parameters(), settings)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with dev.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def report(name: str, p: Plan, seconds: float, steps: int, **extra: object) -> None:
    rate = steps * p.batch / seconds
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"{name} {fields} images_per_s={rate:.0f} epoch_s={EPOCH_IMAGES / rate:.2f}", flush=True)


def train_figures(p: Plan, data: Split) -> None:
    for stem, fast in (("imagenet", False), ("imagenet", True), ("cifar", True)):
        settings = SGDSettings(batch_size=p.batch, bf16=fast, channels_last=fast)
        dev = Device(p.device, settings)
        model = dev.model(resnet18(10, stem=stem)).train()
        batches = Batches(data, p.batch, shuffle=True, augment=True, flip=True, generator=torch.Generator(device=data.x.device).manual_seed(0), drop_last=True)
        seconds = timed_steps(p, dev, batches, ce_step(dev, model, settings), p.steps)
        report("train", p, seconds, p.steps, model=f"resnet18_{stem}_stem", bf16_channels_last=fast)


def loss_weights_figure(p: Plan, data: Split) -> None:
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

    batches = Batches(data, p.batch, shuffle=True, augment=True, flip=True, generator=torch.Generator(device=data.x.device).manual_seed(0), drop_last=True)
    report("loss_weights_step", p, timed_steps(p, dev, batches, step, p.steps), p.steps, student="resnet18_imagenet_stem", teacher="resnet18_cifar_stem")


def topology_figure(p: Plan, data: Split) -> None:
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

    batches = Batches(data, p.batch, shuffle=True, augment=True, flip=True, generator=torch.Generator(device=data.x.device).manual_seed(0), drop_last=True)
    report("topology_step", p, timed_steps(p, dev, batches, step, p.steps), p.steps, student="vgg16", teacher="vgg16")


def latency_figures(p: Plan, data: Split) -> None:
    dev = Device(p.device, SGDSettings())
    timed = [dev.batch(data.x[i : min(i + 128, p.latency_images)]) for i in range(0, p.latency_images, 128)]
    for name, model in (("student_resnet18_imagenet_stem", resnet18(10, stem="imagenet")), ("teacher_vgg16", build_model("vgg16", 10))):
        seconds = measure_latency(dev.model(model), timed, dev, warmup=2, repeats=5)
        print(f"latency model={name} images={sum(len(x) for x in timed)} seconds={seconds:.4f}", flush=True)


def worker(p: Plan, steps: int) -> float:
    """One packed process: the ResNet18 student's CE step (bf16 + channels_last on CUDA) for
    ``steps`` steps; returns its images/s."""
    data = generated_data(p, torch.device(p.device))
    settings = SGDSettings(batch_size=p.batch)
    dev = Device(p.device, settings)
    model = dev.model(resnet18(10, stem="imagenet")).train()
    batches = Batches(data, p.batch, shuffle=True, augment=True, flip=True, generator=torch.Generator(device=data.x.device).manual_seed(0), drop_last=True)
    return steps * p.batch / timed_steps(p, dev, batches, ce_step(dev, model, settings), steps)


def packed_figures(p: Plan) -> None:
    """Total images/s of 1 and of 4 concurrent worker processes on the one device. Each
    process times its own steps after its own warm-up; the total is the sum of their rates,
    which holds while their timed windows overlap (they start together and run equally long)."""
    for n in (1, 4):
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(p.packed_steps)], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        rates = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"packed worker exited with {proc.returncode}")
            rates.append(float(out.strip().splitlines()[-1]))
        print(f"packed processes={n} total_images_per_s={sum(rates):.0f} per_process={'/'.join(f'{r:.0f}' for r in rates)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, metavar="STEPS", help="internal: run one packed process")
    args = parser.parse_args()
    p = plan()
    if args.worker is not None:
        print(worker(p, args.worker), flush=True)
        return
    name = torch.cuda.get_device_name() if p.device == "cuda" else "cpu"
    print(f"device name={name.replace(' ', '_')} torch={torch.__version__} tiny={p.images != EPOCH_IMAGES}", flush=True)
    data = generated_data(p, torch.device(p.device))
    train_figures(p, data)
    loss_weights_figure(p, data)
    topology_figure(p, data)
    latency_figures(p, data)
    del data
    packed_figures(p)


if __name__ == "__main__":
    main()
