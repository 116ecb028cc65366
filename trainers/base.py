"""The trainer contract and the registry that maps a sweep file's ``trainer`` to it.

A trainer is two parts:

* a :class:`TrainerSpec` subclass — torch-free: the dataclasses of its sweep-file tables,
  its metric names, validation, proposal checks, generated space, report section, and the
  name of its training class. The config loader, ``kdsweep status``, ``report`` and the
  driver use only this, so reading a run of any trainer never imports torch;
* its :class:`Training` — one trial's training loop, imported only by workers
  (:meth:`TrainerSpec.build`). It knows nothing about ASHA, stores or backends: the worker
  drives it epoch by epoch, asks it to evaluate at report points, and checkpoints it through
  ``state_dict``/``load_state_dict``.

Trainers register through the entry-point group ``kdsweep.trainers`` (name = the sweep
file's ``trainer``, value = ``"module:SpecClass"``); the four built-in ones are registered
the same way in kdsweep's own ``pyproject.toml``, so a trainer in another installed package
works without editing kdsweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from kdsweep.orchestrator.plugins import Issue, Registry, import_target


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


class StopTrial(Exception):
    """Raised by a trainer's ``train_epoch`` or ``evaluate`` to end its own trial early: the
    worker records the trial as ``stopped`` at its last reported epoch, with ``str(exc)``
    as the reason in the ``error`` column, and nothing is retried. (``kdsweep simulate
    --replay`` raises it where a recorded learning curve ends.)"""


@dataclasses.dataclass(frozen=True)
class GeneratedSpace:
    """What a trainer's ``generate_space`` derives from the scalar options of ``[space]``.

    ``params`` maps each parameter name to its table exactly as a sweep file would write it
    (``{"type": "choice", "values": [...]}``); ``points`` are fixed trials (baselines) run
    before the searched ones, each a value for every parameter.
    """

    params: Mapping[str, Mapping[str, Any]]
    points: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass(frozen=True)
class Screening:
    """Why a trial is not worth training, judged before its first epoch from what it measured
    of itself (its latency, its size), and those measurements as metrics for the row."""

    reason: str
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)


class Training:
    """What the worker drives: one trial's training loop, one epoch at a time, built by
    :meth:`TrainerSpec.build` as ``TrainingClass(params, settings, ctx)``. Subclasses define
    the four abstract methods; the rest have defaults.
    """

    #: After each ``evaluate``: which validation examples the evaluated model classified
    #: correctly (a 1-D boolean array in the split's fixed order, anything ``numpy.asarray``
    #: takes), so that ``val_acc`` is its mean; None (the default) for a trainer without
    #: examples (the synthetic one). The worker records its length as ``val_n`` (the
    #: accuracy's binomial denominator) and, at rung milestones and at the end of the
    #: budget, the vector itself (packed, ``val_correct``), for the report's intervals and
    #: paired tests.
    val_correct: Any = None

    def screen(self) -> Screening | None:
        """Called once before a trial's first epoch (never on a resume): a :class:`Screening`
        when the configuration is not worth training — a student slower than the latency
        reference, whose J is 0 whatever its accuracy — and the worker records the trial as
        ``rejected`` without training it (not counted in ``num_trials``). The searcher is told
        the sweep metric when the screening's metrics hold it (a too-slow student's J is 0),
        else an infeasible trial when :meth:`TrainerSpec.constraints` finds a limit violated
        in them (a student over ``objective.max_latency_s``), else a failure. None (the
        default): train it."""
        return None

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (``epoch`` counts from 1) and return training metrics."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Evaluate on the validation split; the result includes every metric the sweep's
        ASHA objectives name (the worker fails the trial, naming the trainer and the metric,
        when one is missing)."""
        raise NotImplementedError

    def test(self) -> dict[str, float]:
        """Evaluate on the held-out test split (``kdsweep retrain`` calls it once, after the
        last epoch). Every key starts with ``test_`` and is among ``metric_names``."""
        raise NotImplementedError(f"{type(self).__name__} has no test split")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: tensors and plain data (loadable with
        ``torch.load(weights_only=True)``); plain JSON data only for a trainer that never
        imports torch (``orchestrator/checkpoint.py``)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        raise NotImplementedError


#: What builds a trial's training: :meth:`TrainerSpec.build`, or a stand-in with the same
#: signature (the replay simulator's recorded curves).
TrainerFactory = Callable[[Mapping[str, Any], Any, TrialContext], Training]


class TrainerSpec:
    """A trainer's torch-free description (module docstring). Subclasses set ``Settings`` and
    ``training`` and define :meth:`metric_names`; every other hook has a default that does
    nothing, so the loader and the driver call each hook directly.

    The module defining a subclass must not import torch (directly or through its imports).
    """

    #: Dataclass of the sweep file's ``[settings]`` table.
    Settings: ClassVar[type]
    #: Dataclass of the ``[data]`` table, or None if the trainer reads no dataset.
    Data: ClassVar[type | None] = None
    #: Dataclass of a top-level ``[objective]`` table (``--set objective.r_t=10``), or None;
    #: the validated instance reaches the training as ``ctx.objective``.
    Objective: ClassVar[type | None] = None
    #: Dataclass of the scalar keys of ``[space]`` (e.g. ``nodes = 3``) from which
    #: :meth:`generate_space` generates every parameter, or None for an explicit space.
    SpaceOptions: ClassVar[type | None] = None
    #: ``"module:Class"`` of the :class:`Training`, imported only when a trial is built.
    training: ClassVar[str]
    #: Torch-free module of the trainer's own ``kdsweep report`` section, or None. It defines
    #: ``render(summary, console)``, ``to_dict(summary) -> dict`` for ``--format json``, and
    #: optionally ``plot(summary, path)`` for ``--plot FILE.png``.
    report_section: ClassVar[str | None] = None
    #: ``"module:function"`` that puts into the teacher cache every teacher a sweep of this
    #: trainer distils from (``kdsweep teacher train``), or None (the default): the trainer
    #: distils from no teacher. See :meth:`prepare_teachers`.
    teachers: ClassVar[str | None] = None

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        """Every metric name ``train_epoch``, ``evaluate`` or ``test`` may return (fixes the
        results schema)."""
        raise NotImplementedError(f"{cls.__name__} must define metric_names")

    @classmethod
    def validate(cls, settings: Any, data: Any, space: Sequence[Any], objective: Any) -> list[Issue]:
        """Cross-field checks run when the sweep file is loaded, before anything is written;
        none by default."""
        return []

    @classmethod
    def check_params(cls, params: Mapping[str, Any], settings: Any) -> str | None:
        """Pure and cheap: why a proposed configuration cannot be trained (e.g. an all-zero
        filter list), or None (the default). The driver records such a proposal as
        ``rejected`` (not a failure, not counted in ``num_trials``) and a fixed point that
        fails it is a config error."""
        return None

    @classmethod
    def constraint_names(cls, objective: Any) -> tuple[str, ...]:
        """The names of the limits a sweep with this ``[objective]`` table (None when the
        trainer has none) sets on its trials, which :meth:`constraints` computes; none by
        default. The driver reads a trial's metrics for them only when there are some."""
        return ()

    @classmethod
    def constraints(cls, metrics: Mapping[str, Any], objective: Any) -> dict[str, float]:
        """Pure and cheap: the constraint values of a trial whose row holds ``metrics`` (the
        row's columns: a metric may be absent or None), by name among
        :meth:`constraint_names`: finite, <= 0 within the limit, > 0 over it (``screen``
        rejects exactly the trials with a value > 0). A limit whose measurement the row
        lacks is left out. The driver tells them to the searcher with every trial's end and
        replays them from the store on ``--resume``; the ``gp`` searcher models them
        (Optuna's constrained GP), the others ignore them. None by default."""
        return {}

    @classmethod
    def generate_space(cls, options: Any, settings: Any) -> GeneratedSpace:
        """The parameters and fixed points generated from ``SpaceOptions`` (called only when
        ``SpaceOptions`` is set); ``ValueError(field, value, allowed)`` for a bad option."""
        raise NotImplementedError(f"{cls.__name__} sets SpaceOptions but does not define generate_space")

    @classmethod
    def training_module(cls) -> str:
        """The module of the :class:`Training` class (``training`` before the colon)."""
        return cls.training.partition(":")[0]

    @classmethod
    def training_class(cls) -> TrainerFactory:
        """The :class:`Training` class named by ``training`` (imports its module: torch, for
        the distillation trainers)."""
        training: TrainerFactory = import_target(cls.training)
        return training

    @classmethod
    def build(cls, params: Mapping[str, Any], settings: Any, ctx: TrialContext) -> Training:
        """One trial's :class:`Training`."""
        return cls.training_class()(params, settings, ctx)

    @classmethod
    def prepare_teachers(cls, settings: Any, data: Any, device: str) -> list[Mapping[str, Any]]:
        """Train into the cache the teachers that trials with ``settings`` and ``data`` (the
        sweep's validated tables) would use, those not cached yet, on ``device`` ("cpu",
        "cuda"), exactly as a trial would (the same cache entries); return each teacher's
        cache entry info (at least ``name``, ``val_acc``, ``test_acc``, ``path``). Calls the
        function named by :attr:`teachers` (imports its module: torch); only for a trainer
        that sets it."""
        if cls.teachers is None:
            raise TypeError(f"{cls.__name__} distils from no teacher (its teachers hook is None)")
        prepare: Callable[[Any, Any, str], list[Mapping[str, Any]]] = import_target(cls.teachers)
        return prepare(settings, data, device)


#: The trainers installed: entry-point group ``kdsweep.trainers``, name -> TrainerSpec subclass.
TRAINERS: Registry[TrainerSpec] = Registry("kdsweep.trainers", TrainerSpec, "trainer")


def trainer_names() -> list[str]:
    """The names of every installed trainer, sorted."""
    return TRAINERS.names()


def trainer_spec(name: str) -> type[TrainerSpec]:
    """The trainer registered under ``name``. ``KeyError`` lists the valid names; TypeError
    when the entry point does not name a :class:`TrainerSpec` subclass."""
    return TRAINERS.load(name)
