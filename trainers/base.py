"""The trainer contract and the registry that maps a sweep file's ``trainer`` to a class.

A trainer owns one search dimension and knows nothing about ASHA, stores or backends: the
worker drives it epoch by epoch, asks it to evaluate at report points, and checkpoints it
through ``state_dict``/``load_state_dict``. Trainer modules are imported lazily so that a
sweep of the synthetic trainer never pays for importing torch-heavy modules it does not use.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What a trainer may know about the trial it trains.

    ``seed`` is the trial's own seed (derived from the sweep seed and the trial id), to be
    passed explicitly to every RNG the trainer creates. ``cache_dir`` is shared by all trials
    of a sweep (teacher checkpoints live there). ``data`` is the trainer's validated ``[data]``
    table (an instance of its ``Data`` dataclass), or None for trainers that read no dataset.
    A trainer never learns whether it will be stopped: that is ASHA's business.
    """

    trial_id: str
    seed: int
    attempt: int
    run_dir: Path
    cache_dir: Path
    device: str
    data: Any
    #: Epochs of the full schedule (the sweep's ``asha.max_epochs``): learning-rate schedules
    #: span it, whether or not ASHA stops the trial earlier.
    budget_epochs: int


@runtime_checkable
class Trainer(Protocol):
    """One trial's training loop, driven from outside one epoch at a time."""

    #: Dataclass type of the sweep file's ``[settings]`` table for this trainer.
    Settings: ClassVar[type]
    #: Dataclass type of the sweep file's ``[data]`` table, or None if the trainer reads no data.
    Data: ClassVar[type | None]

    def __init__(self, params: Mapping[str, Any], settings: Any, ctx: TrialContext) -> None: ...

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        """Every metric name ``train_epoch`` or ``evaluate`` may return (fixes the schema)."""
        ...

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (``epoch`` counts from 1) and return training metrics."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Evaluate on the validation split; the result includes the sweep metric."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (loadable with ``torch.load(weights_only=True)``)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


#: Trainer name -> "module:Class", resolved lazily.
TRAINERS: dict[str, str] = {
    "synthetic": "kdsweep.trainers.synthetic:SyntheticTrainer",
    "loss_weights": "kdsweep.trainers.loss_weights:LossWeightsTrainer",
}


def trainer_class(name: str) -> type[Trainer]:
    """The trainer class registered under ``name``; ``KeyError`` lists the valid names."""
    try:
        target = TRAINERS[name]
    except KeyError:
        raise KeyError(f"unknown trainer {name!r}; valid: {', '.join(sorted(TRAINERS))}") from None
    module_name, _, class_name = target.partition(":")
    cls: type[Trainer] = getattr(importlib.import_module(module_name), class_name)
    return cls
