"""The graph-gates trainer: each gate's per-sample effect inside a node's loss, gradients that
reach only the destination, frozen nodes that never change, rejected frozen targets, the sweep
file's generated space, and a tiny digits run that reports its metrics and resumes exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.orchestrator.config import ConfigError, load_sweep
from kdsweep.orchestrator.report import FinalResult, RunSummary, TrialSummary
from kdsweep.trainers import graph_report
from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.data import DataSettings
from kdsweep.trainers.graph import CUTOFF, Edge, Graph, baseline, edges, gate_param
from kdsweep.trainers.graph_gates import GraphGatesTrainer, node_loss
from kdsweep.trainers.graph_gates_spec import GraphGates, GraphGatesSettings
from kdsweep.trainers.models import build_model
from tests.conftest import kdsweep

DIGITS = DataSettings(dataset="digits", image_size=8)
TINY = GraphGatesSettings(width=0.125, frozen_epochs=1, batch_size=64)
OTHERS = ("resnet110", "wrn28_2")


def two_nodes(**gates: str) -> Graph:
    """A 2-node graph, every edge cut except those given as ``g<s><t>=gate``."""
    given: dict[Edge, str] = {(int(k[1]), int(k[2])): v for k, v in gates.items()}
    return Graph(("resnet32", "resnet32"), {e: given.get(e, CUTOFF) for e in edges(2)})


def logits_and_labels() -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    source = torch.randn(6, 4, generator=g)
    # The source is right on samples 0, 2 and 4 only (argmax = label there, not elsewhere).
    source[torch.arange(6), labels] = torch.tensor([9.0, -9.0, 9.0, -9.0, 9.0, -9.0])
    return {1: torch.randn(6, 4, generator=g), 2: source}, labels


def kl_per_sample(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    p_s = F.softmax(source, dim=1)
    return (p_s * (p_s.log() - F.log_softmax(target, dim=1))).sum(dim=1)


def test_each_gate_acts_per_sample_on_the_node_loss() -> None:
    logits, y = logits_and_labels()
    ell = kl_per_sample(logits[1], logits[2])

    def loss(gate: str, step: int = 0) -> float:
        return float(node_loss(two_nodes(g21=gate, g02="through"), 1, logits, y, step=step, total_steps=40))

    assert loss("through") == pytest.approx(float(ell.mean()), rel=1e-5)
    # Linear: a ramp c / c_end over the optimisation steps of the whole schedule.
    for step in (0, 10, 30, 40):
        assert loss("linear", step) == pytest.approx(step / 40 * float(ell.mean()), rel=1e-5, abs=1e-9)
    # Correct: only the samples the source classifies right, averaged over the whole batch.
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert loss("correct") == pytest.approx(float((ell * mask).sum() / 6), rel=1e-5)
    # The label edge: cross-entropy, and "correct" there is "through".
    ce = float(F.cross_entropy(logits[1], y))
    assert float(node_loss(two_nodes(g01="correct", g02="through"), 1, logits, y, step=0, total_steps=40)) == pytest.approx(ce, rel=1e-5)


def test_a_cut_edge_contributes_nothing_and_its_source_is_never_read() -> None:
    logits, y = logits_and_labels()
    graph = two_nodes(g01="through", g21=CUTOFF, g02="through")
    alone = node_loss(graph, 1, {1: logits[1]}, y, step=0, total_steps=10)  # no node-2 logits at all
    assert float(alone) == pytest.approx(float(F.cross_entropy(logits[1], y)), rel=1e-6)
    with pytest.raises(ValueError, match="frozen"):
        node_loss(two_nodes(g02="through"), 1, logits, y, step=0, total_steps=10)


def test_gradients_reach_only_the_destination() -> None:
    torch.manual_seed(0)
    nets = {k: build_model("resnet20", 4, 0.125) for k in (1, 2)}
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    graph = two_nodes(g01="through", g21="through", g02="through", g12="linear")
    logits = {k: net(x) for k, net in nets.items()}
    node_loss(graph, 1, logits, y, step=3, total_steps=10).backward()
    assert all(p.grad is None for p in nets[2].parameters()), "node 2 got gradient from its edge into node 1"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets[1].parameters())


def make(tmp_path: Path, params: dict[str, str], budget: int = 2, settings: GraphGatesSettings = TINY) -> GraphGatesTrainer:
    ctx = TrialContext(trial_id="t0000", seed=11, attempt=0, run_dir=tmp_path, cache_dir=tmp_path, device="cpu", data=DIGITS, budget_epochs=budget)
    return GraphGatesTrainer(params, dataclasses.replace(settings, teacher_cache=str(tmp_path / "cache")), ctx)


def test_a_frozen_node_never_changes_and_an_unused_one_is_not_loaded(tmp_path: Path) -> None:
    trainer = make(tmp_path, baseline("kd", "resnet32", OTHERS).to_params(), budget=1)
    assert set(trainer.nets) == {1, 2} and set(trainer.optimizers) == {1}  # node 3 feeds nothing
    frozen = trainer.nets[2]
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    target_before = {k: v.clone() for k, v in trainer.nets[1].state_dict().items()}
    metrics = trainer.train_epoch(1)
    assert set(metrics) == {"train_loss", "node1_train_loss"}  # train metrics: trainable nodes only
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items()), "frozen node changed"
    assert any(not torch.equal(target_before[k], v) for k, v in trainer.nets[1].state_dict().items())
    assert set(trainer.state_dict()["nodes"]) == {"node1"}


def test_a_frozen_target_is_rejected_before_training() -> None:
    params = baseline("all_through", "resnet32", OTHERS).to_params()
    params.update({gate_param(s, 1): CUTOFF for s in (0, 2, 3)})
    reason = GraphGates.check_params(params, TINY)
    assert reason is not None and "target node 1" in reason
    assert GraphGates.check_params({**params, "gate_0_1": "linear"}, TINY) is None
    assert "not among settings.models" in str(GraphGates.check_params({**params, "gate_0_1": "linear", "model_2": "vgg16"}, TINY))
    assert "missing" in str(GraphGates.check_params({"gate_0_1": "through", "model_2": "resnet32"}, TINY))


def test_sweep_file_generates_the_space_for_any_node_count() -> None:
    for nodes in (2, 5):
        cfg = load_sweep("graph_gates", ["data.dataset=digits", f"space.nodes={nodes}"])
        names = [p.name for p in cfg.space]
        assert sum(n.startswith("gate_") for n in names) == nodes**2 and sum(n.startswith("model_") for n in names) == nodes - 1
        kinds = [Graph.from_params(p, cfg.settings.target).baseline_kind() for p in cfg.points_to_evaluate]
        assert kinds == ["all_through", "kd", "plain"]
        assert cfg.document["space"]["nodes"] == nodes  # the frozen copy keeps the option, not the expansion
    with pytest.raises(ConfigError) as err:
        load_sweep("graph_gates", ["data.dataset=digits", "space.nodes=6"])
    assert "space.nodes = 6" in str(err.value) and "from 2 to 5" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_sweep("graph_gates", ["data.dataset=digits", "space.lr={type = \"uniform\", low = 0.01, high = 0.1}"])
    assert "space.lr = {'type': 'uniform'" in str(err.value) and "generates its parameters from the options nodes" in str(err.value)


def test_tiny_digits_run_reports_its_metrics_and_resumes_exactly(tmp_path: Path) -> None:
    params = baseline("all_through", "resnet32", OTHERS).to_params()
    # A frozen pretrained node 3 feeding the target through a linear gate; node 2 learns from
    # the label and the target only where the target is right.
    params.update({gate_param(s, 3): CUTOFF for s in (0, 1, 2)})
    params.update({gate_param(3, 1): "linear", gate_param(1, 2): "correct", gate_param(3, 2): CUTOFF})
    straight = make(tmp_path, params)
    declared = set(GraphGates.metric_names(TINY))
    metrics = straight.train_epoch(1)
    assert set(metrics) == {"train_loss", "node1_train_loss", "node2_train_loss"} and all(v > 0 for v in metrics.values())
    val, test = straight.evaluate(), straight.test()
    assert set(val) == {"val_acc", "val_loss", "node1_val_acc", "node2_val_acc", "node3_val_acc"}
    assert set(test) == {"test_acc", "test_loss", "node1_test_acc", "node2_test_acc", "node3_test_acc"}
    assert set(metrics) | set(val) | set(test) <= declared and val["val_acc"] == val["node1_val_acc"]
    # The target's per-example record, which the worker stores as val_n and val_correct.
    assert straight.val_correct.shape == (len(straight.data.val.y),) and straight.val_correct.mean() == val["val_acc"]
    save_checkpoint(tmp_path / "ck.pt", {"trainer": straight.state_dict()})
    straight.train_epoch(2)

    resumed = make(tmp_path, params)
    state = load_checkpoint(tmp_path / "ck.pt")  # torch.load(weights_only=True)
    assert state is not None
    resumed.load_state_dict(state["trainer"])
    assert resumed.step == len(resumed.batches)
    resumed.train_epoch(2)
    for key, node in straight.state_dict()["nodes"].items():
        for name, tensor in node["model"].items():
            assert torch.equal(tensor, resumed.state_dict()["nodes"][key]["model"][name]), f"{key}.{name} differs after resume"
    assert straight.evaluate() == resumed.evaluate()


def test_report_draws_the_best_graphs_and_compares_with_the_baselines() -> None:
    cfg = load_sweep("graph_gates", ["data.dataset=digits"])
    through, kd, plain = (dict(p) for p in cfg.points_to_evaluate)
    searched = {**through, "gate_0_1": "linear", "gate_1_2": "correct", "gate_1_3": CUTOFF}
    ranked = [("t0003", "random", searched, 0.95), ("t0002", "fixed", plain, 0.93), ("t0001", "fixed", kd, 0.92), ("t0000", "fixed", through, 0.90)]
    trials = [TrialSummary(tid, origin, "completed", 8, value, params, 1, None) for tid, origin, params, value in ranked]
    rows = [{"trial_id": tid, "event": "report", "epoch": 8, "val_acc": v, "node1_val_acc": v, "node2_val_acc": 0.5} for tid, _, _, v in ranked]
    final = [
        FinalResult("t0003", "random", searched, 8, 3, 3, {"val_acc": (0.96, 0.01, 3), "test_acc": (0.94, 0.02, 3)}),
        FinalResult("t0000", "fixed", through, 8, 3, 3, {"val_acc": (0.91, 0.03, 3), "test_acc": (0.89, 0.01, 3)}),
    ]
    summary = RunSummary(cfg, trials, [], None, [], rows=rows, final=final)

    doc = graph_report.to_dict(summary)
    assert [g["trial_id"] for g in doc["graphs"]] == ["t0003", "t0002", "t0001"] and doc["graphs"][0]["rank"] == 1
    assert [(c["role"], c["trial_id"]) for c in doc["comparison"]] == [("best_searched", "t0003"), ("all_through", "t0000"), ("kd", "t0001"), ("plain", "t0002")]
    best = doc["comparison"][0]
    assert best["gates"]["0->1"] == "linear" and best["node_val_acc"] == {"1": 0.95, "2": 0.5, "3": None}
    assert best["final"]["val_acc"] == {"mean": 0.96, "std": 0.01, "n": 3} and doc["comparison"][3]["final"] is None

    console = Console(record=True, width=160)
    graph_report.render(summary, console)
    text = console.export_text()
    # Compared with table rules and runs of spaces collapsed (widths follow the content).
    lines = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
    assert "#1 t0003 (random): target val_acc 0.9500 after 8 epochs" in lines
    assert "#2 t0002 (fixed, the plain baseline): target val_acc 0.9300 after 8 epochs" in lines
    assert "0 label -> 1 resnet32 linear" in lines  # the drawing of the winner
    assert "per node val_acc: 1 resnet32 0.9500, 2 resnet110 0.5000" in lines
    assert "retrained x3, 8 epochs: val_acc 0.9600 ± 0.0100, test_acc 0.9400 ± 0.0200" in lines
    assert "best searched graph t0003 resnet32, resnet110, wrn28_2 0.9600 ± 0.0100 0.9400 ± 0.0200 retrained x3, 8 epochs" in lines
    assert "all gates through t0000 resnet32, resnet110, wrn28_2 0.9100 ± 0.0300 0.8900 ± 0.0100 retrained x3, 8 epochs" in lines
    assert "target alone (cross-entropy) t0002 resnet32, resnet110, wrn28_2 0.9300 - search, 8 epochs" in lines


@pytest.mark.slow
def test_a_digits_sweep_through_asha_then_retrain_and_report_the_drawn_graphs(tmp_path: Path) -> None:
    """The whole path a researcher takes: the sweep file with a generated 2-node space and its
    baselines, ASHA (η = 2), the final stage of the winner and the all-through graph, and the
    report that draws the graphs and compares them using the retrained means."""
    out = tmp_path / "run"
    sets = [
        "data.dataset=digits", "data.image_size=8", "space.nodes=2", "num_trials=6", "asha.max_epochs=2",
        "backend.max_concurrent=2", "backend.gpus_per_trial=0", "settings.width=0.125", "settings.frozen_epochs=1",
        f"settings.teacher_cache={tmp_path / 'teachers'}", 'settings.models=["resnet32", "wrn28_2"]',
        'space.baseline_models=["wrn28_2"]',
    ]  # fmt: skip
    args = ["launch", "graph_gates", "--out", str(out), "--no-live"]
    for s in sets:
        args += ["--set", s]
    launched = kdsweep(*args, timeout=600)
    assert launched.returncode == 0, launched.stderr
    doc = json.loads(kdsweep("report", str(out), "--format", "json").stdout)
    origins = [r["origin"] for r in sorted(doc["leaderboard"], key=lambda r: r["trial_id"])]
    assert origins[:3] == ["fixed", "fixed", "fixed"] and set(origins[3:]) == {"random"}
    assert len(doc["leaderboard"]) + len(doc["rejected"]) >= 6 and len(doc["leaderboard"]) == 6
    winner = doc["leaderboard"][0]["trial_id"]

    retrained = kdsweep("retrain", str(out), "--top", "1", "--trial", "t0000", "--repeats", "2", "--epochs", "2", "--no-live", timeout=600)
    assert retrained.returncode == 0, retrained.stderr
    report = kdsweep("report", str(out))
    assert report.returncode == 0, report.stderr
    text = report.stdout
    assert "knowledge-transfer graph, 2 nodes" in text and "all gates through" in text
    assert "retrained x2, 2 epochs" in text
    final = {f["source"]: f for f in json.loads(kdsweep("report", str(out), "--format", "json").stdout)["final"]}
    assert set(final) == {winner, "t0000"} and all(f["completed"] == 2 and f["stats"]["test_acc"][2] == 2 for f in final.values())


def test_kd_temperature_softens_only_edges_out_of_frozen_nodes_and_peer_mean_averages() -> None:
    logits, y = logits_and_labels()
    logits[3] = logits[2].flip(0)
    ce = F.cross_entropy(logits[1], y)
    # Node 2 frozen (nothing flows into it): its edge into node 1 is at T = 2, with T².
    kd = Graph(("resnet32", "resnet110"), {e: CUTOFF for e in edges(2)} | {(0, 1): "through", (2, 1): "through"})
    softened = 4.0 * kl_per_sample(logits[1] / 2.0, logits[2] / 2.0).mean()
    assert float(node_loss(kd, 1, logits, y, step=0, total_steps=10, kd_temperature=2.0)) == pytest.approx(float(ce + softened), rel=1e-5)
    # Trained sources stay at T = 1; "mean" averages the KL edges, the label edge stays whole.
    dml = baseline("dml", "resnet32", ("resnet32", "resnet32"))
    peers = kl_per_sample(logits[1], logits[2]).mean() + kl_per_sample(logits[1], logits[3]).mean()
    kw = {"step": 0, "total_steps": 10, "kd_temperature": 2.0}
    assert float(node_loss(dml, 1, logits, y, **kw, peer_kl="mean")) == pytest.approx(float(ce + peers / 2), rel=1e-5)
    assert float(node_loss(dml, 1, logits, y, **kw)) == pytest.approx(float(ce + peers), rel=1e-5)


@pytest.mark.parametrize("kind", ["kd_t2", "dml"])
def test_table_2_baselines_build_and_train_one_epoch_on_digits(tmp_path: Path, kind: str) -> None:
    cfg = load_sweep("graph_gates_table2", ["data.dataset=digits"])
    assert (cfg.settings.kd_temperature, cfg.settings.peer_kl) == (2.0, "mean")
    kinds = [Graph.from_params(p, cfg.settings.target).baseline_kind(cfg.settings.kd_temperature, cfg.settings.peer_kl) for p in cfg.points_to_evaluate]
    assert kinds == ["kd_t2", "dml", "plain"] and cfg.num_trials == 3
    assert (cfg.asha.min_epochs, cfg.asha.max_epochs) == (200, 200)  # one rung: no early stopping
    params = dict(cfg.points_to_evaluate[kinds.index(kind)])
    settings = dataclasses.replace(TINY, kd_temperature=2.0, peer_kl="mean")
    trainer = make(tmp_path, params, budget=1, settings=settings)
    assert set(trainer.optimizers) == ({1} if kind == "kd_t2" else {1, 2, 3})
    metrics = trainer.train_epoch(1) | trainer.evaluate()
    assert all(v == v for v in metrics.values()) and 0.0 <= metrics["val_acc"] <= 1.0
    # The seed's sweep cannot list them: the recipe is a setting of the whole sweep.
    with pytest.raises(ConfigError) as err:
        load_sweep("graph_gates", ["data.dataset=digits", f'space.baselines=["kd", "{kind}"]'])
    assert ("settings.kd_temperature = 1.0" if kind == "kd_t2" else "settings.peer_kl = 'sum'") in str(err.value)
