"""Shallow classifier heads for "Be Your Own Teacher" self-distillation (METHODS §1).

Each head turns one intermediate stage map of the student into logits and a feature vector of
the student's embedding size, so that L_SKD can compare the head's feature F_k with the
deepest feature F_deep through the hint Σ((F_k − F_deep)²). The heads are a separate, training-only
module: inference, parameter counts and latency use the plain student.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import StagedClassifier, conv_bn_relu, init_weights


class HeadOutput(NamedTuple):
    """One head's output for a batch of B: ``logits`` [B, num_classes], ``feature``
    [B, feature_dim] (the pooled vector its classifier reads)."""

    logits: Tensor
    feature: Tensor


class BottleneckHead(nn.Module):
    """1×1 conv → k×k conv with stride k → 1×1 conv (each with BN + ReLU), global average
    pooling, linear classifier; the bottleneck is ``feature_dim // 4`` wide, as in the BYOT
    reference code.

    Input [B, in_channels, H, W]; the k×k stride-k conv shrinks the map k-fold (a 32×32
    stage-1 map with k = 8 ends at 4×4, the size of ResNet18's last stage). Where H or W is
    below k (inputs smaller than 32×32 with a large k), the reduced map is zero-padded at the
    bottom/right up to k before that conv. This clamps the kernel to the map: the output is 1×1
    and equals convolving the whole map with the kernel's top-left H×W corner, and the
    parameters stay those of the 32×32 design, so weights do not depend on the input size.
    """

    def __init__(
        self, in_channels: int, feature_dim: int, kernel_size: int, num_classes: int
    ) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"head kernel size must be >= 1, got {kernel_size}")
        middle = max(1, feature_dim // 4)
        self.kernel_size = kernel_size
        self.reduce = conv_bn_relu(in_channels, middle, kernel_size=1)
        self.expand = nn.Sequential(
            conv_bn_relu(middle, middle, kernel_size=kernel_size, stride=kernel_size, padding=0),
            conv_bn_relu(middle, feature_dim, kernel_size=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> HeadOutput:
        x = self.reduce(x)
        pad_h = max(0, self.kernel_size - x.shape[-2])
        pad_w = max(0, self.kernel_size - x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        feature = torch.flatten(self.pool(self.expand(x)), 1)
        return HeadOutput(self.classifier(feature), feature)


class SelfDistillationHeads(nn.Module):
    """One ``BottleneckHead`` per shallow stage: head i reads stage i's output (shallowest
    first), which has ``stage_channels[i]`` channels, with kernel ``kernel_sizes[i]``.

    ``feature_dim`` must be the student's embedding size (``StagedClassifier.feature_dim``) so
    that every head's feature is comparable with the student's embedding.
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        num_classes: int,
        kernel_sizes: Sequence[int] = (8, 4, 2),
        *,
        feature_dim: int,
    ) -> None:
        super().__init__()
        if not stage_channels or len(stage_channels) != len(kernel_sizes):
            raise ValueError(
                f"need one kernel size per head and at least one head, got "
                f"{len(stage_channels)} stage channel counts and {len(kernel_sizes)} kernel sizes"
            )
        if num_classes < 1 or feature_dim < 1:
            raise ValueError(
                f"num_classes and feature_dim must be >= 1, got {num_classes} and {feature_dim}"
            )
        self.heads = nn.ModuleList(
            BottleneckHead(c, feature_dim, k, num_classes)
            for c, k in zip(stage_channels, kernel_sizes)
        )
        init_weights(self)

    @classmethod
    def for_student(
        cls, student: StagedClassifier, kernel_sizes: Sequence[int] = (8, 4, 2)
    ) -> SelfDistillationHeads:
        """Heads after the first ``len(kernel_sizes)`` stages of ``student`` (stages 1–3 of
        ResNet18 by default), sized from its stage channels, embedding and class count."""
        if len(kernel_sizes) >= len(student.stage_channels):
            raise ValueError(
                f"{len(kernel_sizes)} heads need a student with more stages, "
                f"it has {len(student.stage_channels)} (the last one is its own classifier)"
            )
        return cls(
            student.stage_channels[: len(kernel_sizes)],
            student.classifier.out_features,
            kernel_sizes,
            feature_dim=student.feature_dim,
        )

    def forward(self, stage_outputs: Sequence[Tensor]) -> list[HeadOutput]:
        """``stage_outputs``: the student's ``ModelOutput.stages`` (shallowest first); head i
        reads entry i, extra deeper entries are ignored. Returns one ``HeadOutput`` per head,
        shallowest first. Stage outputs are not detached: the heads' losses train the student.
        """
        if len(stage_outputs) < len(self.heads):
            raise ValueError(
                f"{len(self.heads)} heads need at least {len(self.heads)} stage outputs, "
                f"got {len(stage_outputs)}"
            )
        return [head(x) for head, x in zip(self.heads, stage_outputs)]
