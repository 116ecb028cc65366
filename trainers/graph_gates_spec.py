"""The graph-gates trainer's description (no torch): settings, generated space, checks and
metrics. The training is ``trainers/graph_gates.py`` (METHODS.md §3, seed 004)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from kdsweep.orchestrator.config import SEED_RANGE, is_seed
from kdsweep.trainers.architectures import MODEL_NAMES
from kdsweep.trainers.base import GeneratedSpace, Issue, TrainerSpec
from kdsweep.trainers.data_settings import DataSettings, check_data
from kdsweep.trainers.graph import MAX_NODES, Graph, generate
from kdsweep.trainers.graph import SpaceOptions as GraphSpaceOptions
from kdsweep.trainers.settings import SGDSettings, check_cache, check_sgd

#: Per-node metric columns, for every node a graph may have (the schema is fixed whatever M).
NODE_METRICS = tuple(f"node{k}_{m}" for m in ("train_loss", "val_acc", "test_acc") for k in range(1, MAX_NODES + 1))


@dataclasses.dataclass(frozen=True)
class GraphGatesSettings(SGDSettings):
    """The seed's recipe (CIFAR-100, batch 64, SGD lr 0.1 Nesterov, ×0.1 at 30/60/90% of the
    schedule) and the models: node 1 runs ``target``, nodes 2..M one of ``models`` each, all at
    channel multiplier ``width`` (below 1 for digits). Frozen nodes are trained once per
    architecture by the teacher cache for ``frozen_epochs`` with seed ``frozen_seed``."""

    nesterov: bool = True
    schedule: Literal["cosine", "step"] = "step"
    batch_size: int = 64
    target: str = "resnet32"
    models: tuple[str, ...] = ("resnet32", "resnet110", "wrn28_2")
    width: float = 1.0
    frozen_epochs: int = 200
    frozen_seed: int = 0
    #: T of the KL edges whose source is a frozen, pretrained node (T²·KL at T; the seed's
    #: graphs: 1; its Table 2 KD: 2, the ``kd_t2`` baseline).
    kd_temperature: float = 1.0
    #: How a node's gated KL edges combine: "sum" (the seed's eq. 2) or "mean" over them
    #: (deep mutual learning, the ``dml`` baseline). The label edge is always added in full.
    peer_kl: Literal["sum", "mean"] = "sum"
    #: Teacher cache directory (default: $KDSWEEP_CACHE/teachers or ~/.cache/kdsweep/teachers).
    teacher_cache: str | None = None


class GraphGates(TrainerSpec):
    """The models of one knowledge-transfer graph, trained together; the target's accuracy is
    the sweep metric."""

    Settings: ClassVar[type] = GraphGatesSettings
    Data: ClassVar[type | None] = DataSettings
    SpaceOptions: ClassVar[type | None] = GraphSpaceOptions
    training: ClassVar[str] = "kdsweep.trainers.graph_gates:GraphGatesTrainer"
    teachers: ClassVar[str | None] = "kdsweep.trainers.graph_gates:prepare_frozen"
    report_section: ClassVar[str | None] = "kdsweep.trainers.graph_report"

    @classmethod
    def metric_names(cls, settings: Any) -> Sequence[str]:
        return ("train_loss", "val_acc", "val_loss", "test_acc", "test_loss", *NODE_METRICS)

    @classmethod
    def generate_space(cls, options: GraphSpaceOptions, settings: GraphGatesSettings) -> GeneratedSpace:
        """A model choice per auxiliary node and a gate choice per edge for ``options.nodes``,
        with ``options.baselines`` as fixed points (``graph.generate``; ``ValueError(field,
        value, allowed)`` for a bad option)."""
        params, points = generate(options, settings.target, settings.models, {"kd_temperature": settings.kd_temperature, "peer_kl": settings.peer_kl})
        return GeneratedSpace(params=params, points=points)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], settings: GraphGatesSettings) -> str | None:
        """Why ``params`` name no trainable graph (malformed, an unknown model, a frozen target), or None."""
        try:
            graph = Graph.from_params(params, settings.target)
        except ValueError as exc:
            return str(exc)
        unknown = [m for m in graph.models[1:] if m not in settings.models]
        if unknown:
            return f"models {unknown} are not among settings.models ({', '.join(settings.models)})"
        return graph.invalid_reason()

    @classmethod
    def validate(cls, settings: GraphGatesSettings, data: DataSettings, space: Sequence[Any], objective: object = None) -> list[Issue]:
        """Cross-field checks run by the config loader before anything is written: the data,
        the models (in the registry), the width and epochs. (The space is always generated:
        the loader refuses parameter tables in ``[space]`` for a trainer with options.)"""
        issues = check_data(data) + check_sgd(settings) + check_cache(settings.teacher_cache)
        registry = ", ".join(sorted(MODEL_NAMES))
        if settings.target not in MODEL_NAMES:
            issues.append(("settings.target", settings.target, f"a registered model: {registry}"))
        if not settings.models or any(m not in MODEL_NAMES for m in settings.models) or len(set(settings.models)) != len(settings.models):
            issues.append(("settings.models", list(settings.models), f"distinct registered models: {registry}"))
        if not (math.isfinite(settings.width) and settings.width > 0):
            issues.append(("settings.width", settings.width, "a finite channel multiplier > 0"))
        if settings.frozen_epochs < 1:
            issues.append(("settings.frozen_epochs", settings.frozen_epochs, "an integer >= 1 (epochs of a frozen node's pretraining)"))
        if not is_seed(settings.frozen_seed):
            issues.append(("settings.frozen_seed", settings.frozen_seed, SEED_RANGE))
        if not (math.isfinite(settings.kd_temperature) and settings.kd_temperature > 0):
            issues.append(("settings.kd_temperature", settings.kd_temperature, "a finite temperature > 0 (1: the seed's graphs; 2: its Table 2 KD)"))
        return issues
