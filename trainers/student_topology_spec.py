"""The student-topology trainer's description (no torch): settings, the searched layers,
checks and metrics. The training is ``trainers/student_topology.py`` (METHODS.md §2, seed 002).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from kdsweep.orchestrator.space import ParamSpec, missing_and_unknown
from kdsweep.trainers.architectures import STUDENT_LAYOUT, VGG16_FILTERS, Stem, layer_widths
from kdsweep.trainers.base import Issue, TrainerSpec
from kdsweep.trainers.data_settings import DataSettings, check_data
from kdsweep.trainers.objective import ObjectiveSettings, check_objective
from kdsweep.trainers.settings import AlphaOn, SGDSettings, TeacherSettings, check_sgd, check_teacher

Form = Literal["vgg", "resnet"]

#: Number of searched filter counts per form: VGG16's 13 convs; the ResNet34 layout's stem
#: plus 16 basic blocks.
LAYER_COUNTS: dict[str, int] = {"vgg": len(VGG16_FILTERS), "resnet": 1 + sum(STUDENT_LAYOUT)}

#: The seed's filter choices (0 removes the layer); the sweep files search exactly these.
FILTER_CHOICES: tuple[int, ...] = (0, 16, 32, 64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class StudentTopologySettings(SGDSettings, TeacherSettings):
    """Student form, teacher, distillation and latency-measurement settings."""

    form: Form = "vgg"
    teacher: str = "vgg16"
    #: The seed's α = 0.9, weighting the term ``kd_alpha_on`` names; the other gets 1 − α.
    alpha: float = 0.9
    #: "ce": α·CE + (1 − α)·T²·KL, seed 002's eq. 3 as printed; "kd": (1 − α)·CE + α·T²·KL,
    #: the widely used reference code's reading.
    kd_alpha_on: AlphaOn = "ce"
    temperature: float = 4.0
    #: Stem of a ResNet-form student: "imagenet" (torchvision's, the seed's ResNet18) or
    #: "cifar" (3×3 stride 1, no max-pool). No effect on the VGG form.
    stem: Stem = "imagenet"
    #: Latency is the time to classify the first ``latency_images`` validation images (all
    #: of them when the split is smaller) in batches of ``latency_batch_size``.
    latency_images: int = 1024
    latency_batch_size: int = 128
    #: Untimed passes first (lazy initialisation, allocator and cache warm-up).
    latency_warmup: int = 2
    #: Timed passes; the latency is their median, robust to a pass slowed by other work.
    latency_repeats: int = 5


def layer_names(form: str) -> tuple[str, ...]:
    """The trial parameters of ``form``: ``f01``..``f13`` (vgg) or ``f01``..``f17`` (resnet)."""
    return tuple(f"f{i:02d}" for i in range(1, LAYER_COUNTS[form] + 1))


def filters_of(params: Mapping[str, Any], form: str) -> tuple[int, ...]:
    """The filter list of a trial, in layer order. Raises ValueError naming the problem: the
    parameter names are not exactly the form's layers, a count is not a non-negative integer,
    or every count is 0 (no layer left)."""
    names = layer_names(form)
    missing, unknown = missing_and_unknown(params, names)
    if missing or unknown:
        raise ValueError(
            f"a {form} student takes exactly the parameters {names[0]}..{names[-1]} "
            f"(missing {missing}, unknown {unknown})"
        )
    return layer_widths(f"{form} student", [params[n] for n in names], len(names))


class StudentTopology(TrainerSpec):
    """One student of a searched topology, distilled from the teacher and scored by J."""

    Settings: ClassVar[type] = StudentTopologySettings
    Data: ClassVar[type | None] = DataSettings
    Objective: ClassVar[type | None] = ObjectiveSettings
    training: ClassVar[str] = "kdsweep.trainers.student_topology:StudentTopologyTrainer"
    teachers: ClassVar[str | None] = "kdsweep.trainers.teachers:prepare_teacher"
    report_section: ClassVar[str | None] = "kdsweep.trainers.topology_report"

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        return (
            "train_loss", "val_acc", "val_loss", "latency_s", "num_params", "macs", "t_max", "a_max",
            "j_t", "j_a", "J", "teacher_val_acc", "test_acc", "test_loss", "test_J",
        )  # fmt: skip

    @classmethod
    def check_params(cls, params: Mapping[str, Any], settings: StudentTopologySettings) -> str | None:
        """Why ``params`` is no trainable student of ``settings.form`` (e.g. all filter counts
        0), or None."""
        try:
            filters_of(params, settings.form)
        except ValueError as e:
            return str(e)
        return None

    #: Each hard limit of ``[objective]`` → the metric it bounds.
    LIMITS: ClassVar[dict[str, str]] = {"max_latency_s": "latency_s", "max_params": "num_params"}

    @classmethod
    def constraint_names(cls, objective: ObjectiveSettings | None) -> tuple[str, ...]:
        """The hard limits the objective sets: ``max_latency_s`` and/or ``max_params``."""
        if objective is None:
            return ()
        return tuple(name for name in cls.LIMITS if getattr(objective, name) is not None)

    @classmethod
    def constraints(cls, metrics: Mapping[str, Any], objective: ObjectiveSettings | None) -> dict[str, float]:
        """log(measured / limit) per limit set: the latency (``latency_s``) over
        ``max_latency_s``, the parameter count (``num_params``) over ``max_params``.

        On a log scale because width multiplies latency and size (a layer's parameters grow
        with the product of two widths): the ratio spans orders of magnitude across the
        space, its logarithm varies about as smoothly between neighbouring widths anywhere,
        which suits the GP that models each constraint. Positive exactly when the
        measurement is over the limit, as ``screen`` judges it (guarded, so that no
        rounding can make an over-limit value 0). A measurement the row lacks (or a
        non-finite or non-positive one) gives no value."""
        values: dict[str, float] = {}
        for name in cls.constraint_names(objective):
            limit = float(getattr(objective, name))
            measured = metrics.get(cls.LIMITS[name])
            if measured is None or not (math.isfinite(float(measured)) and float(measured) > 0):
                continue
            value = math.log(float(measured) / limit)
            values[name] = max(value, math.nextafter(0.0, 1.0)) if float(measured) > limit else value
        return values

    @classmethod
    def validate(cls, settings: StudentTopologySettings, data: DataSettings, space: Sequence[ParamSpec], objective: ObjectiveSettings) -> list[Issue]:
        """Cross-field checks run by the config loader before anything is written: the data,
        the objective, the settings, and a space of exactly the form's layers, each taking
        non-negative integer filter counts."""
        issues = check_data(data) + check_objective(objective) + check_sgd(settings) + check_teacher(settings)
        s = settings
        if not 0.0 <= s.alpha <= 1.0:
            issues.append(("settings.alpha", s.alpha, f"a weight in [0, 1] (on the {s.kd_alpha_on.upper()} term, settings.kd_alpha_on; the other gets 1 - alpha)"))
        if not (math.isfinite(s.temperature) and s.temperature > 0):
            issues.append(("settings.temperature", s.temperature, "a finite temperature > 0"))
        for name, low in (("latency_images", 1), ("latency_batch_size", 1), ("latency_warmup", 0), ("latency_repeats", 1)):
            if getattr(s, name) < low:
                issues.append((f"settings.{name}", getattr(s, name), f"an integer >= {low}"))
        names = layer_names(s.form)
        by_name = {p.name: p for p in space}
        missing = [name for name in names if name not in by_name]
        if missing:
            issues.append(("space", missing, f"one filter count per layer of a {s.form} student, {names[0]}..{names[-1]}; these are missing"))
        for p in space:
            if p.name not in names:
                issues.append((f"space.{p.name}", p.name, f"a {s.form} student searches {names[0]}..{names[-1]}"))
            elif not _counts_only(p):
                issues.append((f"space.{p.name}", p.kind, f"filter counts: a choice of integers >= 0 (the seed's {list(FILTER_CHOICES)}) or an int range with low >= 0"))
        return issues


def _counts_only(p: ParamSpec) -> bool:
    """Whether search parameter ``p`` proposes only integers >= 0."""
    if p.kind == "choice":
        return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p.values)
    return p.kind == "int" and p.low is not None and p.low >= 0
