"""Graph-gates trainer: M models learn together along a knowledge-transfer graph whose every
edge carries a gated loss, the graph searched (METHODS.md §3, seed 004).

With node 0 the label and nodes 1..M the models (node 1 the target, ``graph.py``), the loss of
node t on a batch is

    L_t = Σ_{s ≠ t} G_{s,t}(ℓ_{s,t}),   ℓ_{s,t} = CE(z_t, y) for s = 0, else KL(p_s || p_t) at T = 1

with the gate G (through, cutoff, linear, correct) applied per sample, then averaged over the
batch (``losses.apply_gate``). Two settings reach beyond the seed's graphs, for its Table 2
baselines (``graph.RECIPES``): ``kd_temperature`` softens the KL edges out of frozen,
pretrained nodes to T²·KL(p_s^T || p_t^T) (``kd_t2``: T = 2), and ``peer_kl = "mean"``
averages a node's KL edges over its sources instead of summing them (``dml``: deep mutual
learning's 1/(M − 1)); their defaults (1, "sum") are the seed's eqs. 1-2. All nodes see the same batch; each trainable node has its own
SGD optimiser and step schedule and steps on every batch; p_s is detached, so the gradient of
L_t reaches node t only. The linear gate's c / c_end is the optimisation step so far over the
steps of the whole schedule (``ctx.budget_epochs`` epochs). A node whose incoming edges are
all cut is frozen: a model of its architecture trained with cross-entropy by the teacher cache
(``frozen_epochs`` epochs, this sweep's SGD recipe), in eval mode, never updated; one that
feeds no edge is not even loaded. A graph whose target is frozen is rejected before training
(``check_params``).

Measured claim (2026-11-22, 2-core CPU shared with two other jobs, one torch thread per
trial): on digits 16×16 at width 0.25, batch 64 (20 steps per epoch), one cross-entropy epoch
of a single node takes 0.63 s for ResNet32, 2.1 s for ResNet110 and 0.70 s for WRN-28-2, and a
3-node all-through graph of the three 4.0 s. The issue's experiment (``graph_gates.toml`` with
``data.dataset=digits``, ``settings.width=0.25``, ``settings.frozen_epochs=16``,
``asha.max_epochs=16``, 33 trials = the 3 baselines + 30 random graphs, 2 in flight) ran end to
end in 8 min 19 s with the frozen nodes' pretraining, 144 epochs where 528 would run without
ASHA. Retrained 3× for 16 epochs (``kdsweep retrain``), the target's test accuracy was: KD
baseline (the leader) 0.977 ± 0.010, best searched graph 0.964 ± 0.017, plain 0.969 ± 0.003,
all-through 0.672 ± 0.408 (its ResNet110 node stayed at chance, val 0.09-0.18, in all three
runs, and the target it feeds through a KL edge ended at 0.18, 0.96 and 0.83). The search found no graph better than KD at this scale:
its validation split is 144 images, so the search's 0.986 for the best graph fell to 0.965 on
retraining. Resuming from a checkpoint is bit-exact on CPU (``tests/trainers/test_graph_gates.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from kdsweep.trainers.base import Training, TrialContext
from kdsweep.trainers.data import DataSettings, load_data, uses_flip
from kdsweep.trainers.graph import LABEL, TARGET, Graph
from kdsweep.trainers.graph_gates_spec import NODE_METRICS, GraphGates, GraphGatesSettings
from kdsweep.trainers.losses import apply_gate, edge_loss_per_sample
from kdsweep.trainers.models import StagedClassifier, build_model
from kdsweep.trainers.teachers import TeacherSpec, cache_root, get_teacher
from kdsweep.trainers.training import Device, Evaluation, SGDSettings, StepSchedule, evaluate_classifier, make_optimizer, seeded, train_batches

def node_loss(
    graph: Graph, node: int, logits: Mapping[int, Tensor], labels: Tensor, *, step: int, total_steps: int,
    kd_temperature: float = 1.0, peer_kl: str = "sum",
) -> Tensor:  # fmt: skip
    """``L_t`` of trainable ``node``: the gated label edge plus the gated KL edges into it,
    the latter summed (``peer_kl = "sum"``, the seed's eq. 2) or averaged (``"mean"``, DML).

    ``logits[k]`` are node k's float32 ``(B, C)`` outputs for every node feeding ``node`` and
    for ``node`` itself; sources are detached inside ``edge_loss_per_sample``, so only
    ``logits[node]`` receives gradient. KL edges out of a frozen node are taken at
    ``kd_temperature`` (T²·KL at T), the others at T = 1. ``step`` / ``total_steps`` is the
    linear gate's c / c_end.
    """
    label_terms: list[Tensor] = []
    kl_terms: list[Tensor] = []
    for source, gate in graph.incoming(node):
        source_logits = None if source == LABEL else logits[source]
        temperature = kd_temperature if source in graph.frozen else 1.0
        per_sample = edge_loss_per_sample(logits[node], source_logits, labels, temperature)
        term = apply_gate(gate, per_sample, step=step, total_steps=total_steps, source_logits=source_logits, labels=labels)
        (label_terms if source == LABEL else kl_terms).append(term)
    parts = [torch.stack(label_terms).sum()] if label_terms else []
    if kl_terms:
        kl = torch.stack(kl_terms).sum()
        parts.append(kl / len(kl_terms) if peer_kl == "mean" else kl)
    if not parts:
        raise ValueError(f"node {node} has every incoming edge cut: it is frozen, it has no loss")
    return torch.stack(parts).sum()


def frozen_spec(settings: GraphGatesSettings, data: DataSettings, arch: str) -> TeacherSpec:
    """The teacher-cache entry of a frozen node of architecture ``arch``."""
    # The frozen nodes are pretrained with the sweep's own SGD recipe (the seed pretrains
    # them like the graph trains), so the cache entry depends on exactly those fields.
    sgd = SGDSettings(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(SGDSettings)})
    return TeacherSpec(data=data, arch=arch, width=settings.width, epochs=settings.frozen_epochs, seed=settings.frozen_seed, sgd=sgd)


def prepare_frozen(settings: GraphGatesSettings, data: DataSettings, device: str) -> list[dict[str, Any]]:
    """The ``teachers`` hook (``TrainerSpec.prepare_teachers``): every model a frozen node
    may run — any of ``settings.models``, as the target is never frozen — pretrained into the
    teacher cache if no one has, and its cache entry info."""
    dev, cache = Device(device, settings), cache_root(settings.teacher_cache)
    return [get_teacher(frozen_spec(settings, data, arch), dev, cache).info for arch in settings.models]


class GraphGatesTrainer(Training):
    """The models of one knowledge-transfer graph, trained together; the target's accuracy is
    the sweep metric."""

    def __init__(self, params: Mapping[str, Any], settings: GraphGatesSettings, ctx: TrialContext) -> None:
        reason = GraphGates.check_params(params, settings)
        if reason is not None:
            raise ValueError(reason)
        self.s = settings
        self.graph = Graph.from_params(params, settings.target)
        self.device = Device(ctx.device, settings)
        data_settings: DataSettings = ctx.data
        self.data = load_data(data_settings, self.device.torch)
        self.generator = torch.Generator(device=self.data.train.x.device).manual_seed(ctx.seed)
        self.batches = train_batches(self.data.train, settings, self.generator, augment=data_settings.augment, flip=uses_flip(data_settings))
        self.total_steps = ctx.budget_epochs * len(self.batches)
        #: Optimisation steps taken so far (the linear gate's c).
        self.step = 0
        self.nets: dict[int, StagedClassifier] = {}
        self.optimizers: dict[int, torch.optim.SGD] = {}
        self.schedules: dict[int, StepSchedule] = {}
        for k in self.graph.running:
            if k in self.graph.frozen:
                self.nets[k] = get_teacher(frozen_spec(settings, data_settings, self.graph.model(k)), self.device, cache_root(settings.teacher_cache), self.data).model
                continue
            # One seed per node: models of the same architecture start from different weights.
            build = functools.partial(build_model, self.graph.model(k), self.data.num_classes, settings.width)
            self.nets[k] = self.device.model(seeded(ctx.seed + k, build))
            self.optimizers[k] = make_optimizer(self.nets[k].parameters(), settings)
            self.schedules[k] = StepSchedule(self.optimizers[k], settings, self.total_steps)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        dev, graph = self.device, self.graph
        trainable = graph.trainable
        sources = [k for k in graph.running if k in graph.frozen]
        for k in trainable:
            self.nets[k].train()
        sums = dict.fromkeys(trainable, 0.0)
        batches = 0
        for x, y in self.batches:
            x = dev.batch(x)
            with dev.autocast():
                out = {k: self.nets[k](x) for k in trainable}
                with torch.no_grad():
                    out.update({k: self.nets[k](x) for k in sources})
            # Losses in float32: bf16 log-softmax differences are too coarse for KL terms.
            logits = {k: v.float() for k, v in out.items()}
            losses = {
                t: node_loss(graph, t, logits, y, step=self.step, total_steps=self.total_steps, kd_temperature=self.s.kd_temperature, peer_kl=self.s.peer_kl)
                for t in trainable
            }  # fmt: skip
            for k in trainable:
                self.optimizers[k].zero_grad(set_to_none=True)
            # One backward of the sum: every L_t depends on node t's parameters only.
            torch.stack(list(losses.values())).sum().backward()
            for k in trainable:
                self.optimizers[k].step()
                self.schedules[k].step()
            self.step += 1
            for k, loss in losses.items():
                sums[k] += float(loss.detach())
            batches += 1
        means = {f"node{k}_train_loss": v / max(1, batches) for k, v in sums.items()}
        return {"train_loss": means[f"node{TARGET}_train_loss"], **means}

    def _scores(self, split_name: Literal["val", "test"]) -> dict[int, Evaluation]:
        split = self.data.val if split_name == "val" else self.data.test
        return {k: evaluate_classifier(net, split, self.device) for k, net in self.nets.items()}

    def evaluate(self) -> dict[str, float]:
        """``val_acc``/``val_loss`` of the target, and ``nodeK_val_acc`` of every node that runs."""
        scores = self._scores("val")
        self.val_correct = scores[TARGET].correct
        return {"val_acc": scores[TARGET].acc, "val_loss": scores[TARGET].loss, **{f"node{k}_val_acc": v.acc for k, v in scores.items()}}

    def test(self) -> dict[str, float]:
        """``test_acc``/``test_loss`` of the target, and ``nodeK_test_acc`` of every node that runs."""
        scores = self._scores("test")
        return {"test_acc": scores[TARGET].acc, "test_loss": scores[TARGET].loss, **{f"node{k}_test_acc": v.acc for k, v in scores.items()}}

    def state_dict(self) -> dict[str, Any]:
        """Every trainable node's model, optimiser and schedule, the step count and the data
        generator; frozen nodes come back from the teacher cache."""
        nodes = {
            f"node{k}": {"model": self.nets[k].state_dict(), "optimizer": self.optimizers[k].state_dict(), "schedule": self.schedules[k].state_dict()}
            for k in self.graph.trainable
        }
        return {"nodes": nodes, "step": self.step, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {f"node{k}" for k in self.graph.trainable}
        if set(state["nodes"]) != expected:
            raise ValueError(f"checkpoint holds {sorted(state['nodes'])}, this graph trains {sorted(expected)}")
        for k in self.graph.trainable:
            node = state["nodes"][f"node{k}"]
            self.nets[k].load_state_dict(node["model"])
            self.optimizers[k].load_state_dict(node["optimizer"])
            self.schedules[k].load_state_dict(node["schedule"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
