"""The loss-weights trainer's description (no torch): its settings, metrics and checks.
The training is ``trainers/loss_weights.py`` (METHODS.md §1, seed 000)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from kdsweep.trainers.architectures import Stem
from kdsweep.trainers.base import Issue, TrainerSpec
from kdsweep.trainers.data_settings import DataSettings, check_data
from kdsweep.trainers.settings import HintReduction, SGDSettings, TeacherSettings, check_sgd, check_teacher

#: The searched loss weights, in METHODS.md's order.
WEIGHTS = ("a", "b", "c", "d", "e", "f", "g", "h", "i")


@dataclasses.dataclass(frozen=True)
class LossWeightsSettings(SGDSettings, TeacherSettings):
    """Student, teacher and fixed loss settings; a..i default to the seed's research baseline
    and are overridden by the trial's parameters of the same name.

    The feature hint is averaged over batch and features by default, and the baseline's
    i = 1e-6 of seed 000 — in the summed units of the BYOT reference it came from, at
    B = 128 and D = 512 — is 1e-6 × 128 × 512 = 0.065536 in those mean units: the reading
    under which both the baseline and the seed's range i ∈ [0.1, 5] make sense
    (``search_spaces/loss_weights_seed.toml`` has the argument and the measurements)."""

    student: str = "resnet18"
    student_width: float = 1.0
    #: Stem of a ResNet18 student: "imagenet" (torchvision's, which seed 000 trained) or
    #: "cifar" (3×3 stride 1, no max-pool: 15× the MACs at 32×32). Students of the registry
    #: without a stem choice (``models.STEM_MODELS``) have their own and need none.
    stem: Stem = "imagenet"
    #: Reduction of the self-distillation feature hint: "mean" (per element, the units of
    #: seed 000's range) or "sum" (over batch and features, as the BYOT reference computes it).
    hint_reduction: HintReduction = "mean"
    f_ce: float = 1.0
    kd_temperature: float = 4.0
    skd_temperature: float = 3.0
    head_kernels: tuple[int, ...] = (8, 4, 2)
    a: float = 0.1
    b: float = 0.05
    c: float = 0.09
    d: float = 25.0
    e: float = 50.0
    f: float = 1.0
    g: float = 1.0
    h: float = 0.1
    #: Seed 000's 1e-6 in summed units, at the reference's B·D = 128·512, in mean units.
    i: float = 0.065536


class LossWeights(TrainerSpec):
    """One student trained with CE + KD + RKD + self-distillation under weights a..i."""

    Settings: ClassVar[type] = LossWeightsSettings
    Data: ClassVar[type | None] = DataSettings
    training: ClassVar[str] = "kdsweep.trainers.loss_weights:LossWeightsTrainer"
    teachers: ClassVar[str | None] = "kdsweep.trainers.teachers:prepare_teacher"

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        return ("train_loss", "train_ce", "train_kd", "train_rkd", "train_skd", "val_acc", "val_loss", "teacher_val_acc", "test_acc", "test_loss")

    @classmethod
    def validate(cls, settings: LossWeightsSettings, data: DataSettings, space: Sequence[Any], objective: None) -> list[Issue]:
        """Cross-field checks run by the config loader before anything is written."""
        issues = check_data(data) + check_sgd(settings) + check_teacher(settings)
        if not settings.student_width > 0:
            issues.append(("settings.student_width", settings.student_width, "a finite channel multiplier > 0"))
        for p in space:
            if p.name not in WEIGHTS:
                issues.append((f"space.{p.name}", p.name, f"loss_weights searches {', '.join(WEIGHTS)}"))
        if len(settings.head_kernels) != 3 or any(k < 1 for k in settings.head_kernels):
            issues.append(("settings.head_kernels", list(settings.head_kernels), "three positive kernel sizes, one per shallow head (stages 1-3)"))
        return issues
