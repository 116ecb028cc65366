"""Models of the kdsweep trainers, the name registry that sweep files use, and size measures.

Every model is a ``StagedClassifier``: ``model(x)`` gives logits and
``model.forward_features(x)`` gives logits, the penultimate embedding and the stage outputs.
The searched students (``VGGStudent``, ``ResNetStudent``) are built from a trial's filter list
rather than by name, and the self-distillation heads (``SelfDistillationHeads``) are a separate
training-only module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kdsweep.trainers.architectures import STEM_MODELS

from .backbone import ModelOutput, StagedClassifier
from .heads import HeadOutput, SelfDistillationHeads
from .resnet import (
    STEMS,
    ResNet,
    ResNetStudent,
    Stem,
    cifar_resnet,
    resnet18,
    wide_resnet,
)
from .vgg import VGGStudent, vgg16

__all__ = [
    "MODELS",
    "STEMS",
    "STEM_MODELS",
    "HeadOutput",
    "ModelOutput",
    "ResNet",
    "ResNetStudent",
    "SelfDistillationHeads",
    "StagedClassifier",
    "Stem",
    "VGGStudent",
    "build_model",
    "cifar_resnet",
    "count_macs",
    "count_parameters",
    "resnet18",
    "vgg16",
    "wide_resnet",
]

#: Registry name -> builder(num_classes, width, **kw).
MODELS: dict[str, Callable[..., StagedClassifier]] = {
    "resnet18": resnet18,
    "resnet20": functools.partial(cifar_resnet, 20),
    "resnet32": functools.partial(cifar_resnet, 32),
    "resnet110": functools.partial(cifar_resnet, 110),
    "wrn28_2": functools.partial(wide_resnet, 28, 2),
    "vgg16": vgg16,
}



def build_model(name: str, num_classes: int, width: float = 1.0, **kw: Any) -> StagedClassifier:
    """The registered model ``name`` with ``num_classes`` outputs and every channel count
    scaled to ``max(1, round(c · width))``. Extra keywords go to the builder (all accept
    ``in_channels``, default 3). Raises ValueError listing the valid names for an unknown one.
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None
    return builder(num_classes=num_classes, width=width, **kw)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements of ``model``, trainable or not (shared tensors once);
    buffers such as BatchNorm running statistics are not parameters and are not counted."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of a single sample of shape ``input_shape``
    ([C, H, W], no batch dimension).

    Counted, exactly: every ``nn.Conv1d/2d/3d`` (output elements × input channels per group ×
    kernel elements) and every ``nn.Linear`` (output elements × in_features). Not counted:
    biases, BatchNorm, activations, pooling, residual additions and functional ops, which are
    cheap next to these layers. The pass runs under ``no_grad`` in eval mode (so BatchNorm
    works on a batch of one) on the model's device and dtype; every module's train/eval flag is
    restored afterwards.
    """
    total = 0

    def counter(macs_per_output: int) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            nonlocal total
            total += output.numel() * macs_per_output

        return hook

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            per_output = (m.in_channels // m.groups) * math.prod(m.kernel_size)
            handles.append(m.register_forward_hook(counter(per_output)))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(counter(m.in_features)))
    training = {m: m.training for m in model.modules()}
    reference = next(model.parameters(), None)
    x = torch.zeros(
        1,
        *input_shape,
        device=reference.device if reference is not None else None,
        dtype=reference.dtype if reference is not None else None,
    )
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training.items():
            m.training = flag
    return total

