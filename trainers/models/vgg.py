"""CIFAR VGG16 with BatchNorm and the VGG form of the topology search (METHODS §2).

VGG16 is the searched student with VGG16's own filter counts, so the teacher and its
students share one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from kdsweep.trainers.architectures import VGG16_FILTERS, layer_widths

from .backbone import (
    StagedClassifier,
    conv_bn_relu,
    scale_channels,
)

#: Number of 3×3 convs before each of VGG16's five max-pools (after convs 2, 4, 7, 10, 13).
VGG16_LAYOUT: tuple[int, ...] = (2, 2, 3, 3, 3)



class VGGStudent(StagedClassifier):
    """VGG16 with per-conv filter counts: ``filters`` holds 13 counts, one per 3×3 conv
    (each conv → BN → ReLU); 0 removes that conv. The five 2×2 max-pools stay after conv
    positions 2, 4, 7, 10 and 13 whatever is removed, and each kept conv takes the previous
    kept conv's channels (the image's ``in_channels`` for the first). Then global average
    pooling and one linear layer from the last kept conv's width.

    The max-pools round up (``ceil_mode``): identical to plain 2×2 pooling on even maps, and
    a 1×1 map stays 1×1, so inputs from 8×8 upwards survive all five pools. Stage outputs are
    the five post-pool maps. Input [B, in_channels, H, W]; logits [B, num_classes].

    The search space draws each count from {0, 16, 32, 64, 128, 256, 512}; this class accepts
    any non-negative count (VGG16 at a width multiplier needs others).
    """

    def __init__(self, filters: Sequence[int], num_classes: int, in_channels: int = 3) -> None:
        counts = layer_widths("VGGStudent", filters, len(VGG16_FILTERS))
        stages: list[nn.Module] = []
        stage_channels: list[int] = []
        channels = in_channels
        start = 0
        for count in VGG16_LAYOUT:
            layers: list[nn.Module] = []
            for f in counts[start : start + count]:
                if f > 0:
                    layers.append(conv_bn_relu(channels, f))
                    channels = f
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
            stage_channels.append(channels)
            start += count
        super().__init__(nn.Identity(), stages, stage_channels, num_classes)
        self.filters = counts


def vgg16(num_classes: int, width: float = 1.0, in_channels: int = 3) -> VGGStudent:
    """CIFAR VGG16-BN: ``VGGStudent`` with VGG16's filter counts × ``width``."""
    return VGGStudent([scale_channels(f, width) for f in VGG16_FILTERS], num_classes, in_channels)
