"""Pieces every torch trainer shares: SGD settings and schedules, device handling (bf16
autocast and channels_last on CUDA), seeded model construction, evaluation.

The learning-rate schedule is a pure function of the optimisation step and spans the sweep's
full budget (``TrialContext.budget_epochs``), so a trial stopped by ASHA at epoch 3 trained
exactly like the first 3 epochs of one that ran to the end — the premise of comparing trials
at a rung.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdsweep.trainers.data import Batches, Split
from kdsweep.trainers.settings import SGDSettings

M = TypeVar("M", bound=nn.Module)


def lr_factor(s: SGDSettings, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimisation ``step`` of ``total_steps``."""
    progress = min(1.0, step / max(1, total_steps))
    if s.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return s.step_gamma ** sum(1 for at in s.step_at if progress >= at)


def make_optimizer(params: Iterable[nn.Parameter], s: SGDSettings) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.nesterov and s.momentum > 0)


class StepSchedule:
    """Sets the optimiser's learning rate from the step count; its state is just the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, s: SGDSettings, total_steps: int) -> None:
        self.optimizer, self.settings, self.total_steps = optimizer, s, total_steps
        self.step_count = 0
        self._apply()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        factor = lr_factor(self.settings, self.step_count, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr * factor

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


class Device:
    """Where a trainer computes, and the CUDA speed-ups that apply there."""

    def __init__(self, name: str, s: SGDSettings) -> None:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested (backend.gpus_per_trial > 0) but CUDA is not available on this host")
        self.torch = torch.device(name)
        self.cuda = self.torch.type == "cuda"
        self.bf16 = self.cuda and s.bf16
        self.channels_last = self.cuda and s.channels_last

    def model(self, module: M) -> M:
        module = module.to(self.torch)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def batch(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def seeded(seed: int, build: Callable[[], M]) -> M:
    """Build a module with its initialisation drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A classifier on one split: top-1 accuracy, mean cross-entropy, and ``correct``, which
    examples it got right (a CPU bool array in the split's order; ``acc`` is its mean). The
    per-example record is what paired tests between trials need (the worker stores it packed
    in ``val_correct``)."""

    acc: float
    loss: float
    correct: npt.NDArray[np.bool_]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, split: Split, device: Device, batch_size: int = 512) -> Evaluation:
    """``model`` on ``split`` (eval mode, restored after); see :class:`Evaluation`."""
    was_training = model.training
    model.eval()
    hits: list[Tensor] = []
    loss_sum = 0.0
    for x, y in _plain_batches(split, batch_size):
        with device.autocast():
            logits = model(device.batch(x)).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        hits.append((logits.argmax(dim=1) == y).cpu())
    model.train(was_training)
    correct = torch.cat(hits).numpy() if hits else np.zeros(0, dtype=bool)
    n = max(1, len(split.y))
    return Evaluation(acc=int(correct.sum()) / n, loss=loss_sum / n, correct=correct)


def _plain_batches(split: Split, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(split.y), batch_size):
        yield split.x[start : start + batch_size], split.y[start : start + batch_size]


def train_batches(split: Split, s: SGDSettings, generator: torch.Generator, *, augment: bool, flip: bool) -> Batches:
    """Shuffled, augmented training batches. ``drop_last`` keeps every batch full (relational
    losses need at least two samples, and a tiny last batch is noise)."""
    batch_size = min(s.batch_size, len(split.y))
    return Batches(split, batch_size, shuffle=True, augment=augment, flip=flip, generator=generator, drop_last=True)
