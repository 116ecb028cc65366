"""The ``[settings]`` pieces the torch trainers share, without torch: optimisation, the
cached teacher (and the checks of both), and the loss choices a sweep file names. The config
loader, ``kdsweep status`` and ``report`` build these from sweep files and must not import
torch for it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

from kdsweep.orchestrator.config import PATH_ROOM, SEED_RANGE, is_seed, path_problem
from kdsweep.trainers.architectures import MODEL_NAMES
from kdsweep.trainers.base import Issue

__all__ = ["AlphaOn", "HINT_REDUCTIONS", "HintReduction", "SGDSettings", "TeacherSettings", "check_cache", "check_sgd", "check_teacher"]


@dataclasses.dataclass(frozen=True)
class SGDSettings:
    """METHODS.md's common defaults: SGD, momentum 0.9, weight decay 5e-4, lr 0.1, batch 128."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    #: "cosine" decays to 0 over the budget; "step" multiplies by ``step_gamma`` at each
    #: fraction of the budget in ``step_at`` (the graph seed: 0.3, 0.6, 0.9).
    schedule: Literal["cosine", "step"] = "cosine"
    step_at: tuple[float, ...] = (0.3, 0.6, 0.9)
    step_gamma: float = 0.1
    batch_size: int = 128
    #: CUDA only: bf16 autocast and channels_last memory layout (no effect on CPU).
    bf16: bool = True
    channels_last: bool = True


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    """The ``[settings]`` keys of a trainer that distils from one cached teacher; trainers'
    settings dataclasses inherit them (overriding the default ``teacher`` where theirs differs)."""

    teacher: str = "resnet18"
    teacher_width: float = 1.0
    teacher_epochs: int = 30
    teacher_seed: int = 0
    #: Teacher cache directory (default: $KDSWEEP_CACHE/teachers or ~/.cache/kdsweep/teachers).
    teacher_cache: str | None = None


def check_sgd(s: SGDSettings) -> list[Issue]:
    """The optimisation settings no trial could train with, as ``(field, value, allowed)``:
    a negative lr, momentum or weight decay (torch.optim.SGD raises ValueError for each, so
    every trial would fail), and a batch size below 1."""
    issues: list[Issue] = []
    for name in ("lr", "momentum", "weight_decay"):
        if getattr(s, name) < 0:
            issues.append((f"settings.{name}", getattr(s, name), "a number >= 0 (torch's SGD refuses a negative one)"))
    if s.batch_size < 1:
        issues.append(("settings.batch_size", s.batch_size, "an integer >= 1"))
    return issues


def check_teacher(s: TeacherSettings) -> list[Issue]:
    """The teacher settings no trial could use, as ``(field, value, allowed)``: a model name
    not in the registry, a width <= 0, fewer than 1 epoch, a seed outside what the random
    generators take, a cache path the OS refuses."""
    issues: list[Issue] = []
    if s.teacher not in MODEL_NAMES:
        issues.append(("settings.teacher", s.teacher, f"one of {', '.join(sorted(MODEL_NAMES))}"))
    if not (math.isfinite(s.teacher_width) and s.teacher_width > 0):
        issues.append(("settings.teacher_width", s.teacher_width, "a finite channel multiplier > 0"))
    if s.teacher_epochs < 1:
        issues.append(("settings.teacher_epochs", s.teacher_epochs, "an integer >= 1"))
    if not is_seed(s.teacher_seed):
        issues.append(("settings.teacher_seed", s.teacher_seed, SEED_RANGE))
    return issues + check_cache(s.teacher_cache)


def check_cache(cache: str | None) -> list[Issue]:
    """``settings.teacher_cache`` as an issue when it is a path the OS refuses (the workers
    create it: every trial would fail)."""
    problem = None if cache is None else path_problem(cache, PATH_ROOM)
    return [] if problem is None else [("settings.teacher_cache", cache, problem)]


#: How the self-distillation feature hint reduces its squared differences (see
#: ``losses.self_distillation_loss``).
HintReduction = Literal["sum", "mean"]
HINT_REDUCTIONS: tuple[str, ...] = get_args(HintReduction)

#: Which term of ``losses.label_kd_loss`` the weight α multiplies.
AlphaOn = Literal["ce", "kd"]
