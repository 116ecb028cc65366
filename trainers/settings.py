"""The ``[settings]`` pieces the torch trainers share, without torch: optimisation, the
cached teacher, and the loss choices a sweep file names. The config loader, ``kdsweep
status`` and ``report`` build these from sweep files and must not import torch for it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

__all__ = ["AlphaOn", "HINT_REDUCTIONS", "HintReduction", "SGDSettings", "TeacherSettings"]


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


#: How the self-distillation feature hint reduces its squared differences (see
#: ``losses.self_distillation_loss``).
HintReduction = Literal["sum", "mean"]
HINT_REDUCTIONS: tuple[str, ...] = get_args(HintReduction)

#: Which term of ``losses.label_kd_loss`` the weight α multiplies.
AlphaOn = Literal["ce", "kd"]
