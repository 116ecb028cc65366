"""Numeric tests of ``kdsweep.trainers.losses`` against values computed by hand.

Every expectation is computed with plain ``math`` (softmax, log, sums written out), never with
torch's own loss functions, so that a wrong reduction or a wrong KL direction cannot cancel out.
All tensors are float64 and compared at 1e-6 or tighter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch

from kdsweep.trainers.losses import (
    Gate,
    apply_gate,
    edge_loss_per_sample,
    kd_loss,
    label_kd_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
    self_distillation_loss,
)

TOL = 1e-9


def t64(values: Sequence[Sequence[float]] | Sequence[float], grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


# ---------------------------------------------------------------- hand arithmetic (plain math)


def softmax(z: Sequence[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in z]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p || q) = Σ_c p_c (log p_c − log q_c)."""
    return sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q, strict=True))


def ce(z: Sequence[float], label: int) -> float:
    return -math.log(softmax(z)[label])


def huber(x: float, beta: float) -> float:
    """PyTorch smooth-L1: 0.5 x² / β where |x| < β, else |x| − 0.5 β."""
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


# ------------------------------------------------------------------------------------- kd_loss

STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [1.0, 1.0, -2.0]]


def test_kd_loss_is_batchmean_not_element_mean() -> None:
    # T = 1: the value is Σ_n KL(p_t,n || p_s,n) / B; the element mean would divide by B·C = 6.
    kl_0 = kl(softmax(TEACHER[0]), softmax(STUDENT[0]))
    kl_1 = kl(softmax(TEACHER[1]), softmax(STUDENT[1]))
    batchmean = (kl_0 + kl_1) / 2
    element_mean = (kl_0 + kl_1) / 6
    assert batchmean - element_mean > 0.1  # the two reductions are far apart on this data
    value = kd_loss(t64(STUDENT), t64(TEACHER), 1.0)
    assert value.item() == pytest.approx(batchmean, abs=TOL)


def test_kd_loss_kl_direction_is_teacher_first() -> None:
    forward = sum(kl(softmax(TEACHER[n]), softmax(STUDENT[n])) for n in range(2)) / 2
    reverse = sum(kl(softmax(STUDENT[n]), softmax(TEACHER[n])) for n in range(2)) / 2
    assert abs(forward - reverse) > 1e-3
    assert kd_loss(t64(STUDENT), t64(TEACHER), 1.0).item() == pytest.approx(forward, abs=TOL)


def test_kd_loss_temperature_squared_factor() -> None:
    # At T = 4 the value is 16 × the batch-mean KL of the softened distributions.
    softened = (
        kl(softmax(TEACHER[0], 4.0), softmax(STUDENT[0], 4.0))
        + kl(softmax(TEACHER[1], 4.0), softmax(STUDENT[1], 4.0))
    ) / 2
    value = kd_loss(t64(STUDENT), t64(TEACHER), 4.0).item()
    assert value == pytest.approx(16.0 * softened, abs=TOL)
    assert value / softened == pytest.approx(16.0, rel=1e-12)


def test_kd_loss_detaches_teacher() -> None:
    student, teacher = t64(STUDENT, grad=True), t64(TEACHER, grad=True)
    kd_loss(student, teacher, 4.0).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_kd_loss_gradcheck() -> None:
    teacher = t64(TEACHER)
    student = t64(STUDENT, grad=True)
    assert torch.autograd.gradcheck(lambda s: kd_loss(s, teacher, 3.0), (student,))


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan])
def test_kd_loss_rejects_bad_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(t64(STUDENT), t64(TEACHER), temperature)


def test_kd_loss_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(t64(STUDENT), t64([row[:2] for row in TEACHER]), 1.0)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        kd_loss(t64(STUDENT[0]), t64(TEACHER[0]), 1.0)


# ------------------------------------------------------------------------------------------ RKD

# Student: three unit vectors; the triangle has angles 45° (at 0), 90° (at 1), 45° (at 2).
RKD_STUDENT = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
# Teacher for the distance tests: three unit vectors with three different pairwise distances.
RKD_TEACHER_DIST = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
# Teacher for the angle tests: an equilateral triangle (all angles 60°) in a wider, 3-D space.
RKD_TEACHER_EQ = [
    [math.cos(math.radians(a)), math.sin(math.radians(a)), 0.0] for a in (90.0, 210.0, 330.0)
]

# Student pair distances (0-1, 0-2, 1-2) and their mean over the non-zero entries.
S_DIST = (math.sqrt(2.0), 2.0, math.sqrt(2.0))
S_MEAN = (2.0 * math.sqrt(2.0) + 2.0) / 3.0


def expected_distance_vs_teacher_dist(beta: float) -> list[float]:
    """Per-pair normalised distance differences (student − teacher) for RKD_TEACHER_DIST."""
    # |(1,0)−(0,1)| = √2, |(1,0)−(0.6,0.8)| = √(0.16+0.64), |(0,1)−(0.6,0.8)| = √(0.36+0.04).
    t_dist = (math.sqrt(2.0), math.sqrt(0.8), math.sqrt(0.4))
    t_mean = sum(t_dist) / 3.0
    return [s / S_MEAN - t / t_mean for s, t in zip(S_DIST, t_dist, strict=True)]


def test_rkd_distance_mixed_huber_branches() -> None:
    # With β = 0.3 two pairs are in the linear branch and one in the quadratic branch.
    x01, x02, x12 = expected_distance_vs_teacher_dist(0.3)
    assert abs(x12) < 0.3 < min(abs(x01), abs(x02))
    # Each off-diagonal pair appears twice in the 3×3 matrix; the diagonal adds 0; mean over 9.
    expected = 2.0 * ((abs(x01) - 0.15) + (abs(x02) - 0.15) + 0.5 * x12 * x12 / 0.3) / 9.0
    value = rkd_distance_loss(t64(RKD_STUDENT), t64(RKD_TEACHER_DIST), 0.3)
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_rkd_distance_all_quadratic_below_beta() -> None:
    diffs = expected_distance_vs_teacher_dist(1.0)
    assert all(abs(x) < 1.0 for x in diffs)
    expected = 2.0 * sum(0.5 * x * x for x in diffs) / 9.0
    value = rkd_distance_loss(t64(RKD_STUDENT), t64(RKD_TEACHER_DIST), 1.0)
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_rkd_distance_all_linear_above_beta() -> None:
    diffs = expected_distance_vs_teacher_dist(0.1)
    assert all(abs(x) > 0.1 for x in diffs)
    expected = 2.0 * sum(abs(x) - 0.05 for x in diffs) / 9.0
    value = rkd_distance_loss(t64(RKD_STUDENT), t64(RKD_TEACHER_DIST), 0.1)
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_rkd_distance_normalises_by_mean_of_nonzero_distances() -> None:
    # Student points 0 and 1 coincide: distances 0, √2, √2. The mean of the non-zero entries
    # is √2 (the mean over all off-diagonal entries would be 2√2/3), so d_s = (0, 1, 1).
    student = t64([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], grad=True)
    # Teacher = RKD_STUDENT: distances √2, 2, √2 divided by their mean S_MEAN.
    t01, t02, t12 = (d / S_MEAN for d in S_DIST)
    expected = (
        2.0 * (huber(0.0 - t01, 1.0) + huber(1.0 - t02, 1.0) + huber(1.0 - t12, 1.0)) / 9.0
    )
    value = rkd_distance_loss(student, t64(RKD_STUDENT), 1.0)
    assert value.item() == pytest.approx(expected, abs=TOL)
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_rkd_l2_normalises_embeddings_first() -> None:
    # Rescaling each row leaves both losses unchanged: only directions are compared.
    scaled = t64([[2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]])
    for loss in (rkd_distance_loss, rkd_angle_loss):
        reference = loss(t64(RKD_STUDENT), t64(RKD_TEACHER_DIST), 0.5).item()
        assert loss(scaled, t64(RKD_TEACHER_DIST), 0.5).item() == pytest.approx(reference, abs=TOL)


def expected_angle_vs_teacher_eq(beta: float) -> float:
    """Hand value of the angle loss for RKD_STUDENT against the equilateral RKD_TEACHER_EQ."""
    # Per vertex j, the 4 triplets with i, k ≠ j give cos 0° = 1 twice (i = k, equal on both
    # sides) and cos θ_j twice (i ≠ k); triplets with i = j or k = j give 0 on both sides.
    student_angles = (45.0, 90.0, 45.0)
    teacher_angles = (60.0, 60.0, 60.0)
    total = sum(
        2.0 * huber(math.cos(math.radians(s)) - math.cos(math.radians(t)), beta)
        for s, t in zip(student_angles, teacher_angles, strict=True)
    )
    return total / 27.0  # mean over all 3³ triplets


def test_rkd_angle_mixed_huber_branches() -> None:
    # cos 45° − cos 60° ≈ 0.207 < 0.3 (quadratic); cos 90° − cos 60° = −0.5 (linear).
    x45 = math.sqrt(2.0) / 2.0 - 0.5
    expected = 2.0 * (2.0 * 0.5 * x45 * x45 / 0.3 + (0.5 - 0.15)) / 27.0
    assert expected == pytest.approx(expected_angle_vs_teacher_eq(0.3), abs=1e-15)
    value = rkd_angle_loss(t64(RKD_STUDENT), t64(RKD_TEACHER_EQ), 0.3)
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_rkd_angle_all_quadratic_below_beta() -> None:
    x45 = math.sqrt(2.0) / 2.0 - 0.5
    expected = 2.0 * (2.0 * 0.5 * x45 * x45 + 0.5 * 0.25) / 27.0
    value = rkd_angle_loss(t64(RKD_STUDENT), t64(RKD_TEACHER_EQ), 1.0)
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_rkd_loss_weights_and_betas() -> None:
    # Distances against the equilateral teacher: all teacher distances normalise to 1.
    dist_beta, angle_beta = 0.3, 1.0
    t_dist = sum(
        2.0 * huber(d / S_MEAN - 1.0, dist_beta) for d in S_DIST
    ) / 9.0
    expected = 25.0 * t_dist + 50.0 * expected_angle_vs_teacher_eq(angle_beta)
    value = rkd_loss(
        t64(RKD_STUDENT),
        t64(RKD_TEACHER_EQ),
        dist_weight=25.0,
        angle_weight=50.0,
        dist_beta=dist_beta,
        angle_beta=angle_beta,
    )
    assert value.item() == pytest.approx(expected, abs=1e-8)


def test_rkd_identical_geometry_gives_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    # Same directions, rescaled rows and zero-padded to a wider teacher embedding.
    teacher = torch.cat([student * 3.0, torch.zeros(5, 2, dtype=torch.float64)], dim=1)
    for same in (student.clone(), teacher):
        assert rkd_distance_loss(student, same, 0.5).item() == pytest.approx(0.0, abs=1e-12)
        assert rkd_angle_loss(student, same, 0.5).item() == pytest.approx(0.0, abs=1e-12)
        total = rkd_loss(
            student, same, dist_weight=25.0, angle_weight=50.0, dist_beta=1.0, angle_beta=1.0
        )
        assert total.item() == pytest.approx(0.0, abs=1e-10)


def test_rkd_detaches_teacher() -> None:
    student, teacher = t64(RKD_STUDENT, grad=True), t64(RKD_TEACHER_DIST, grad=True)
    rkd_loss(
        student, teacher, dist_weight=1.0, angle_weight=1.0, dist_beta=1.0, angle_beta=1.0
    ).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", [rkd_distance_loss, rkd_angle_loss])
def test_rkd_gradcheck(loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    teacher = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher, 0.5), (student,))


def test_rkd_rejects_bad_inputs() -> None:
    for loss in (rkd_distance_loss, rkd_angle_loss):
        with pytest.raises(ValueError, match="at least 2"):
            loss(t64([[1.0, 0.0]]), t64([[0.0, 1.0]]), 1.0)
        with pytest.raises(ValueError, match="batch sizes differ"):
            loss(t64(RKD_STUDENT), t64(RKD_STUDENT[:2]), 1.0)
        batched = torch.zeros(1, 3, 2, dtype=torch.float64)
        with pytest.raises(ValueError, match=r"\(B, D\)"):
            loss(batched, batched, 1.0)
        with pytest.raises(ValueError, match="beta"):
            loss(t64(RKD_STUDENT), t64(RKD_STUDENT), -0.1)


# ------------------------------------------------------------------------------ self-distillation

BYOT_LABELS = [0, 1]
DEEP_LOGITS = [[2.0, 0.0], [0.5, 1.5]]
DEEP_FEATURES = [[1.0, 2.0], [0.0, -1.0]]
HEAD_LOGITS = [[[1.0, 1.0], [0.0, 2.0]], [[3.0, -1.0], [1.0, 0.0]]]
HEAD_FEATURES = [[[0.5, 2.0], [1.0, -1.0]], [[1.0, 1.0], [0.0, 0.0]]]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_self_distillation_sums_heads_with_weights(reduction: str) -> None:
    temperature, h, i = 3.0, 0.5, 0.25
    expected = 0.0
    for logits, features in zip(HEAD_LOGITS, HEAD_FEATURES, strict=True):
        ce_term = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
        kl_term = (
            kl(softmax(DEEP_LOGITS[0], temperature), softmax(logits[0], temperature))
            + kl(softmax(DEEP_LOGITS[1], temperature), softmax(logits[1], temperature))
        ) / 2
        squares = [
            (f - g) ** 2
            for f_row, g_row in zip(features, DEEP_FEATURES, strict=True)
            for f, g in zip(f_row, g_row, strict=True)
        ]
        hint = sum(squares) if reduction == "sum" else sum(squares) / len(squares)
        expected += ce_term + h * temperature**2 * kl_term + i * hint
    value = self_distillation_loss(
        [t64(z) for z in HEAD_LOGITS],
        [t64(f) for f in HEAD_FEATURES],
        t64(DEEP_LOGITS),
        t64(DEEP_FEATURES),
        torch.tensor(BYOT_LABELS),
        temperature=temperature,
        kd_weight=h,
        feature_weight=i,
        feature_reduction=reduction,
    )
    assert value.item() == pytest.approx(expected, abs=TOL)


def test_self_distillation_hint_is_the_reference_sum_over_batch_and_features() -> None:
    """The feature hint alone (h = 0, CE and KL cancelled by comparing two values of i): the
    BYOT reference sums (F_k − F_deep)² over batch and features, so i = 1e-6 on B × D
    elements is not switched off by a mean."""
    # Head 0: (0.5−1)² + (2−2)² + (1−0)² + (−1+1)² = 1.25; head 1: 0 + 1 + 0 + 1 = 2.
    by_hand = 1.25 + 2.0
    args = ([t64(z) for z in HEAD_LOGITS], [t64(f) for f in HEAD_FEATURES], t64(DEEP_LOGITS), t64(DEEP_FEATURES), torch.tensor(BYOT_LABELS))

    def hint(**kw: object) -> float:
        with_i = self_distillation_loss(*args, temperature=3.0, kd_weight=0.0, feature_weight=1.0, **kw)
        without = self_distillation_loss(*args, temperature=3.0, kd_weight=0.0, feature_weight=0.0, **kw)
        return (with_i - without).item()

    assert hint() == pytest.approx(by_hand, abs=TOL)  # the default is the reference's sum
    assert hint(feature_reduction="mean") == pytest.approx(by_hand / 4, abs=TOL)  # B·D = 2·2
    with pytest.raises(ValueError, match="feature_reduction must be one of sum, mean, got 'max'"):
        self_distillation_loss(*args, temperature=3.0, kd_weight=0.0, feature_weight=1.0, feature_reduction="max")


def test_self_distillation_detaches_deepest_classifier() -> None:
    heads = [t64(z, grad=True) for z in HEAD_LOGITS]
    feats = [t64(f, grad=True) for f in HEAD_FEATURES]
    deep, deep_feats = t64(DEEP_LOGITS, grad=True), t64(DEEP_FEATURES, grad=True)
    self_distillation_loss(
        heads, feats, deep, deep_feats, torch.tensor(BYOT_LABELS),
        temperature=3.0, kd_weight=1.0, feature_weight=1.0,
    ).backward()
    assert deep.grad is None and deep_feats.grad is None
    assert all(t.grad is not None for t in heads + feats)


def test_self_distillation_rejects_feature_shape_mismatch() -> None:
    feats = [t64(HEAD_FEATURES[0]), t64([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])]
    with pytest.raises(ValueError, match=r"head 1 features have shape \(2, 3\).*\(2, 2\)"):
        self_distillation_loss(
            [t64(z) for z in HEAD_LOGITS], feats, t64(DEEP_LOGITS), t64(DEEP_FEATURES),
            torch.tensor(BYOT_LABELS), temperature=3.0, kd_weight=1.0, feature_weight=1.0,
        )


def test_self_distillation_rejects_bad_head_lists() -> None:
    args = (t64(DEEP_LOGITS), t64(DEEP_FEATURES), torch.tensor(BYOT_LABELS))
    with pytest.raises(ValueError, match="2 head logits but 1 head features"):
        self_distillation_loss(
            [t64(z) for z in HEAD_LOGITS], [t64(HEAD_FEATURES[0])], *args,
            temperature=3.0, kd_weight=1.0, feature_weight=1.0,
        )
    with pytest.raises(ValueError, match="at least one"):
        self_distillation_loss(
            [], [], *args, temperature=3.0, kd_weight=1.0, feature_weight=1.0
        )


# --------------------------------------------------------------------------------- label_kd_loss

LABELS = [1, 2]


def test_label_kd_loss_mixes_ce_and_kd() -> None:
    alpha, temperature = 0.9, 4.0
    ce_term = (ce(STUDENT[0], 1) + ce(STUDENT[1], 2)) / 2
    kl_term = (
        kl(softmax(TEACHER[0], 4.0), softmax(STUDENT[0], 4.0))
        + kl(softmax(TEACHER[1], 4.0), softmax(STUDENT[1], 4.0))
    ) / 2
    expected = alpha * ce_term + (1 - alpha) * 16.0 * kl_term
    value = label_kd_loss(
        t64(STUDENT), t64(TEACHER), torch.tensor(LABELS), alpha=alpha, temperature=temperature
    )
    assert value.item() == pytest.approx(expected, abs=TOL)
    # The end points are pure CE and pure KD.
    args = (t64(STUDENT), t64(TEACHER), torch.tensor(LABELS))
    pure_ce = label_kd_loss(*args, alpha=1.0, temperature=4.0)
    pure_kd = label_kd_loss(*args, alpha=0.0, temperature=4.0)
    assert pure_ce.item() == pytest.approx(ce_term, abs=TOL)
    assert pure_kd.item() == pytest.approx(16.0 * kl_term, abs=TOL)
    # The reference code's reading puts α on the KD term: (1 − α)·CE + α·T²·KL.
    on_kd = label_kd_loss(*args, alpha=alpha, temperature=temperature, alpha_on="kd")
    assert on_kd.item() == pytest.approx((1 - alpha) * ce_term + alpha * 16.0 * kl_term, abs=TOL)
    with pytest.raises(ValueError, match="alpha_on must be one of ce, kd, got 'both'"):
        label_kd_loss(*args, alpha=alpha, temperature=temperature, alpha_on="both")


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan])
def test_label_kd_loss_rejects_alpha_out_of_range(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        label_kd_loss(
            t64(STUDENT), t64(TEACHER), torch.tensor(LABELS), alpha=alpha, temperature=4.0
        )


def test_label_kd_loss_rejects_label_shape() -> None:
    with pytest.raises(ValueError, match="labels"):
        label_kd_loss(t64(STUDENT), t64(TEACHER), torch.tensor([1]), alpha=0.5, temperature=4.0)


# ---------------------------------------------------------------------------------- graph gates


def test_edge_loss_from_label_node_is_per_sample_ce() -> None:
    value = edge_loss_per_sample(t64(STUDENT), None, torch.tensor(LABELS))
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx([ce(STUDENT[0], 1), ce(STUDENT[1], 2)], abs=TOL)


def test_edge_loss_from_model_is_per_sample_kl_source_first() -> None:
    target, source = t64(STUDENT, grad=True), t64(TEACHER, grad=True)
    value = edge_loss_per_sample(target, source, torch.tensor(LABELS))
    expected = [kl(softmax(TEACHER[n]), softmax(STUDENT[n])) for n in range(2)]
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx(expected, abs=TOL)
    value.sum().backward()
    assert source.grad is None  # p_s detached: gradients reach only the destination
    assert target.grad is not None


def test_edge_loss_at_temperature_is_t_squared_softened_kl() -> None:
    # seed 004's Table 2 KD (T = 2): T²·KL(p_s^T || p_t^T) per sample; the label edge ignores T.
    value = edge_loss_per_sample(t64(STUDENT), t64(TEACHER), torch.tensor(LABELS), temperature=2.0)
    expected = [4.0 * kl(softmax(TEACHER[n], 2.0), softmax(STUDENT[n], 2.0)) for n in range(2)]
    assert value.tolist() == pytest.approx(expected, abs=TOL)
    label = edge_loss_per_sample(t64(STUDENT), None, torch.tensor(LABELS), temperature=2.0)
    assert label.tolist() == pytest.approx([ce(STUDENT[0], 1), ce(STUDENT[1], 2)], abs=TOL)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        edge_loss_per_sample(t64(STUDENT), t64(TEACHER), torch.tensor(LABELS), temperature=0.0)


PER_SAMPLE = [0.5, 1.0, 2.0]
SOURCE = [[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]]  # top-1 classes: 0, 1, 0


def gate(name: Gate | str, *, step: int = 5, total: int = 10, source: bool = True,
         labels: Sequence[int] = (0, 0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    loss = t64(PER_SAMPLE, grad=True)
    value = apply_gate(
        name, loss, step=step, total_steps=total,
        source_logits=t64(SOURCE) if source else None, labels=torch.tensor(list(labels)),
    )
    return loss, value


def test_gate_through_is_batch_mean() -> None:
    _, value = gate(Gate.THROUGH)
    assert value.item() == pytest.approx((0.5 + 1.0 + 2.0) / 3, abs=TOL)


def test_gate_cutoff_is_exact_zero_with_valid_backward() -> None:
    loss, value = gate("cutoff")
    assert value.item() == 0.0
    assert value.requires_grad
    value.backward()
    assert loss.grad is not None and loss.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("step", "total", "factor"), [(3, 12, 0.25), (0, 12, 0.0), (12, 12, 1.0)])
def test_gate_linear_scales_by_step_fraction(step: int, total: int, factor: float) -> None:
    loss, value = gate(Gate.LINEAR, step=step, total=total)
    assert value.item() == pytest.approx(factor * 3.5 / 3, abs=TOL)
    value.backward()
    assert loss.grad is not None
    assert loss.grad.tolist() == pytest.approx([factor / 3] * 3, abs=TOL)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [((0, 0, 1), 0.5 / 3), ((0, 1, 1), (0.5 + 1.0) / 3), ((1, 0, 1), 0.0), ((0, 1, 0), 3.5 / 3)],
)
def test_gate_correct_masks_wrong_sources_and_averages_over_batch(
    labels: tuple[int, int, int], expected: float
) -> None:
    loss, value = gate(Gate.CORRECT, labels=labels)
    assert value.item() == pytest.approx(expected, abs=TOL)
    value.backward()
    correct = [float(top1 == y) for top1, y in zip((0, 1, 0), labels, strict=True)]
    assert loss.grad is not None
    assert loss.grad.tolist() == pytest.approx([c / 3 for c in correct], abs=TOL)


def test_gate_correct_on_label_edge_is_through() -> None:
    _, value = gate("correct", source=False, labels=(1, 1, 1))
    assert value.item() == pytest.approx(3.5 / 3, abs=TOL)


def test_gates_compose_with_edge_loss() -> None:
    # A full edge: per-sample KL, correct gate; the source is right on sample 0 only.
    target, source = t64(STUDENT), t64(TEACHER)  # teacher top-1: 0, 0
    labels = torch.tensor([0, 2])
    per_sample = edge_loss_per_sample(target, source, labels)
    value = apply_gate(
        Gate.CORRECT, per_sample, step=1, total_steps=2, source_logits=source, labels=labels
    )
    assert value.item() == pytest.approx(kl(softmax(TEACHER[0]), softmax(STUDENT[0])) / 2, abs=TOL)


@pytest.mark.parametrize(("step", "total"), [(-1, 10), (11, 10), (0, 0), (0, -5)])
def test_gate_rejects_bad_schedule(step: int, total: int) -> None:
    with pytest.raises(ValueError, match="step"):
        gate(Gate.LINEAR, step=step, total=total)


def test_gate_rejects_unknown_name_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="unknown gate 'open'; valid: through, cutoff, linear"):
        gate("open")
    with pytest.raises(ValueError, match=r"per_sample_loss must be \(B,\)"):
        apply_gate(Gate.THROUGH, t64([[1.0]]), step=0, total_steps=1, source_logits=None,
                   labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="labels"):
        gate(Gate.CORRECT, labels=(0, 1))
