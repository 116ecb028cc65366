"""The teacher cache: a teacher is trained once per (data, architecture, width, epochs, seed)
and reused by every trial of every sweep that asks for it.

Files live under ``$KDSWEEP_CACHE/teachers`` (default ``~/.cache/kdsweep/teachers``; on a
cluster point it at a shared file system). The first trial to need a missing teacher takes an
exclusive ``flock`` on ``<name>.lock`` and trains it; trials asking at the same time block on
the lock, then find the finished file — the teacher is trained once. The file is written to a
temporary name and renamed, so a crash mid-training leaves no half teacher, and it is loaded
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kdsweep.orchestrator.atomic import open_lock
from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.trainers.data import DataSettings, ImageData, load_data, uses_flip
from kdsweep.trainers.models import StagedClassifier, build_model
from kdsweep.trainers.settings import SGDSettings, TeacherSettings
from kdsweep.trainers.training import Device, StepSchedule, evaluate_classifier, make_optimizer, seeded, train_batches


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """Everything that determines a teacher's weights (and so its cache entry)."""

    data: DataSettings
    arch: str
    width: float = 1.0
    epochs: int = 30
    seed: int = 0
    sgd: SGDSettings = SGDSettings()

    @property
    def name(self) -> str:
        """Cache file stem: readable fields plus a hash of everything that shapes the weights.
        Where the dataset copy lives (``data.root``) does not, so it is left out of the hash."""
        fields = dataclasses.asdict(self)
        fields["data"].pop("root")
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.data.dataset}-{self.arch}-w{self.width:g}-e{self.epochs}-s{self.seed}-{digest}"


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A trained, frozen teacher in eval mode, and what is known about it."""

    model: StagedClassifier
    info: dict[str, Any]


def cache_root(explicit: str | None = None) -> Path:
    """Where teachers live: ``explicit``, else ``$KDSWEEP_CACHE``, else ``~/.cache/kdsweep``."""
    base = explicit or os.environ.get("KDSWEEP_CACHE") or str(Path.home() / ".cache" / "kdsweep")
    return Path(base) / "teachers"


def get_teacher(spec: TeacherSpec, device: Device, cache: Path | None = None, data: ImageData | None = None) -> Teacher:
    """The teacher of ``spec``, trained now if no trial trained it before (once, under a lock)."""
    root = cache if cache is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{spec.name}.pt"
    if not path.exists():
        with os.fdopen(open_lock(root / f"{spec.name}.lock")) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():  # another process may have finished it while we waited
                data = data if data is not None else load_data(spec.data, device.torch)
                save_checkpoint(path, _train(spec, data, device))
    state = load_checkpoint(path)
    if state is None:
        raise FileNotFoundError(f"teacher file {path} vanished after training")
    info = dict(state["info"])
    model = build_model(spec.arch, int(info["num_classes"]), spec.width)
    model.load_state_dict(state["model"])
    model = device.model(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info["path"] = str(path)
    return Teacher(model, info)


def _train(spec: TeacherSpec, data: ImageData, device: Device) -> dict[str, Any]:
    """Train a teacher with cross-entropy on the training split; return its cache entry."""
    started = time.perf_counter()
    s = spec.sgd
    model = device.model(seeded(spec.seed, lambda: build_model(spec.arch, data.num_classes, spec.width)))
    generator = torch.Generator(device=data.train.x.device).manual_seed(spec.seed)
    batches = train_batches(data.train, s, generator, augment=spec.data.augment, flip=uses_flip(spec.data))
    optimizer = make_optimizer(model.parameters(), s)
    schedule = StepSchedule(optimizer, s, spec.epochs * len(batches))
    model.train()
    for _ in range(spec.epochs):
        for x, y in batches:
            with device.autocast():
                loss = F.cross_entropy(model(device.batch(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    val = evaluate_classifier(model, data.val, device)
    test = evaluate_classifier(model, data.test, device)
    info = {
        "name": spec.name,
        "arch": spec.arch,
        "width": spec.width,
        "epochs": spec.epochs,
        "seed": spec.seed,
        "dataset": spec.data.dataset,
        "num_classes": data.num_classes,
        "val_acc": val.acc,
        "test_acc": test.acc,
        "train_s": time.perf_counter() - started,
        "trained_by": f"{socket.gethostname()}:{os.getpid()}",
    }
    cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"model": cpu_state, "info": info}


def teacher_spec(settings: TeacherSettings, data_settings: DataSettings) -> TeacherSpec:
    """The teacher ``settings`` name, on the sweep's data."""
    return TeacherSpec(data=data_settings, arch=settings.teacher, width=settings.teacher_width, epochs=settings.teacher_epochs, seed=settings.teacher_seed)


def load_teacher(settings: TeacherSettings, data_settings: DataSettings, device: Device, data: ImageData) -> Teacher:
    """The teacher ``settings`` name, trained into the cache first if no one has."""
    return get_teacher(teacher_spec(settings, data_settings), device, cache_root(settings.teacher_cache), data)


def prepare_teacher(settings: Any, data_settings: DataSettings, device: str) -> list[dict[str, Any]]:
    """The ``teachers`` hook (``TrainerSpec.prepare_teachers``) of the trainers that distil
    from the one teacher their ``[settings]`` name (``TeacherSettings``; their settings
    inherit ``SGDSettings`` too, whose CUDA options the trials train it with): that
    teacher's cache entry info, trained first if no one has (the data is loaded only then)."""
    return [get_teacher(teacher_spec(settings, data_settings), Device(device, settings), cache_root(settings.teacher_cache)).info]
