"""Tests of kdsweep.trainers.models: shapes, published sizes, searched students, heads, counters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from kdsweep.trainers.models import (
    MODELS,
    ResNetStudent,
    SelfDistillationHeads,
    StagedClassifier,
    VGGStudent,
    build_model,
    count_macs,
    count_parameters,
    resnet18,
)
from kdsweep.trainers.models.backbone import scale_channels
from kdsweep.trainers.models.heads import BottleneckHead
from kdsweep.trainers.models.resnet import BasicBlock, Subsample
from kdsweep.trainers.models.vgg import VGG16_FILTERS

B = 2
NUM_CLASSES = 10
SMALL = 0.25  # width multiplier that keeps every forward pass in milliseconds on a CPU

#: Spatial sizes of the stage outputs for a 32×32 input.
STAGE_SIZES = {
    "resnet18": [32, 16, 8, 4],
    "resnet20": [32, 16, 8],
    "resnet32": [32, 16, 8],
    "resnet110": [32, 16, 8],
    "wrn28_2": [32, 16, 8],
    "vgg16": [16, 8, 4, 2, 1],
}

#: 10-class parameter counts of the reference implementations, and how ours differ.
#: ResNet18: kuangliu/pytorch-cifar. ResNet20/32/110: He et al.'s option-A shortcuts as in
#: akamaster/pytorch_resnet_cifar10 (0.27M/0.46M/1.7M); ours use option-B projections, two of
#: them (16→32: 512 + 64 BN; 32→64: 2048 + 128 BN), +2,752 (+1.02% for ResNet20, +0.59% for
#: ResNet32, +0.16% for ResNet110). WRN-28-2: xternalz/WideResNet-pytorch (1.47M).
#: VGG16-BN: kuangliu/pytorch-cifar (14.7M), whose convs carry biases that the following
#: BatchNorm makes redundant; ours drop them, −4,224 (−0.03%).
REFERENCE_PARAMS = {
    "resnet18": (11_173_962, 0),
    "resnet20": (269_722, 2_752),
    "resnet32": (464_154, 2_752),
    "resnet110": (1_727_962, 2_752),
    "wrn28_2": (1_467_610, 0),
    "vgg16": (14_728_266, -4_224),
}


def test_registry_names() -> None:
    assert set(MODELS) == set(STAGE_SIZES) == set(REFERENCE_PARAMS)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [32, 16, 8, 12])
def test_registry_output_shape(name: str, size: int) -> None:
    model = build_model(name, NUM_CLASSES, width=SMALL)
    with torch.no_grad():  # training-mode BatchNorm, without the autograd bookkeeping
        logits = model(torch.randn(B, 3, size, size))
    assert logits.shape == (B, NUM_CLASSES)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_features_shapes(name: str) -> None:
    model = build_model(name, NUM_CLASSES, width=SMALL).eval()
    x = torch.randn(B, 3, 32, 32)
    out = model.forward_features(x)
    assert out.logits.shape == (B, NUM_CLASSES)
    assert out.embedding.shape == (B, model.feature_dim)
    assert model.feature_dim == model.stage_channels[-1]
    assert [s.shape for s in out.stages] == [
        (B, c, hw, hw) for c, hw in zip(model.stage_channels, STAGE_SIZES[name], strict=True)
    ]
    # The embedding is exactly what the classifier reads, and forward() is the same logits.
    torch.testing.assert_close(out.logits, model.classifier(out.embedding))
    torch.testing.assert_close(model(x), out.logits)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_counts_match_references(name: str) -> None:
    reference, delta = REFERENCE_PARAMS[name]
    assert count_parameters(build_model(name, NUM_CLASSES)) == reference + delta


def _torchvision_resnet18(num_classes: int, stem: str) -> nn.Module:
    """torchvision's own ResNet18; for the CIFAR stem, with conv1 a 3×3 stride-1 conv and no
    max-pool, the usual CIFAR adaptation of it."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize(("num_classes", "size"), [(10, 32), (1000, 224)])
def test_resnet18_stems_match_torchvision_in_macs_and_parameters(stem: str, num_classes: int, size: int) -> None:
    ours = resnet18(num_classes, stem=stem)
    theirs = _torchvision_resnet18(num_classes, stem)
    assert count_parameters(ours) == count_parameters(theirs)
    assert count_macs(ours, [3, size, size]) == count_macs(theirs, [3, size, size])


def test_resnet18_stem_costs_at_32x32() -> None:
    # The figures of the fidelity issue: the CIFAR stem makes ResNet18 1.8× VGG16's MACs; the
    # ImageNet stem (the seeds' torchvision ResNet18) 15× fewer.
    assert count_macs(resnet18(10, stem="cifar"), [3, 32, 32]) == 555_422_720
    assert count_macs(resnet18(10, stem="imagenet"), [3, 32, 32]) == 37_016_576
    assert count_macs(build_model("vgg16", 10), [3, 32, 32]) == 313_201_664
    assert count_parameters(resnet18(10, stem="imagenet")) == 11_181_642
    with pytest.raises(ValueError, match="unknown stem 'tiny'; valid: imagenet, cifar"):
        resnet18(10, stem="tiny")


def test_build_model_rejects_unknown_name_and_bad_width() -> None:
    with pytest.raises(ValueError, match="valid: resnet110, resnet18, .*vgg16, wrn28_2"):
        build_model("resnet50", NUM_CLASSES)
    with pytest.raises(ValueError, match="width multiplier"):
        build_model("resnet20", NUM_CLASSES, width=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", 0)


def test_width_multiplier_scales_and_keeps_every_layer() -> None:
    assert scale_channels(64, 0.5) == 32
    assert scale_channels(16, 0.01) == 1
    model = build_model("resnet18", NUM_CLASSES, width=0.125)
    assert model.stage_channels == (8, 16, 32, 64)
    single_channel = build_model("vgg16", NUM_CLASSES, in_channels=1, width=SMALL)
    assert single_channel(torch.randn(B, 1, 32, 32)).shape == (B, NUM_CLASSES)


# --- self-distillation heads -------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 16, 8])
def test_heads_shapes_and_feature_dim(size: int) -> None:
    student = resnet18(NUM_CLASSES, width=0.125)
    heads = SelfDistillationHeads.for_student(student)
    out = student.forward_features(torch.randn(B, 3, size, size))
    head_outputs = heads(out.stages)
    assert len(head_outputs) == 3
    for h in head_outputs:
        assert h.logits.shape == (B, NUM_CLASSES)
        assert h.feature.shape == out.embedding.shape == (B, student.feature_dim)
        # The feature-matching term of L_SKD is well-defined.
        assert torch.isfinite(((h.feature - out.embedding) ** 2).mean())


def test_heads_reach_the_last_stage_resolution_at_32() -> None:
    # k = 8, 4, 2 after stages of 32, 16, 8 pixels: each head ends at ResNet18's final 4×4.
    student = resnet18(NUM_CLASSES, width=0.125)
    heads = SelfDistillationHeads.for_student(student)
    stages = student.forward_features(torch.randn(B, 3, 32, 32)).stages
    for head, x in zip(heads.heads, stages, strict=False):
        assert isinstance(head, BottleneckHead)
        assert head.expand(head.reduce(x)).shape[-2:] == (4, 4)


def test_heads_train_the_student() -> None:
    student = resnet18(NUM_CLASSES, width=0.125)
    heads = SelfDistillationHeads.for_student(student)
    out = student.forward_features(torch.randn(B, 3, 16, 16))
    y = torch.tensor([1, 3])
    loss = sum(F.cross_entropy(h.logits, y) for h in heads(out.stages))
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    stem_conv = student.stem[0]
    assert isinstance(stem_conv, nn.Conv2d)
    assert stem_conv.weight.grad is not None and stem_conv.weight.grad.abs().sum() > 0
    # Heads are separate from the student: the student's own parameters exclude them.
    assert count_parameters(student) == count_parameters(resnet18(NUM_CLASSES, width=0.125))


def test_head_on_a_map_smaller_than_its_kernel_uses_the_cropped_kernel() -> None:
    head = BottleneckHead(in_channels=4, feature_dim=8, kernel_size=4, num_classes=3).eval()
    x = torch.randn(B, 4, 2, 3)
    out = head(x)
    assert out.logits.shape == (B, 3) and out.feature.shape == (B, 8)
    conv, bn_relu = head.expand[0][0], head.expand[0][1:]
    assert isinstance(conv, nn.Conv2d)
    reduced = head.reduce(x)
    cropped = F.conv2d(reduced, conv.weight[:, :, :2, :3])  # 1×1 output, the clamped kernel
    feature = torch.flatten(head.pool(head.expand[1](bn_relu(cropped))), 1)
    torch.testing.assert_close(out.feature, feature)


def test_heads_reject_inconsistent_arguments() -> None:
    with pytest.raises(ValueError, match="one kernel size per head"):
        SelfDistillationHeads((64, 128), NUM_CLASSES, (8, 4, 2), feature_dim=512)
    with pytest.raises(ValueError, match="more stages"):
        SelfDistillationHeads.for_student(
            build_model("resnet20", NUM_CLASSES, width=SMALL), kernel_sizes=(8, 4, 2)
        )
    heads = SelfDistillationHeads((4, 8, 16), NUM_CLASSES, feature_dim=32)
    with pytest.raises(ValueError, match="at least 3 stage outputs"):
        heads([torch.randn(B, 4, 8, 8)])


# --- VGG student -------------------------------------------------------------------------


def _vgg_params(filters: list[int], num_classes: int = NUM_CLASSES) -> int:
    """Hand count: each kept conv 9·in·out (no bias) + BN 2·out; then the linear layer."""
    total, channels = 0, 3
    for f in filters:
        if f:
            total += 9 * channels * f + 2 * f
            channels = f
    return total + channels * num_classes + num_classes


def test_vgg16_is_the_student_with_vgg16_filters() -> None:
    model = build_model("vgg16", NUM_CLASSES)
    assert isinstance(model, VGGStudent)
    assert model.filters == VGG16_FILTERS
    assert count_parameters(model) == _vgg_params(list(VGG16_FILTERS))


def test_vgg_student_zeros_remove_convs() -> None:
    filters = [16, 0, 32, 32, 0, 64, 0, 0, 0, 0, 128, 0, 16]
    model = VGGStudent(filters, NUM_CLASSES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [f for f in filters if f]
    # Input channels chain through the kept convs only.
    assert [c.in_channels for c in convs] == [3, 16, 32, 32, 64, 128]
    assert count_parameters(model) == _vgg_params(filters)
    full = [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 16]
    assert count_parameters(model) < count_parameters(VGGStudent(full, NUM_CLASSES))


def test_vgg_student_keeps_all_five_pools() -> None:
    # Only the last conv kept: the image passes the first four pools with its 3 channels.
    model = VGGStudent([0] * 12 + [16], NUM_CLASSES).eval()
    out = model.forward_features(torch.randn(B, 3, 32, 32))
    assert model.stage_channels == (3, 3, 3, 3, 16)
    assert [s.shape[-1] for s in out.stages] == [16, 8, 4, 2, 1]
    assert out.logits.shape == (B, NUM_CLASSES)


def test_vgg_student_rejects_invalid_filter_lists() -> None:
    with pytest.raises(ValueError, match="must not all be 0"):
        VGGStudent([0] * 13, NUM_CLASSES)
    with pytest.raises(ValueError, match="needs 13 filter counts"):
        VGGStudent([64] * 12, NUM_CLASSES)
    with pytest.raises(ValueError, match=">= 0"):
        VGGStudent([64] * 12 + [-1], NUM_CLASSES)
    with pytest.raises(ValueError, match="integers"):
        VGGStudent([64.0] * 13, NUM_CLASSES)


def test_vgg_student_macs_shrink_with_filters() -> None:
    def macs(filters: list[int]) -> int:
        return count_macs(VGGStudent(filters, NUM_CLASSES), (3, 32, 32))

    full = macs(list(VGG16_FILTERS))
    half = macs([f // 2 for f in VGG16_FILTERS])
    dropped = macs([f // 2 for f in VGG16_FILTERS[:-1]] + [0])
    assert dropped < half < full
    assert half < full / 3  # conv MACs scale with in × out channels: about a quarter


# --- ResNet student ----------------------------------------------------------------------

RESNET34_WIDTHS = [64] + [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3


def _blocks(model: ResNetStudent) -> list[nn.Module]:
    return [block for stage in model.stages for block in stage.children()]


def test_resnet_student_full_widths_is_resnet34() -> None:
    model = ResNetStudent(RESNET34_WIDTHS, NUM_CLASSES)
    three_by_three = [
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert len(three_by_three) == 33
    assert count_parameters(model) == 21_282_122  # CIFAR ResNet34, kuangliu/pytorch-cifar


def test_resnet_student_dropped_blocks_are_parameter_free_shortcuts() -> None:
    widths = [32, 0, 32, 32, 0, 64, 64, 0, 0, 0, 0, 0, 0, 0, 64, 0, 128]
    model = ResNetStudent(widths, NUM_CLASSES).eval()
    blocks = _blocks(model)
    assert len(blocks) == 16
    for width, block in zip(widths[1:], blocks, strict=True):
        if width == 0:
            assert count_parameters(block) == 0
            assert isinstance(block, (nn.Identity, Subsample))
        else:
            assert isinstance(block, BasicBlock)
    # Stage 3 starts with a dropped block that strides: a subsample, channels unchanged.
    assert isinstance(blocks[7], Subsample)
    assert model.stage_channels == (32, 64, 64, 128)
    out = model.forward_features(torch.randn(B, 3, 32, 32))
    assert [s.shape[1:] for s in out.stages] == [
        (32, 32, 32),
        (64, 16, 16),
        (64, 8, 8),
        (128, 4, 4),
    ]
    assert out.logits.shape == (B, NUM_CLASSES)


def test_resnet_student_projection_only_where_width_or_stride_changes() -> None:
    widths = [16, 16, 32, 32, 32, 32, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64]
    blocks = _blocks(ResNetStudent(widths, NUM_CLASSES))
    projected = [i for i, b in enumerate(blocks) if not isinstance(b.shortcut, nn.Identity)]
    # Width changes at blocks 1 (16→32) and 5 (32→64); stride-2 stage starts at 3, 7 and 13.
    assert projected == [1, 3, 5, 7, 13]
    shortcut = blocks[1].shortcut
    assert isinstance(shortcut, nn.Sequential)
    assert isinstance(shortcut[0], nn.Conv2d) and shortcut[0].kernel_size == (1, 1)
    assert isinstance(shortcut[1], nn.BatchNorm2d)


def test_resnet_student_without_stem_feeds_the_image_to_the_blocks() -> None:
    model = ResNetStudent([0, 16] + [0] * 15, NUM_CLASSES)
    assert isinstance(model.stem, nn.Identity)
    first = _blocks(model)[0]
    assert isinstance(first, BasicBlock) and first.conv1.in_channels == 3
    assert model(torch.randn(B, 3, 32, 32)).shape == (B, NUM_CLASSES)
    stem_only = ResNetStudent([16] + [0] * 16, NUM_CLASSES)
    assert stem_only.feature_dim == 16
    assert stem_only(torch.randn(B, 3, 16, 16)).shape == (B, NUM_CLASSES)


def test_resnet_student_rejects_invalid_width_lists() -> None:
    with pytest.raises(ValueError, match="must not all be 0"):
        ResNetStudent([0] * 17, NUM_CLASSES)
    with pytest.raises(ValueError, match="needs 17 filter counts"):
        ResNetStudent([16] * 16, NUM_CLASSES)


# --- counters, determinism -----------------------------------------------------------------


def test_count_macs_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (3, 10, 10)) == 8 * 10 * 10 * (3 * 3 * 3)
    grouped = nn.Conv2d(4, 8, 3, stride=2, groups=2, bias=False)  # 9×9 → 4×4
    assert count_macs(grouped, (4, 9, 9)) == 8 * 4 * 4 * (2 * 3 * 3)
    linear = nn.Linear(5, 7)
    assert count_macs(linear, (5,)) == 5 * 7
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 3))
    assert count_macs(net, (1, 4, 4)) == 2 * 4 * 4 * 1 + 32 * 3


def test_count_macs_restores_training_flags() -> None:
    model = build_model("resnet20", NUM_CLASSES, width=SMALL)
    frozen_bn = model.stem[1]
    frozen_bn.eval()
    count_macs(model, (3, 32, 32))
    assert model.training and not frozen_bn.training
    assert all(m.training for m in model.stages.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_is_deterministic_and_init_is_seeded(name: str) -> None:
    def build(seed: int) -> StagedClassifier:
        torch.manual_seed(seed)
        return build_model(name, NUM_CLASSES, width=SMALL)

    first, second, other = build(0), build(0), build(1)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not all(
        torch.equal(value, other.state_dict()[key]) for key, value in first.state_dict().items()
    )
    first.eval()
    x = torch.randn(B, 3, 32, 32)
    torch.testing.assert_close(first(x), first(x), rtol=0, atol=0)


def test_the_torch_free_model_facts_match_the_registry() -> None:
    """``trainers/architectures.py`` states the zoo without torch for the config loader; the
    registry that builds the models must have exactly those names and stems."""
    from kdsweep.trainers import architectures
    from kdsweep.trainers.models import MODELS, STEM_MODELS

    assert tuple(MODELS) == architectures.MODEL_NAMES
    assert STEM_MODELS == architectures.STEM_MODELS
