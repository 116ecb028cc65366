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
    #: Epochs of the full schedule (the sweep's ``asha.max_epochs``, or ``--epochs`` of
    #: ``kdsweep retrain``): learning-rate schedules span it, whether or not ASHA stops the
    #: trial earlier.
    budget_epochs: int
    #: The validated ``[objective]`` table (the trainer's ``Objective`` dataclass), or None.
    objective: Any = None
    #: "search" for trials of the sweep, "final" for ``kdsweep retrain``'s full-budget runs.
    stage: str = "search"


@dataclasses.dataclass(frozen=True)
class GeneratedSpace:
    """What a trainer's ``generate_space`` derives from the scalar options of ``[space]``.

    ``params`` maps each parameter name to its table exactly as a sweep file would write it
    (``{"type": "choice", "values": [...]}``); ``points`` are fixed trials (baselines) run
    before the searched ones, each a value for every parameter.
    """

    params: Mapping[str, Mapping[str, Any]]
    points: Sequence[Mapping[str, Any]] = ()


@runtime_checkable
class Trainer(Protocol):
    """One trial's training loop, driven from outside one epoch at a time.

    Optional hooks, looked up with ``getattr`` on the class (a trainer defines only those
    it needs):

    - ``Objective: type`` — dataclass of a top-level ``[objective]`` table (``--set
      objective.r_t=10``); the validated instance reaches the trainer as ``ctx.objective``.
    - ``SpaceOptions: type`` and ``generate_space(options, settings) -> GeneratedSpace`` —
      the scalar keys of ``[space]`` (e.g. ``nodes = 3``) parsed into that dataclass, from
      which the trainer generates its parameters; table entries of ``[space]`` are still
      explicit parameters.
    - ``validate(settings, data, space, objective) -> list[(field, value, allowed)]`` —
      cross-field checks run when the sweep file is loaded, before anything is written.
    - ``check_params(params, settings) -> str | None`` — pure and cheap: why a proposed
      configuration cannot be trained (e.g. an all-zero filter list), or None. The driver
      records such a proposal as ``rejected`` (not a failure, not counted in ``num_trials``)
      and a fixed point that fails it is a config error.
    """

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

    def test(self) -> dict[str, float]:
        """Evaluate on the held-out test split (``kdsweep retrain`` calls it once, after the
        last epoch). Every key starts with ``test_`` and is among ``metric_names``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (loadable with ``torch.load(weights_only=True)``)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


#: Trainer name -> "module:Class", resolved lazily.
TRAINERS: dict[str, str] = {
    "synthetic": "kdsweep.trainers.synthetic:SyntheticTrainer",
    "loss_weights": "kdsweep.trainers.loss_weights:LossWeightsTrainer",
    "student_topology": "kdsweep.trainers.student_topology:StudentTopologyTrainer",
    "graph_gates": "kdsweep.trainers.graph_gates:GraphGatesTrainer",
}

#: Trainer name -> module with the trainer's own report section (``kdsweep report``). The
#: module must not import torch (reports run anywhere the results are) and defines
#: ``render(summary, console)``, ``to_dict(summary) -> dict`` for ``--format json``, and
#: optionally ``plot(summary, path)`` for ``--plot FILE.png``.
REPORT_SECTIONS: dict[str, str] = {
    "student_topology": "kdsweep.trainers.topology_report",
    "graph_gates": "kdsweep.trainers.graph_report",
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
