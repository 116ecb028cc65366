"""The knowledge-transfer graph as data: parameter naming, frozen nodes, the generated space,
the baselines and their predicate, the drawing — and that none of it (nor the report) needs torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdsweep.trainers.graph import (
    CUTOFF,
    DEFAULT_BASELINES,
    GATES,
    RECIPE_NOTE,
    Graph,
    SpaceOptions,
    baseline,
    draw,
    edges,
    gate_param,
    generate,
    option_issues,
    recipe_issues,
)

MODELS = ("resnet32", "resnet110", "wrn28_2")
OTHERS = ("resnet110", "wrn28_2", "resnet32", "resnet110")


def test_gate_names_are_the_loss_module_s() -> None:
    from kdsweep.trainers.losses import Gate

    assert set(GATES) == {g.value for g in Gate}


@pytest.mark.parametrize("nodes", [2, 3, 4, 5])
def test_generated_space_has_m_squared_gates_and_m_minus_1_models(nodes: int) -> None:
    params, points = generate(SpaceOptions(nodes=nodes), "resnet32", MODELS)
    gates = [n for n in params if n.startswith("gate_")]
    models = [n for n in params if n.startswith("model_")]
    assert len(gates) == nodes**2 and len(edges(nodes)) == nodes**2
    assert models == [f"model_{k}" for k in range(2, nodes + 1)]
    assert all(params[n] == {"type": "choice", "values": list(GATES)} for n in gates)
    assert all(params[n] == {"type": "choice", "values": list(MODELS)} for n in models)
    # Each baseline is a full point of the space, trainable, and recognised as what it is.
    assert len(points) == len(DEFAULT_BASELINES)
    for kind, point in zip(DEFAULT_BASELINES, points, strict=True):
        assert set(point) == set(params)
        assert all(point[n] in params[n]["values"] for n in point)
        graph = Graph.from_params(point, "resnet32")
        assert graph.invalid_reason() is None
        assert graph.baseline_kind() == kind


def test_baselines_have_the_documented_shape() -> None:
    kd = baseline("kd", "resnet32", OTHERS[:2])
    assert kd.frozen == {2, 3} and kd.trainable == (1,) and kd.running == (1, 2)
    assert kd.incoming(1) == ((0, "through"), (2, "through"))
    plain = baseline("plain", "resnet32", OTHERS[:2])
    assert plain.running == (1,) and plain.incoming(1) == ((0, "through"),)
    through = baseline("all_through", "resnet32", OTHERS[:2])
    assert through.frozen == set() and through.running == (1, 2, 3)
    assert all(g == "through" for g in through.gates.values())


def test_from_params_round_trips_and_names_what_is_wrong() -> None:
    graph = baseline("all_through", "resnet32", OTHERS[:3])
    params = {**graph.to_params(), gate_param(3, 1): "linear", gate_param(0, 2): "correct"}
    again = Graph.from_params(params, "resnet32")
    assert again.to_params() == params and again.nodes == 4 and again.model(1) == "resnet32"
    with pytest.raises(ValueError, match="missing \\['gate_0_1'\\]"):
        Graph.from_params({k: v for k, v in params.items() if k != "gate_0_1"}, "resnet32")
    with pytest.raises(ValueError, match="settings.target"):
        Graph.from_params({**params, "model_1": "resnet32"}, "resnet32")
    with pytest.raises(ValueError, match="2 to 5"):
        Graph.from_params({"gate_0_1": "through"}, "resnet32")
    with pytest.raises(ValueError, match="unknown gates"):
        Graph.from_params({**params, "gate_2_3": "sometimes"}, "resnet32")


def test_a_node_with_every_incoming_edge_cut_is_frozen_and_a_frozen_target_is_invalid() -> None:
    graph = baseline("all_through", "resnet32", OTHERS[:2])
    params = graph.to_params()
    for s in (0, 2, 3):
        params[gate_param(s, 1)] = CUTOFF
    frozen_target = Graph.from_params(params, "resnet32")
    assert 1 in frozen_target.frozen
    reason = frozen_target.invalid_reason()
    assert reason is not None and "target node 1" in reason and "gate_0_1, gate_2_1, gate_3_1" in reason
    # One live edge into the target is enough to train it, even from a model, not the label.
    params[gate_param(3, 1)] = "linear"
    assert Graph.from_params(params, "resnet32").invalid_reason() is None


def test_baseline_predicate_ignores_models_but_not_gates() -> None:
    kd = baseline("kd", "resnet32", OTHERS[:3]).to_params()
    # KD from node 3 instead of node 2 is still KD.
    moved = {**kd, gate_param(2, 1): CUTOFF, gate_param(3, 1): "through", "model_2": "resnet32"}
    assert Graph.from_params(moved, "resnet32").baseline_kind() == "kd"
    assert Graph.from_params({**kd, gate_param(2, 1): "linear"}, "resnet32").baseline_kind() is None
    assert Graph.from_params({**kd, gate_param(0, 2): "through"}, "resnet32").baseline_kind() is None
    through = baseline("all_through", "resnet32", OTHERS[:1]).to_params()
    assert Graph.from_params({**through, gate_param(1, 2): "correct"}, "resnet32").baseline_kind() is None


def test_options_are_checked_with_the_field_and_what_is_allowed() -> None:
    assert option_issues(SpaceOptions(), MODELS) == []
    fields = {f: allowed for f, _, allowed in option_issues(SpaceOptions(nodes=6, baselines=("kd", "mutual")), MODELS)}
    assert "from 2 to 5" in fields["space.nodes"] and "all_through, kd, plain, kd_t2, dml" in fields["space.baselines"]
    issues = option_issues(SpaceOptions(nodes=3, baseline_models=("vgg16",)), MODELS)
    assert [f for f, _, _ in issues] == ["space.baseline_models"] and "nodes - 1 = 2" in issues[0][2]
    # Without baselines their models do not matter.
    assert option_issues(SpaceOptions(nodes=5, baselines=(), baseline_models=()), MODELS) == []
    with pytest.raises(ValueError) as err:
        generate(SpaceOptions(nodes=1), "resnet32", MODELS)
    assert err.value.args[:2] == ("space.nodes", 1)


def test_table_2_baselines_need_their_recipe_and_are_recognised_under_it() -> None:
    """kd_t2 and dml are the graphs of kd and all_through trained with T = 2 / peers averaged
    (seed 004's Table 2): a sweep must set those recipes, so a name never lies."""
    t2 = {"kd_temperature": 2.0, "peer_kl": "mean"}
    _, points = generate(SpaceOptions(baselines=("kd_t2", "dml", "plain")), "resnet32", MODELS, t2)
    graphs = [Graph.from_params(p, "resnet32") for p in points]
    assert [g.baseline_kind(2.0, "mean") for g in graphs] == ["kd_t2", "dml", "plain"]
    assert [g.baseline_kind() for g in graphs] == ["kd", "all_through", "plain"]  # the seed's recipe
    assert graphs[0].frozen == {2, 3} and graphs[0].incoming(1) == ((0, "through"), (2, "through"))
    assert graphs[0].model(2) == "resnet110"  # Table 2's pretrained ResNet110*
    assert graphs[1].trainable == (1, 2, 3) and all(len(graphs[1].incoming(k)) == 3 for k in (1, 2, 3))
    with pytest.raises(ValueError) as err:
        generate(SpaceOptions(baselines=("kd", "kd_t2")), "resnet32", MODELS, t2)
    field, value, allowed = err.value.args
    assert (field, value) == ("settings.kd_temperature", 2.0) and allowed.startswith("1.0 for the kd baseline") and "graph_gates_table2.toml" in allowed
    assert recipe_issues(("dml",), {"kd_temperature": 1.0, "peer_kl": "sum"}) == [
        ("settings.peer_kl", "sum", f"'mean' for the dml baseline listed in space.baselines ({RECIPE_NOTE})")
    ]


def test_draw_shows_models_roles_and_every_live_gate() -> None:
    params = baseline("all_through", "resnet32", OTHERS[:3]).to_params()
    params.update({gate_param(0, 4): CUTOFF, gate_param(1, 4): CUTOFF, gate_param(2, 4): CUTOFF, gate_param(3, 4): CUTOFF})
    params.update({gate_param(2, 1): "linear", gate_param(3, 1): "correct", gate_param(4, 2): CUTOFF, gate_param(4, 3): CUTOFF})
    text = draw(Graph.from_params(params, "resnet32"))
    # Compared with runs of spaces collapsed: the column widths follow the longest model name.
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "1 resnet32 target" in lines and "2 resnet110 trained" in lines
    assert "4 resnet32 frozen, pretrained" in lines  # node 4 still feeds node 1
    assert "2 resnet110 -> 1 resnet32 linear" in lines and "3 wrn28_2 -> 1 resnet32 correct" in lines
    assert not any(line.startswith("0 label -> 4") for line in lines)  # cut edges are not listed
    # The gate matrix: row = source, column = destination; source 4 feeds node 1 only.
    header = lines.index("1 2 3 4")
    assert lines[header + 1 : header + 6] == ["0 T T T .", "1 - T T .", "2 L - T .", "3 C T - .", "4 T . . -"]
    kd = [" ".join(line.split()) for line in draw(baseline("kd", "resnet32", OTHERS[:2])).splitlines()]
    assert "2 resnet110 frozen, pretrained" in kd and "3 wrn28_2 frozen, unused" in kd


def test_graph_and_report_modules_import_without_torch() -> None:
    code = "import sys, kdsweep.trainers.graph, kdsweep.trainers.graph_report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
