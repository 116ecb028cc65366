"""The skeleton every kdsweep classifier shares: stem → stages → global pooling → linear.

Distillation losses need more than logits: RKD reads the penultimate embedding, and the
self-distillation heads read the intermediate stage outputs. ``StagedClassifier`` exposes all
three through ``forward_features`` so that every architecture offers the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from kdsweep.trainers.architectures import layer_widths


class ModelOutput(NamedTuple):
    """What ``StagedClassifier.forward_features`` returns for an input of shape [B, C, H, W].

    ``logits``: [B, num_classes]. ``embedding``: [B, feature_dim], the globally pooled features
    that the linear classifier reads. ``stages``: one [B, stage_channels[i], H_i, W_i] map per
    stage, shallowest first (the outputs of the stages' last blocks, not detached).
    """

    logits: Tensor
    embedding: Tensor
    stages: list[Tensor]


def scale_channels(channels: int, width: float) -> int:
    """``max(1, round(channels · width))``: a width multiplier never removes a layer."""
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width multiplier must be a finite number > 0, got {width!r}")
    return max(1, round(channels * width))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1, so the map shrinks only by ``stride`` (ceil(H / stride)).

    No bias: every convolution here is followed by BatchNorm, whose shift makes a bias redundant.
    """
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | None = None,
) -> nn.Sequential:
    """Convolution (no bias) → BatchNorm → ReLU; ``padding`` defaults to ``kernel_size // 2``
    ("same" size at stride 1)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_weights(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit-scale zero-shift BatchNorm, PyTorch-default linears.

    He initialisation keeps activation variance constant through ReLU stacks, which the deep
    CIFAR ResNets (ResNet110) need to start training at lr 0.1.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class StagedClassifier(nn.Module):
    """``stem`` → ``stages`` → ``final`` → global average pooling → linear classifier.

    Global *adaptive* pooling makes the classifier independent of the input size, so every
    model accepts any input of at least 8×8 pixels (32×32 CIFAR, resized digits).

    Attributes: ``stage_channels`` (channel count after each stage) and ``feature_dim``
    (embedding size = the last stage's channel count), which the self-distillation heads
    and the relational losses size themselves from.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        stage_channels: Sequence[int],
        num_classes: int,
        final: nn.Module | None = None,
    ) -> None:
        """``final`` runs between the last stage and the pooling (pre-activation nets put their
        closing BatchNorm-ReLU there); ``stage_channels[i]`` is the channel count of stage i."""
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not stages or len(stages) != len(stage_channels):
            raise ValueError(
                f"need one channel count per stage and at least one stage, "
                f"got {len(stages)} stages and {len(stage_channels)} channel counts"
            )
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.final = final if final is not None else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.stage_channels: tuple[int, ...] = tuple(stage_channels)
        self.feature_dim: int = self.stage_channels[-1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> ModelOutput:
        """Logits, embedding and stage outputs for ``x`` of shape [B, C, H, W] (H, W >= 8)."""
        x = self.stem(x)
        stage_outputs: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        embedding = torch.flatten(self.pool(self.final(x)), 1)
        return ModelOutput(self.classifier(embedding), embedding, stage_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [B, num_classes] for ``x`` of shape [B, C, H, W] (H, W >= 8)."""
        return self.forward_features(x).logits
