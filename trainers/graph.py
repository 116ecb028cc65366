"""The knowledge-transfer graph of the graph-gates trainer, as plain data (METHODS.md §3).

Pure Python, no torch: the config loader (space generation, validation), the report and the
trainer share it. Nodes are numbered as in the seed: 0 is the label, 1 the target model whose
accuracy is optimised, 2..M the auxiliary models. Every ordered pair (s, t) with s ∈ 0..M,
t ∈ 1..M, s ≠ t is an edge carrying one gate; a graph of M nodes has M² edges.

A trial's parameters name the graph (``param_names``): ``model_2``..``model_M`` (node 1's
model is the sweep's ``settings.target`` and is not searched) and ``gate_S_T`` for the edge
S → T, e.g. ``gate_0_1`` (label → target) or ``gate_2_1`` (node 2 → target).

A node whose incoming edges are all cut learns nothing during the trial: it is a pretrained,
frozen model from the teacher cache. A frozen target is an invalid configuration
(``Graph.invalid_reason``), rejected before training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kdsweep.orchestrator.space import missing_and_unknown

#: Node 0: the ground-truth label, a source only.
LABEL = 0
#: Node 1: the model whose validation accuracy the sweep maximises.
TARGET = 1
MIN_NODES, MAX_NODES = 2, 5
#: The gate functions, as ``kdsweep.trainers.losses.Gate`` spells them (a test keeps the two equal).
GATES: tuple[str, ...] = ("through", "cutoff", "linear", "correct")
CUTOFF = "cutoff"
THROUGH = "through"
#: The fixed reference graphs a sweep can run before its searched ones (``baseline``).
BASELINES: tuple[str, ...] = ("all_through", "kd", "plain", "kd_t2", "dml")
#: The baselines a sweep runs unless its ``[space]`` says otherwise: the seed's own graphs.
DEFAULT_BASELINES: tuple[str, ...] = ("all_through", "kd", "plain")
#: The training recipe a baseline's name promises beyond its graph, as ``[settings]`` fields
#: and their required values (``recipe_issues``): KD at T = 2 and DML (peers averaged) are
#: seed 004's Table 2 rows; the graph-form KD and all-through graph are its eqs. 1-2 (T = 1,
#: edges summed). Gates cannot express a temperature or a mean over peers, and every trial of
#: a sweep shares its settings, so a sweep runs either kind of each pair, not both.
RECIPES: dict[str, dict[str, object]] = {
    "kd": {"kd_temperature": 1.0},
    "kd_t2": {"kd_temperature": 2.0},
    "all_through": {"peer_kl": "sum"},
    "dml": {"peer_kl": "mean"},
    "plain": {},
}
#: One character per gate for the adjacency matrix of ``draw``.
_SYMBOL = {"through": "T", "linear": "L", "correct": "C", "cutoff": "."}

Edge = tuple[int, int]


def model_param(node: int) -> str:
    """The parameter naming node ``node``'s model (nodes 2..M; node 1 is not searched)."""
    return f"model_{node}"


def gate_param(source: int, target: int) -> str:
    """The parameter naming the gate of edge ``source`` → ``target``."""
    return f"gate_{source}_{target}"


def edges(nodes: int) -> tuple[Edge, ...]:
    """Every edge of a graph of ``nodes`` models, by destination then source (M² of them)."""
    return tuple((s, t) for t in range(1, nodes + 1) for s in range(nodes + 1) if s != t)


def param_names(nodes: int) -> tuple[str, ...]:
    """The trial parameters of a graph of ``nodes`` models: M − 1 models, then M² gates."""
    return tuple(model_param(k) for k in range(2, nodes + 1)) + tuple(gate_param(s, t) for s, t in edges(nodes))


@dataclasses.dataclass(frozen=True)
class SpaceOptions:
    """The scalar keys of a graph-gates sweep's ``[space]`` table.

    ``nodes`` is M (2..5). ``baselines`` are run as fixed trials before the searched ones
    (any of ``BASELINES``, see ``baseline``). ``baseline_models[k - 2]`` is node k's model in
    those baselines; the default puts ResNet110 at node 2, the seed's KD teacher (Table 2:
    ResNet110*), so that the ``kd`` and ``kd_t2`` baselines distil from the seed's KD teacher
    and ``all_through`` / ``dml`` pair the target with the same strong model first. Only the
    first M − 1 entries are used.
    """

    nodes: int = 3
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    baseline_models: tuple[str, ...] = ("resnet110", "wrn28_2", "resnet32", "resnet110")


@dataclasses.dataclass(frozen=True)
class Graph:
    """One knowledge-transfer graph: ``models[k - 1]`` is node k's model, ``gates[(s, t)]``
    the gate of edge s → t, for exactly the edges of ``edges(len(models))``.

    Construction validates the node count, the edge set and the gate names (``ValueError``);
    a graph whose target is frozen is constructible (the report draws rejected proposals too)
    and is flagged by ``invalid_reason``.
    """

    models: tuple[str, ...]
    gates: Mapping[Edge, str]

    def __post_init__(self) -> None:
        m = len(self.models)
        if not MIN_NODES <= m <= MAX_NODES:
            raise ValueError(f"a graph has {MIN_NODES} to {MAX_NODES} nodes, got {m}")
        expected = set(edges(m))
        if set(self.gates) != expected:
            missing = sorted(expected - set(self.gates))
            extra = sorted(set(self.gates) - expected)
            raise ValueError(f"gates of a {m}-node graph: missing edges {missing}, unknown edges {extra}")
        bad = {e: g for e, g in self.gates.items() if g not in GATES}
        if bad:
            raise ValueError(f"unknown gates {bad}; valid: {', '.join(GATES)}")

    @property
    def nodes(self) -> int:
        """M, the number of models."""
        return len(self.models)

    def model(self, node: int) -> str:
        return self.models[node - 1]

    def incoming(self, node: int) -> tuple[tuple[int, str], ...]:
        """``(source, gate)`` of every non-cut edge into ``node``, by source."""
        return tuple((s, self.gates[(s, node)]) for s in range(self.nodes + 1) if s != node and self.gates[(s, node)] != CUTOFF)

    def outgoing(self, node: int) -> tuple[tuple[int, str], ...]:
        """``(destination, gate)`` of every non-cut edge out of ``node``, by destination."""
        return tuple((t, self.gates[(node, t)]) for t in range(1, self.nodes + 1) if t != node and self.gates[(node, t)] != CUTOFF)

    @property
    def frozen(self) -> frozenset[int]:
        """Nodes whose incoming edges are all cut: pretrained models that never change."""
        return frozenset(k for k in range(1, self.nodes + 1) if not self.incoming(k))

    @property
    def trainable(self) -> tuple[int, ...]:
        """Nodes that learn during the trial, ascending."""
        return tuple(k for k in range(1, self.nodes + 1) if k not in self.frozen)

    @property
    def running(self) -> tuple[int, ...]:
        """Nodes that must run: the trainable ones and the frozen ones that feed an edge.
        Every non-cut edge ends at a trainable node, so a frozen node with an outgoing edge
        is needed and one without is not (it is never loaded)."""
        return tuple(k for k in range(1, self.nodes + 1) if k not in self.frozen or self.outgoing(k))

    def invalid_reason(self) -> str | None:
        """Why this graph cannot be trained (its target is frozen), or None."""
        if TARGET in self.frozen:
            cut = ", ".join(gate_param(s, TARGET) for s in range(self.nodes + 1) if s != TARGET)
            return f"every edge into the target node 1 is cut ({cut} = cutoff): it would be a frozen pretrained model, not trained"
        return None

    def to_params(self) -> dict[str, str]:
        """The trial parameters naming this graph (``param_names`` order)."""
        out = {model_param(k): self.model(k) for k in range(2, self.nodes + 1)}
        out.update({gate_param(s, t): self.gates[(s, t)] for s, t in edges(self.nodes)})
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], target_model: str) -> Graph:
        """The graph a trial's parameters name; node 1 runs ``target_model``.

        M is 1 + the number of ``model_K`` parameters; the parameters must then be exactly
        ``param_names(M)`` (``ValueError`` listing the missing and unknown ones otherwise).
        """
        nodes = 1 + sum(1 for name in params if name.startswith("model_"))
        if not MIN_NODES <= nodes <= MAX_NODES:
            raise ValueError(f"parameters name {nodes} nodes (model_2..model_M); a graph has {MIN_NODES} to {MAX_NODES}")
        expected = param_names(nodes)
        missing, unknown = missing_and_unknown(params, expected)
        if missing or unknown:
            raise ValueError(
                f"parameters of a {nodes}-node graph are {', '.join(expected)}; missing {missing}, unknown {unknown}"
                + (" (node 1's model is settings.target, not a parameter)" if model_param(TARGET) in unknown else "")
            )
        models = (target_model, *(str(params[model_param(k)]) for k in range(2, nodes + 1)))
        return cls(models, {(s, t): str(params[gate_param(s, t)]) for s, t in edges(nodes)})

    def baseline_kind(self, kd_temperature: float = 1.0, peer_kl: str = "sum") -> str | None:
        """Which of ``BASELINES`` this graph is, whatever its models, trained with the sweep's
        ``settings.kd_temperature`` and ``settings.peer_kl`` (``RECIPES``), or None.

        - ``all_through`` (edges summed) / ``dml`` (peers averaged): every gate is through.
        - ``kd`` (T = 1) / ``kd_t2`` (T = 2): the only non-cut edges are label → 1 and one other
          node → 1, both through (that node is then frozen: a pretrained teacher).
        - ``plain``: the only non-cut edge is label → 1, through.

        A graph of those shapes under other settings is no baseline (None).
        """
        live = {e: g for e, g in self.gates.items() if g != CUTOFF}
        shape: tuple[str, ...]
        if all(g == THROUGH for g in self.gates.values()):
            shape = ("all_through", "dml")
        elif any(t != TARGET or g != THROUGH for (_, t), g in live.items()) or (LABEL, TARGET) not in live:
            return None
        else:
            shape = {1: ("plain",), 2: ("kd", "kd_t2")}.get(len(live), ())
        settings = {"kd_temperature": kd_temperature, "peer_kl": peer_kl}
        return next((kind for kind in shape if all(settings[k] == v for k, v in RECIPES[kind].items())), None)


def baseline(kind: str, target_model: str, others: Sequence[str]) -> Graph:
    """The reference graph ``kind`` (one of ``BASELINES``) with node 1 = ``target_model`` and
    nodes 2..M = ``others`` (M = 1 + len(others)):

    - ``all_through``: every edge through (all nodes train together, DML plus label edges).
    - ``dml``: the same graph, for a sweep whose ``peer_kl = "mean"`` (``RECIPES``): every node
      trained with its label and the mean KL from its M − 1 peers, as deep mutual learning.
    - ``kd``: label → 1 and 2 → 1 through, every other edge cut: node 2 is a frozen pretrained
      teacher (KL at T = 1), nodes 3..M are frozen and unused.
    - ``kd_t2``: the same graph, for a sweep whose ``kd_temperature = 2``: Hinton KD at T = 2
      from the pretrained node 2 (seed 004's Table 2 row, ResNet110*).
    - ``plain``: label → 1 through only: the target trained alone with cross-entropy.
    """
    nodes = 1 + len(others)
    live: dict[Edge, str]
    if kind in ("all_through", "dml"):
        live = dict.fromkeys(edges(nodes), THROUGH)
    elif kind in ("kd", "kd_t2"):
        live = {(LABEL, TARGET): THROUGH, (2, TARGET): THROUGH}
    elif kind == "plain":
        live = {(LABEL, TARGET): THROUGH}
    else:
        raise ValueError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")
    return Graph((target_model, *others), {e: live.get(e, CUTOFF) for e in edges(nodes)})


#: Why a recipe is a setting, for the error messages.
RECIPE_NOTE = "a temperature or peer averaging is a setting of the whole sweep; run kd_t2 and dml in a sweep of their own, e.g. graph_gates_table2.toml"


def recipe_issues(baselines: Sequence[str], settings: Mapping[str, object]) -> list[tuple[str, object, str]]:
    """``(field, value, allowed)`` for every ``[settings]`` field whose value contradicts a
    listed baseline's recipe (``RECIPES``): a ``kd_t2`` baseline needs ``kd_temperature = 2``,
    so it cannot run beside ``kd`` in one sweep. ``settings`` maps the field names to values."""
    issues: list[tuple[str, object, str]] = []
    for kind in baselines:
        for field, wanted in RECIPES.get(kind, {}).items():
            if settings[field] != wanted:
                issues.append((f"settings.{field}", settings[field], f"{wanted!r} for the {kind} baseline listed in space.baselines ({RECIPE_NOTE})"))
    return issues



def option_issues(options: SpaceOptions, models: Sequence[str]) -> list[tuple[str, object, str]]:
    """Every bad ``[space]`` option as ``(field, value, allowed)``; ``models`` are the
    searchable ones (``settings.models``), which the baselines' models must be among."""
    issues: list[tuple[str, object, str]] = []
    if not MIN_NODES <= options.nodes <= MAX_NODES:
        issues.append(("space.nodes", options.nodes, f"an integer from {MIN_NODES} to {MAX_NODES} (the target and 1 to 4 auxiliary models)"))
    unknown = [b for b in options.baselines if b not in BASELINES]
    if unknown or len(set(options.baselines)) != len(options.baselines):
        issues.append(("space.baselines", list(options.baselines), f"distinct names among {', '.join(BASELINES)} (may be empty)"))
    used = options.baseline_models[: max(0, options.nodes - 1)]
    if options.baselines and (len(used) < options.nodes - 1 or any(m not in models for m in used)):
        issues.append((
            "space.baseline_models", list(options.baseline_models),
            f"at least nodes - 1 = {options.nodes - 1} models for nodes 2.., each one of settings.models ({', '.join(models)})",
        ))  # fmt: skip
    return issues


def generate(
    options: SpaceOptions, target_model: str, models: Sequence[str], recipe: Mapping[str, object] | None = None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """The searched parameters for ``options.nodes`` (a model choice among ``models`` per
    auxiliary node, a choice of ``GATES`` per edge) and the baselines as fixed points.

    ``recipe`` holds the sweep's ``kd_temperature`` and ``peer_kl`` (default: the seed's 1.0
    and "sum"), which the listed baselines must agree with (``recipe_issues``). Raises
    ``ValueError(field, value, allowed)`` for the first bad option, the form the config
    loader reports.
    """
    recipe = recipe if recipe is not None else {"kd_temperature": 1.0, "peer_kl": "sum"}
    issues = option_issues(options, models) or recipe_issues(options.baselines, recipe)
    if issues:
        raise ValueError(*issues[0])
    params: dict[str, dict[str, Any]] = {model_param(k): {"type": "choice", "values": list(models)} for k in range(2, options.nodes + 1)}
    params.update({gate_param(s, t): {"type": "choice", "values": list(GATES)} for s, t in edges(options.nodes)})
    others = options.baseline_models[: options.nodes - 1]
    points = [baseline(kind, target_model, others).to_params() for kind in options.baselines]
    return params, points


def draw(graph: Graph) -> str:
    """A terminal drawing of ``graph``: the nodes with their models and roles, the gate
    matrix (row = source, column = destination), and the non-cut edges spelled out."""
    m = graph.nodes
    width = max(len("label"), *(len(x) for x in graph.models))

    def name(node: int) -> str:
        return f"{node} {'label' if node == LABEL else graph.model(node)}"

    def role(node: int) -> str:
        if node == TARGET:
            return "target (frozen: invalid)" if node in graph.frozen else "target"
        if node in graph.frozen:
            return "frozen, pretrained" if graph.outgoing(node) else "frozen, unused"
        return "trained"

    lines = [f"knowledge-transfer graph, {m} nodes"]
    lines += [f"  {name(k):<{width + 2}}  {'' if k == LABEL else role(k)}".rstrip() for k in range(m + 1)]
    lines.append("gates (row: source, column: destination; T through, L linear, C correct, . cut)")
    lines.append("     " + "".join(f"{t:>3}" for t in range(1, m + 1)))
    for s in range(m + 1):
        cells = ("-" if s == t else _SYMBOL[graph.gates[(s, t)]] for t in range(1, m + 1))
        lines.append(f"  {s:>2} " + "".join(f"{c:>3}" for c in cells))
    live = [(s, t) for s, t in edges(m) if graph.gates[(s, t)] != CUTOFF]
    lines.append("edges" if live else "edges: none (every gate is cutoff)")
    lines += [f"  {name(s):<{width + 2}} -> {name(t):<{width + 2}}  {graph.gates[(s, t)]}" for s, t in live]
    return "\n".join(lines)
