"""Residual networks for 32×32 inputs: ResNet18 (CIFAR or ImageNet stem), He et al.'s CIFAR
ResNets, WRN-28-2, and the searched ResNet student of the topology trainer (METHODS §2).

Stems (``Stem``): "cifar" is the 3×3 stride-1 conv without max-pool of the CIFAR
re-implementations (kuangliu/pytorch-cifar); "imagenet" is torchvision's 7×7 stride-2 conv +
3×3 stride-2 max-pool, which the seeds ran (their ResNet18 is torchvision's). At 32×32 the
ImageNet stem leaves an 8×8 map, so a ResNet18 costs 37 M MACs instead of 555 M; the models
match torchvision's ``resnet18`` in parameters and MACs (``tests/trainers/test_models.py``).

All of them are ``StagedClassifier``s built by one stage builder, ``residual_stages``, from
one of two blocks: the post-activation ``BasicBlock`` (ResNet18, ResNet20/32/110, the
student) or the pre-activation ``PreActBlock`` (WRN).

Shortcut choice: where a block changes width or stride, its shortcut is a 1×1 convolution
(+ BatchNorm for post-activation blocks), He et al.'s option B. Their CIFAR ResNets used the
parameter-free option A (subsample + zero-pad), so ResNet20/32/110 here carry exactly 2,752
more parameters than the published counts (two projections: 16→32 and 32→64, conv + BN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from kdsweep.trainers.architectures import STEMS, STUDENT_LAYOUT, Stem, layer_widths

from .backbone import (
    StagedClassifier,
    conv3x3,
    conv_bn_relu,
    scale_channels,
)

#: Builds a residual block from (in_channels, out_channels, stride).
BlockFactory = Callable[[int, int, int], nn.Module]

class Subsample(nn.Module):
    """Parameter-free spatial downsampling: keep every ``stride``-th pixel, channels unchanged.

    [B, C, H, W] → [B, C, ceil(H / stride), ceil(W / stride)]: the same sampling grid and output
    size as the strided 3×3 and 1×1 convolutions of a kept block, and unlike 2×2 pooling it
    still works on a 1×1 map.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class BasicBlock(nn.Module):
    """Post-activation basic block: relu(BN(conv3×3(relu(BN(conv3×3(x))))) + shortcut(x)).

    [B, in_channels, H, W] → [B, out_channels, ceil(H / stride), ceil(W / stride)]. The shortcut
    is the identity when shape is preserved, else a strided 1×1 convolution + BatchNorm.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class PreActBlock(nn.Module):
    """Pre-activation basic block (Zagoruyko & Komodakis' WRN block, dropout 0):
    conv3×3(relu(BN(conv3×3(relu(BN(x)))))) + shortcut.

    [B, in_channels, H, W] → [B, out_channels, ceil(H / stride), ceil(W / stride)]. Where the
    shape changes, the shortcut is a strided 1×1 convolution of the *pre-activated* input, as
    in the reference WRN code; otherwise it is ``x`` itself.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.projection: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x), inplace=True)
        shortcut: Tensor = x if self.projection is None else self.projection(activated)
        out: Tensor = self.conv2(F.relu(self.bn2(self.conv1(activated)), inplace=True))
        return out + shortcut


def residual_stages(
    in_channels: int,
    block_widths: Sequence[Sequence[int]],
    strides: Sequence[int],
    block: BlockFactory,
) -> tuple[list[nn.Module], list[int]]:
    """Stages of residual blocks: ``block_widths[s][i]`` is the width of block i of stage s,
    and the first block of stage s has stride ``strides[s]``.

    A width of 0 drops that block's residual branch: the block is only its parameter-free
    shortcut (``Subsample`` where it strides, else the identity) and passes its channel count
    through unchanged. Returns the stages (one ``nn.Sequential`` each) and each stage's output
    channel count.
    """
    if len(block_widths) != len(strides):
        raise ValueError(f"{len(block_widths)} stages but {len(strides)} strides")
    stages: list[nn.Module] = []
    stage_channels: list[int] = []
    channels = in_channels
    for widths, stage_stride in zip(block_widths, strides):
        blocks: list[nn.Module] = []
        for index, width in enumerate(widths):
            stride = stage_stride if index == 0 else 1
            if width == 0:
                blocks.append(Subsample(stride) if stride > 1 else nn.Identity())
            else:
                blocks.append(block(channels, width, stride))
                channels = width
        stages.append(nn.Sequential(*blocks))
        stage_channels.append(channels)
    return stages, stage_channels


def make_stem(kind: Stem, in_channels: int, width: int) -> nn.Module:
    """The stem ``kind`` producing ``width`` channels: "cifar" = 3×3 stride-1 conv-BN-ReLU;
    "imagenet" = 7×7 stride-2 conv-BN-ReLU then 3×3 stride-2 max-pool (torchvision's).

    ``width`` 0 removes the conv: "cifar" becomes the identity; "imagenet" keeps its 4-fold
    downsampling parameter-free (``Subsample(2)`` then the max-pool), as a dropped block keeps
    its shortcut, so the stages see the same map sizes whether or not the conv is there.
    Raises ValueError for an unknown ``kind``.
    """
    if kind not in STEMS:
        raise ValueError(f"unknown stem {kind!r}; valid: {', '.join(STEMS)}")
    if kind == "cifar":
        return conv_bn_relu(in_channels, width) if width > 0 else nn.Identity()
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    if width == 0:
        return nn.Sequential(Subsample(2), pool)
    return nn.Sequential(conv_bn_relu(in_channels, width, kernel_size=7, stride=2), pool)


class ResNet(StagedClassifier):
    """Post-activation ResNet of ``BasicBlock``s behind a ``make_stem`` stem (default the
    CIFAR one: 3×3 stride 1, no max-pool).

    ``stem_width`` 0 removes the stem conv (the image goes straight into the first block,
    downsampled parameter-free by an ImageNet stem); block widths follow ``residual_stages``
    (0 drops a block's residual branch). Input [B, in_channels, H, W] with H, W >= 8; output
    logits [B, num_classes].
    """

    def __init__(
        self,
        stem_width: int,
        block_widths: Sequence[Sequence[int]],
        strides: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        stem: Stem = "cifar",
    ) -> None:
        channels = stem_width if stem_width > 0 else in_channels
        stages, stage_channels = residual_stages(channels, block_widths, strides, BasicBlock)
        super().__init__(make_stem(stem, in_channels, stem_width), stages, stage_channels, num_classes)


def resnet18(num_classes: int, width: float = 1.0, in_channels: int = 3, stem: Stem = "cifar") -> ResNet:
    """ResNet18: ``stem`` (default "cifar", the 3×3 one; "imagenet" is torchvision's
    ``resnet18`` exactly), stages of [2, 2, 2, 2] blocks, widths 64/128/256/512 × width,
    strides 1/2/2/2; 4 stage outputs (32, 16, 8, 4 pixels for a 32×32 input with the CIFAR
    stem, 8, 4, 2, 1 with the ImageNet one). The default stays "cifar" because the teacher
    cache holds models built with it; the trainers choose the stem per seed."""
    widths = [scale_channels(c, width) for c in (64, 128, 256, 512)]
    return ResNet(
        scale_channels(64, width),
        [[w, w] for w in widths],
        (1, 2, 2, 2),
        num_classes,
        in_channels,
        stem,
    )


def cifar_resnet(
    depth: int, num_classes: int, width: float = 1.0, in_channels: int = 3
) -> ResNet:
    """He et al.'s CIFAR ResNet-``depth`` (depth = 6n + 2): 3×3 stem of 16, three stages of n
    blocks with widths 16/32/64 × width and strides 1/2/2; 3 stage outputs."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    widths = [scale_channels(c, width) for c in (16, 32, 64)]
    return ResNet(
        scale_channels(16, width),
        [[w] * n for w in widths],
        (1, 2, 2),
        num_classes,
        in_channels,
    )


def wide_resnet(
    depth: int,
    widen_factor: int,
    num_classes: int,
    width: float = 1.0,
    in_channels: int = 3,
) -> StagedClassifier:
    """Pre-activation WRN-``depth``-``widen_factor`` (depth = 6n + 4), dropout 0: a plain 3×3
    stem conv of 16, three stages of n ``PreActBlock``s with widths (16, 32, 64) · widen_factor
    × width and strides 1/2/2, then BatchNorm-ReLU before the pooling.

    The stage outputs are the raw block outputs (before that closing BatchNorm-ReLU).
    """
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
    if widen_factor < 1:
        raise ValueError(f"WRN widen factor must be >= 1, got {widen_factor}")
    n = (depth - 4) // 6
    stem_width = scale_channels(16, width)
    widths = [scale_channels(c * widen_factor, width) for c in (16, 32, 64)]
    stages, stage_channels = residual_stages(
        stem_width, [[w] * n for w in widths], (1, 2, 2), PreActBlock
    )
    final = nn.Sequential(nn.BatchNorm2d(stage_channels[-1]), nn.ReLU(inplace=True))
    stem = conv3x3(in_channels, stem_width)
    return StagedClassifier(stem, stages, stage_channels, num_classes, final)




class ResNetStudent(ResNet):
    """The ResNet form of the topology search (METHODS §2): ``widths`` holds 17 filter counts,
    the stem conv's then one per basic block of the ResNet34 layout [3, 4, 6, 3] (the block's
    two convs share it; 1 + 32 = 33 convs), strides 1/2/2/2 at the stage starts.

    A 0 removes that layer. For a block, the residual branch goes and the parameter-free
    shortcut stays (see ``residual_stages``); for the stem, the image enters the first block
    directly with its ``in_channels`` channels (downsampled parameter-free by an ImageNet
    ``stem``, see ``make_stem``) — allowed, because METHODS lets every entry be 0 and rules
    out only the all-zero list. Kept blocks get a 1×1 conv + BN projection shortcut wherever
    width or stride changes. The search space draws each entry from {0, 16, 32, 64, 128, 256,
    512}; this class accepts any non-negative count.
    """

    def __init__(self, widths: Sequence[int], num_classes: int, in_channels: int = 3, stem: Stem = "cifar") -> None:
        counts = layer_widths("ResNetStudent", widths, 1 + sum(STUDENT_LAYOUT))
        block_widths: list[tuple[int, ...]] = []
        start = 1
        for count in STUDENT_LAYOUT:
            block_widths.append(counts[start : start + count])
            start += count
        super().__init__(counts[0], block_widths, (1, 2, 2, 2), num_classes, in_channels, stem)
        self.widths = counts
