"""Loss functions of the three search dimensions, exactly as ``METHODS.md`` states them.

Pure tensor functions, no modules: the trainers compute model outputs and pass them here.
Notation follows ``METHODS.md``: ``p^T = softmax(z / T)`` and ``KL(p || q) = Σ_c p_c (log p_c −
log q_c)``. Every KL divergence is summed over classes and averaged over the batch
(``reduction="batchmean"``); PyTorch's element-mean default would silently divide by the class
count as well. Teacher / source / deepest-classifier outputs are detached inside the functions,
so a caller cannot leak gradients into a teacher by forgetting ``.detach()``.

Shapes: logits are ``(B, C)``, labels ``(B,)`` integer class ids, embeddings ``(B, D)``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from kdsweep.trainers.settings import HINT_REDUCTIONS, AlphaOn, HintReduction

__all__ = [
    "HINT_REDUCTIONS",
    "AlphaOn",
    "Gate",
    "HintReduction",
    "apply_gate",
    "edge_loss_per_sample",
    "kd_loss",
    "label_kd_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "rkd_loss",
    "self_distillation_loss",
]




def _check_logits_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(student_logits.shape)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )


def _check_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"labels must be (B,) = ({logits.shape[0]},), got shape {tuple(labels.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    # Written as a negated comparison so that NaN is rejected too.
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton KD: ``T² · KL(p_t^T || p_s^T)``, a scalar.

    ``student_logits`` and ``teacher_logits`` are ``(B, C)``. The KL is summed over the C
    classes and averaged over the B samples (``batchmean``). The T² factor keeps the gradient
    magnitude independent of T. The teacher is detached: no gradient reaches it.
    """
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    # The target as log-probabilities (log_target=True) avoids log(0) for saturated teachers.
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _check_embedding_pair(student_emb: Tensor, teacher_emb: Tensor) -> None:
    for name, emb in (("student", student_emb), ("teacher", teacher_emb)):
        if emb.ndim != 2:
            raise ValueError(f"{name} embeddings must be (B, D), got shape {tuple(emb.shape)}")
    # RKD compares relations, not coordinates, so the embedding widths may differ.
    if student_emb.shape[0] != teacher_emb.shape[0]:
        raise ValueError(
            f"student and teacher batch sizes differ: {student_emb.shape[0]} vs "
            f"{teacher_emb.shape[0]}"
        )
    if student_emb.shape[0] < 2:
        raise ValueError(f"RKD needs at least 2 samples per batch, got {student_emb.shape[0]}")


def _check_beta(beta: float) -> None:
    if not beta >= 0.0:
        raise ValueError(f"Huber beta must be >= 0, got {beta}")


def _normalised_distances(emb: Tensor) -> Tensor:
    """``(B, B)`` distances of the L2-normalised rows, divided by their mean non-zero entry."""
    unit = F.normalize(emb, p=2.0, dim=1)
    # Differences and a norm rather than the Gram-matrix identity: exact zeros on the diagonal
    # (and for coincident points), where the norm's backward gives 0 instead of the NaN/inf
    # that sqrt of a clamped Gram expression would.
    dist = torch.linalg.vector_norm(unit.unsqueeze(0) - unit.unsqueeze(1), dim=2)
    # Zeros (diagonal, coincident points) add nothing to the sum, so the sum over all entries
    # divided by the count of positive ones is the mean of the non-zero distances.
    mean_nonzero = dist.sum() / (dist > 0).sum().clamp_min(1)
    # If every point coincides the mean is 0; the clamp keeps the distances 0 instead of NaN.
    normalised: Tensor = dist / mean_nonzero.clamp_min(torch.finfo(dist.dtype).tiny)
    return normalised


def rkd_distance_loss(student_emb: Tensor, teacher_emb: Tensor, beta: float) -> Tensor:
    """RKD distance loss (Park et al. 2019), a scalar.

    ``student_emb`` ``(B, Ds)`` and ``teacher_emb`` ``(B, Dt)`` (widths may differ, B >= 2) are
    L2-normalised per row; ``d_ij = ||e_i − e_j||`` on each side is divided by the mean of that
    side's non-zero distances (the diagonal and coincident points are excluded from the mean).
    The loss is ``smooth_l1(d_s, d_t, beta)`` averaged over all B² entries of the distance
    matrix, the zero diagonal included, as in the reference implementation. The teacher side is
    computed without gradient.
    """
    _check_embedding_pair(student_emb, teacher_emb)
    _check_beta(beta)
    with torch.no_grad():
        teacher_dist = _normalised_distances(teacher_emb)
    student_dist = _normalised_distances(student_emb)
    return F.smooth_l1_loss(student_dist, teacher_dist, reduction="mean", beta=beta)


def _triplet_cosines(emb: Tensor) -> Tensor:
    """``(B, B, B)`` cosines ``[j, i, k] = ⟨u(e_i − e_j), u(e_k − e_j)⟩``, ``u = F.normalize``."""
    unit = F.normalize(emb, p=2.0, dim=1)
    # F.normalize maps a zero difference (i == j) to the zero vector, so degenerate triplets
    # give cosine 0 on both sides instead of NaN.
    directions = F.normalize(unit.unsqueeze(0) - unit.unsqueeze(1), p=2.0, dim=2)
    return torch.bmm(directions, directions.transpose(1, 2))


def rkd_angle_loss(student_emb: Tensor, teacher_emb: Tensor, beta: float) -> Tensor:
    """RKD angle loss (Park et al. 2019), a scalar.

    ``student_emb`` ``(B, Ds)`` and ``teacher_emb`` ``(B, Dt)`` (B >= 2) are L2-normalised per
    row; for every ordered triplet (i, j, k) the cosine of the angle at vertex j,
    ``ψ_ijk = ⟨(e_i − e_j)/|e_i − e_j|, (e_k − e_j)/|e_k − e_j|⟩``, is taken (0 where a
    difference is zero). The loss is ``smooth_l1(ψ_s, ψ_t, beta)`` averaged over all B³
    triplets, degenerate ones included, as in the reference implementation. The teacher side
    is computed without gradient.
    """
    _check_embedding_pair(student_emb, teacher_emb)
    _check_beta(beta)
    with torch.no_grad():
        teacher_cos = _triplet_cosines(teacher_emb)
    student_cos = _triplet_cosines(student_emb)
    return F.smooth_l1_loss(student_cos, teacher_cos, reduction="mean", beta=beta)


def rkd_loss(
    student_emb: Tensor,
    teacher_emb: Tensor,
    *,
    dist_weight: float,
    angle_weight: float,
    dist_beta: float,
    angle_beta: float,
) -> Tensor:
    """``L_RKD = d · L_dist(beta=f) + e · L_angle(beta=g)``, a scalar (METHODS.md, section 1)."""
    return dist_weight * rkd_distance_loss(
        student_emb, teacher_emb, dist_beta
    ) + angle_weight * rkd_angle_loss(student_emb, teacher_emb, angle_beta)


def self_distillation_loss(
    head_logits: Sequence[Tensor],
    head_features: Sequence[Tensor],
    deep_logits: Tensor,
    deep_features: Tensor,
    labels: Tensor,
    *,
    temperature: float,
    kd_weight: float,
    feature_weight: float,
    feature_reduction: HintReduction = "sum",
) -> Tensor:
    """BYOT self-distillation loss, a scalar (METHODS.md, section 1):

    ``Σ_k [CE(z_k, y) + h·T²·KL(p_deep^T || p_k^T) + i·Σ((F_k − F_deep)²)]``.

    ``head_logits[k]`` is ``(B, C)`` like ``deep_logits``; ``head_features[k]`` must have
    exactly the shape of ``deep_features`` (any shape). CE is averaged over the batch, the KL
    is ``batchmean`` (as in :func:`kd_loss`). The feature hint is reduced by
    ``feature_reduction``: ``"sum"`` (default) sums the squares over the batch and every
    feature, as the public "Be Your Own Teacher" re-implementation does, whose defaults
    (h = 0.1, i = 1e-6, T = 3) are seed 000's baseline; ``"mean"`` averages them, which makes
    the same ``i`` B·D times weaker (about 65 000× at B = 128, D = 512). ``h`` is
    ``kd_weight``, ``i`` is ``feature_weight``. The deepest classifier's logits and features
    are the teacher and are detached; its own CE is not part of this term (the trainer's
    ``f_ce · CE`` covers it). Returns a scalar summed (not averaged) over heads.
    """
    if feature_reduction not in HINT_REDUCTIONS:
        raise ValueError(f"feature_reduction must be one of {', '.join(HINT_REDUCTIONS)}, got {feature_reduction!r}")
    if len(head_logits) != len(head_features):
        raise ValueError(
            f"{len(head_logits)} head logits but {len(head_features)} head features"
        )
    if not head_logits:
        raise ValueError("self-distillation needs at least one shallow head")
    _check_labels(deep_logits, labels)
    deep_features = deep_features.detach()
    terms: list[Tensor] = []
    for k, (logits, features) in enumerate(zip(head_logits, head_features, strict=True)):
        if features.shape != deep_features.shape:
            raise ValueError(
                f"head {k} features have shape {tuple(features.shape)}, deepest features "
                f"{tuple(deep_features.shape)}"
            )
        terms.append(
            F.cross_entropy(logits, labels)
            + kd_weight * kd_loss(logits, deep_logits, temperature)
            + feature_weight * F.mse_loss(features, deep_features, reduction=feature_reduction)
        )
    return torch.stack(terms).sum()


def label_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float,
    alpha_on: AlphaOn = "ce",
) -> Tensor:
    """Topology-trainer loss, a scalar: with ``alpha_on = "ce"`` (seed 002's eq. 3 as printed)
    ``α·CE(z_s, y) + (1 − α)·T²·KL(p_t^T || p_s^T)``; with ``alpha_on = "kd"`` (the widely
    used Hinton-KD reference code, which puts α on the distillation term)
    ``(1 − α)·CE(z_s, y) + α·T²·KL(p_t^T || p_s^T)``. At the seed's α = 0.9 the two differ
    by which term dominates.

    CE is averaged over the batch; the KL term is :func:`kd_loss` (``batchmean``, teacher
    detached). ``alpha`` must lie in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha_on not in get_args(AlphaOn):
        raise ValueError(f"alpha_on must be one of {', '.join(get_args(AlphaOn))}, got {alpha_on!r}")
    _check_labels(student_logits, labels)
    ce_weight = alpha if alpha_on == "ce" else 1.0 - alpha
    return ce_weight * F.cross_entropy(student_logits, labels) + (1.0 - ce_weight) * kd_loss(
        student_logits, teacher_logits, temperature
    )


def edge_loss_per_sample(
    target_logits: Tensor, source_logits: Tensor | None, labels: Tensor, temperature: float = 1.0
) -> Tensor:
    """Per-sample loss ``ℓ`` of one graph edge s → t, shape ``(B,)`` (METHODS.md, section 3).

    With ``source_logits is None`` (s = 0, the label node) ``ℓ_n = CE(z_t(x_n), y_n)``;
    otherwise ``ℓ_n = T²·KL(p_s^T(x_n) || p_t^T(x_n))`` summed over classes, with ``p_s``
    detached so that gradients reach only the destination. The seed's edges use T = 1 (the
    plain KL); a larger T is Hinton's softened KD, the T² keeping the gradient scale. The
    label edge ignores ``temperature``. Not reduced over the batch: the gate acts per sample
    (:func:`apply_gate`).
    """
    _check_labels(target_logits, labels)
    if source_logits is None:
        return F.cross_entropy(target_logits, labels, reduction="none")
    _check_logits_pair(target_logits, source_logits)
    _check_temperature(temperature)
    log_p_t = F.log_softmax(target_logits / temperature, dim=1)
    log_p_s = F.log_softmax(source_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_t, log_p_s, reduction="none", log_target=True).sum(dim=1)
    return kl * temperature**2


class Gate(str, enum.Enum):
    """The four gate functions of the knowledge-transfer graph."""

    THROUGH = "through"
    CUTOFF = "cutoff"
    LINEAR = "linear"
    CORRECT = "correct"


def apply_gate(
    gate: Gate | str,
    per_sample_loss: Tensor,
    *,
    step: int,
    total_steps: int,
    source_logits: Tensor | None,
    labels: Tensor,
) -> Tensor:
    """Gate ``G(ℓ)`` applied per sample to ``per_sample_loss`` ``(B,)``, then averaged over B.

    - ``through``: ``ℓ``.
    - ``cutoff``: exactly 0, returned as ``per_sample_loss.sum() * 0.0`` rather than a detached
      constant: it stays on the autograd graph, so a node total made of any mix of gates can
      always be ``backward()``-ed (giving zero gradients) without special-casing, and a
      non-finite ``ℓ`` still surfaces as NaN instead of being hidden by the cut.
    - ``linear``: ``(step / total_steps) · ℓ``, with ``0 <= step <= total_steps`` and
      ``total_steps > 0`` (``step`` = optimisation steps so far).
    - ``correct``: ``ℓ`` where the source's top-1 class equals the label, 0 elsewhere; the
      mean is over the whole batch (masked samples count as zeros). On the label edge
      (``source_logits is None``) it equals ``through``.

    ``step`` and ``total_steps`` are validated whatever the gate, so that a caller's schedule
    bug surfaces on the first edge rather than only on linear ones. Returns a scalar.
    """
    try:
        gate = Gate(gate)
    except ValueError:
        raise ValueError(
            f"unknown gate {gate!r}; valid: {', '.join(g.value for g in Gate)}"
        ) from None
    if per_sample_loss.ndim != 1:
        raise ValueError(
            f"per_sample_loss must be (B,), got shape {tuple(per_sample_loss.shape)}"
        )
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    if gate is Gate.THROUGH:
        return per_sample_loss.mean()
    if gate is Gate.CUTOFF:
        return per_sample_loss.sum() * 0.0
    if gate is Gate.LINEAR:
        return (step / total_steps) * per_sample_loss.mean()
    if source_logits is None:
        return per_sample_loss.mean()
    _check_labels(source_logits, labels)
    if labels.shape != per_sample_loss.shape:
        raise ValueError(
            f"per_sample_loss {tuple(per_sample_loss.shape)} and labels "
            f"{tuple(labels.shape)} differ in batch size"
        )
    correct = source_logits.argmax(dim=1) == labels
    return (per_sample_loss * correct).mean()
