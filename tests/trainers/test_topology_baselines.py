"""Seed 002's baseline students are the fixed points of the topology sweep files: the VGG16
teacher with every filter count halved (its Table 1) in the VGG form, torchvision's ResNet18
(its Table 2) in the ResNet form. Both lie inside the searched space, so the searcher is told
their J like any trial's."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from kdsweep.orchestrator.config import load_sweep
from kdsweep.trainers.models import count_macs, count_parameters
from kdsweep.trainers.student_topology import build_student, filters_of


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", ["student_topology_vgg", "student_topology_vgg_seed"])
def test_the_vgg_files_evaluate_vgg16_at_half_width_first(name: str) -> None:
    cfg = load_sweep(name, ["data.dataset=digits"])
    (point,) = cfg.points_to_evaluate
    assert all(spec.contains(point[spec.name]) for spec in cfg.space)
    # torchvision's VGG16 (configuration D) on the meta device: its widths, no weights built.
    with torch.device("meta"):
        teacher = torchvision.models.vgg16()
    widths = [c.out_channels for c in convs(teacher.features)]
    assert len(widths) == 13
    student = build_student("vgg", filters_of(point, "vgg"), num_classes=10)
    assert [c.out_channels for c in convs(student)] == [w // 2 for w in widths]
    assert [c.in_channels for c in convs(student)] == [3] + [w // 2 for w in widths[:-1]]
    assert all(c.kernel_size == (3, 3) for c in convs(student))


def test_the_resnet_file_evaluates_torchvision_resnet18_first() -> None:
    cfg = load_sweep("student_topology_resnet", ["data.dataset=digits"])
    (point,) = cfg.points_to_evaluate
    assert all(spec.contains(point[spec.name]) for spec in cfg.space)
    student = build_student("resnet", filters_of(point, "resnet"), num_classes=10, stem=cfg.settings.stem)
    reference = torchvision.models.resnet18(num_classes=10)
    assert count_parameters(student) == count_parameters(reference) == 11_181_642
    assert count_macs(student, [3, 32, 32]) == count_macs(reference, [3, 32, 32])

    def shapes(model: nn.Module) -> list[tuple[int, int, int, int]]:
        return sorted((c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs(model))

    assert shapes(student) == shapes(reference)
