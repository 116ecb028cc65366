"""Loss-weights trainer: a student distilled three ways at once, the nine weights searched.

METHODS.md §1 (seed 000): with a frozen, pretrained teacher,

    L = f_ce·CE(z_s, y) + a·L_KD + b·L_RKD + c·L_SKD
    L_KD  = T²·KL(p_t^T || p_s^T)                               (T = kd_temperature)
    L_RKD = d·Huber_f(ψ_D) + e·Huber_g(ψ_A)                     (penultimate embeddings)
    L_SKD = Σ_heads CE + h·T_s²·KL(p_deep || p_k) + i·Σ(F_k − F_deep)²  (BYOT heads, stages 1–3)

The feature hint is summed over batch and features (``settings.hint_reduction = "sum"``), as
the public BYOT re-implementation whose defaults are the seed's baseline computes it; "mean"
makes the baseline's i = 1e-6 about 65 000× weaker at batch 128 (B·D = 128·512 elements),
i.e. switches it off. The student is torchvision's ResNet18 form by default
(``settings.stem = "imagenet"``: 7×7 stride-2 conv + max-pool, as the seed ran it); "cifar"
is the 3×3 stride-1 stem of the CIFAR re-implementations.

Each of a..i comes from the trial's parameters when searched, else from ``[settings]`` (whose
defaults are the seed's research baseline), so the "parallel" experiment (a = b = c = 1 fixed,
six inner weights searched) is a sweep file, not a code path. The self-distillation heads are
training-only: evaluation and any latency measure use the plain student.

Measured claim (2026-11-22, 2-core CPU, one torch thread per trial, quiet machine): the
embedded demo (``search_spaces/demo.toml``: digits 16×16, ResNet18 ×0.25 student, ResNet18
×0.5 teacher trained for 10 epochs, batch 32, 14 trials, ASHA rungs 1/3/9, 2 in flight) runs
end to end with ``kdsweep launch`` in 2 min 18 s including the teacher, ~3 s per student
epoch; the best searched student reached val_acc 1.000 against the baseline's 0.993 and the
teacher's 0.993. Resuming from a rung checkpoint is bit-exact on CPU
(``tests/trainers/test_loss_weights.py``). Data-path throughput: ``benchmarks/train_throughput.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from kdsweep.trainers.base import Training, TrialContext
from kdsweep.trainers.data import DataSettings, load_data, uses_flip
from kdsweep.trainers.loss_weights_spec import WEIGHTS, LossWeightsSettings
from kdsweep.trainers.losses import kd_loss, rkd_loss, self_distillation_loss
from kdsweep.trainers.models import STEM_MODELS, HeadOutput, ModelOutput, SelfDistillationHeads, build_model
from kdsweep.trainers.teachers import load_teacher
from kdsweep.trainers.training import Device, StepSchedule, evaluate_classifier, make_optimizer, seeded, train_batches

class LossTerms(NamedTuple):
    """The loss of one batch and its parts (float32 scalars): ``total`` = f_ce·ce + a·kd +
    b·rkd + c·skd, where ``rkd`` and ``skd`` already carry their inner weights d..i."""

    total: Tensor
    ce: Tensor
    kd: Tensor
    rkd: Tensor
    skd: Tensor


def combined_loss(w: Mapping[str, float], s: LossWeightsSettings, student: ModelOutput, teacher: ModelOutput, heads: Sequence[HeadOutput], labels: Tensor) -> LossTerms:
    """METHODS.md §1's loss of a batch under weights ``w`` (a..i) and settings ``s``, from the
    student's and teacher's ``forward_features`` and the self-distillation heads' outputs.

    The losses run in float32: softmax at T = 4 and relational distances lose too much in
    bf16, and they are cheap next to the convolutions. The teacher is detached inside the
    loss functions.
    """
    logits, emb = student.logits.float(), student.embedding.float()
    ce = F.cross_entropy(logits, labels)
    kd = kd_loss(logits, teacher.logits.float(), s.kd_temperature)
    rkd = rkd_loss(emb, teacher.embedding.float(), dist_weight=w["d"], angle_weight=w["e"], dist_beta=w["f"], angle_beta=w["g"])
    skd = self_distillation_loss(
        [h.logits.float() for h in heads], [h.feature.float() for h in heads], logits, emb, labels,
        temperature=s.skd_temperature, kd_weight=w["h"], feature_weight=w["i"], feature_reduction=s.hint_reduction,
    )  # fmt: skip
    total = s.f_ce * ce + w["a"] * kd + w["b"] * rkd + w["c"] * skd
    return LossTerms(total, ce, kd, rkd, skd)


class LossWeightsTrainer(Training):
    """One student trained with CE + KD + RKD + self-distillation under weights a..i."""

    def __init__(self, params: Mapping[str, Any], settings: LossWeightsSettings, ctx: TrialContext) -> None:
        unknown = set(params) - set(WEIGHTS)
        if unknown:
            raise ValueError(f"loss_weights searches only {', '.join(WEIGHTS)}; unknown parameters {sorted(unknown)}")
        self.s = settings
        self.w = {name: float(params.get(name, getattr(settings, name))) for name in WEIGHTS}
        self.device = Device(ctx.device, settings)
        data_settings: DataSettings = ctx.data
        self.data = load_data(data_settings, self.device.torch)
        self.teacher = load_teacher(settings, data_settings, self.device, self.data)
        num_classes = self.data.num_classes
        stem = {"stem": settings.stem} if settings.student in STEM_MODELS else {}
        student = seeded(ctx.seed, lambda: build_model(settings.student, num_classes, settings.student_width, **stem))
        heads = seeded(ctx.seed + 1, lambda: SelfDistillationHeads.for_student(student, tuple(settings.head_kernels)))
        self.student = self.device.model(student)
        self.heads = self.device.model(heads)
        self.generator = torch.Generator(device=self.data.train.x.device).manual_seed(ctx.seed)
        self.batches = train_batches(self.data.train, settings, self.generator, augment=data_settings.augment, flip=uses_flip(data_settings))
        self.optimizer = make_optimizer(list(self.student.parameters()) + list(self.heads.parameters()), settings)
        self.schedule = StepSchedule(self.optimizer, settings, ctx.budget_epochs * len(self.batches))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        w, s, dev = self.w, self.s, self.device
        self.student.train()
        self.heads.train()
        sums = dict.fromkeys(("loss", "ce", "kd", "rkd", "skd"), 0.0)
        n = 0
        for x, y in self.batches:
            x = dev.batch(x)
            with dev.autocast():
                out = self.student.forward_features(x)
                with torch.no_grad():
                    t = self.teacher.model.forward_features(x)
                heads = self.heads(out.stages)
            terms = combined_loss(w, s, out, t, heads, y)
            self.optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            self.optimizer.step()
            self.schedule.step()
            for key, value in zip(("loss", "ce", "kd", "rkd", "skd"), terms, strict=True):
                sums[key] += float(value.detach())
            n += 1
        return {f"train_{k}": v / max(1, n) for k, v in sums.items()}

    def evaluate(self) -> dict[str, float]:
        val = evaluate_classifier(self.student, self.data.val, self.device)
        self.val_correct = val.correct
        return {"val_acc": val.acc, "val_loss": val.loss, "teacher_val_acc": float(self.teacher.info["val_acc"])}

    def test(self) -> dict[str, float]:
        test = evaluate_classifier(self.student, self.data.test, self.device)
        return {"test_acc": test.acc, "test_loss": test.loss}

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.heads.load_state_dict(state["heads"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
