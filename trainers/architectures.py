"""Facts about the model zoo that sweep files name, without torch: registry names, stems,
the searched students' layouts, and the rule for a filter list. The config loader checks
sweep files against these; ``trainers/models`` builds the models from the same facts (a test
checks that the registry there has exactly these names).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Literal, get_args

#: Names a sweep file may give a model (``settings.teacher``, graph nodes, ...): the keys of
#: ``models.MODELS``.
MODEL_NAMES: tuple[str, ...] = ("resnet18", "resnet20", "resnet32", "resnet110", "wrn28_2", "vgg16")

#: Registry names whose builder takes ``stem`` ("imagenet" | "cifar", ``resnet.make_stem``).
STEM_MODELS: frozenset[str] = frozenset({"resnet18"})

#: The stem before a post-activation ResNet's first stage (see ``models/resnet.py``).
Stem = Literal["imagenet", "cifar"]
STEMS: tuple[str, ...] = get_args(Stem)

#: VGG16's 13 filter counts, in order.
VGG16_FILTERS: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)

#: Blocks per stage of the ResNet34 layout that the searched student follows.
STUDENT_LAYOUT: tuple[int, ...] = (3, 4, 6, 3)


def layer_widths(name: str, widths: Sequence[int], length: int) -> tuple[int, ...]:
    """Validate a searched student's per-layer filter counts: exactly ``length`` non-negative
    integers (NumPy integers accepted), not all 0, since a 0 removes its layer and an
    all-zero list would leave no layer at all. Raises ValueError naming the violated rule."""
    if len(widths) != length:
        raise ValueError(f"{name} needs {length} filter counts, got {len(widths)}")
    try:
        counts = tuple(operator.index(w) for w in widths)
    except TypeError:
        raise ValueError(f"{name} filter counts must be integers, got {list(widths)}") from None
    if any(c < 0 for c in counts):
        raise ValueError(f"{name} filter counts must be >= 0, got {list(counts)}")
    if not any(counts):
        raise ValueError(f"{name} filter counts must not all be 0 (0 removes a layer)")
    return counts
