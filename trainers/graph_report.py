"""The graph-gates section of ``kdsweep report``: the best graphs drawn, and the best searched
graph against the reference graphs (METHODS.md §3: "the report must draw the winning graph").

No torch: it reads the run summary (``kdsweep.orchestrator.summary``) and the graph as data
(``graph.py``). A trial's graph comes from its parameters, its per-node accuracies from the
``nodeK_val_acc`` columns of its last report, and a retrained trial's numbers from the final
stage (``kdsweep retrain``) as mean ± sample std over its completed runs.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console

from kdsweep.orchestrator.safe_text import DataTable, plain
from kdsweep.orchestrator.summary import FinalResult, RunSummary, TrialSummary, last_reports
from kdsweep.trainers.graph import BASELINES, Graph, draw, edges

#: How many of the best graphs are drawn.
TOP_GRAPHS = 3
#: Origin of the fixed trials (the baselines) in the store.
_FIXED = "fixed"
#: The rows of the comparison table: the best searched graph, then the references.
_ROLES = {
    "best_searched": "best searched graph",
    "all_through": "all gates through",
    "kd": "KD: label + frozen teacher",
    "plain": "target alone (cross-entropy)",
    "kd_t2": "KD at T = 2: label + frozen teacher (Table 2)",
    "dml": "DML: all trained, mean KL from peers (Table 2)",
}

Ranked = list[tuple[int, TrialSummary, Graph]]


def _ranked_graphs(summary: RunSummary) -> Ranked:
    """(leaderboard rank, trial, graph) of every trial with a search value, best first."""
    out = []
    for rank, t in enumerate(summary.trials, start=1):
        if t.value is None or math.isnan(t.value):
            continue
        try:
            out.append((rank, t, Graph.from_params(t.params, summary.cfg.settings.target)))
        except ValueError:  # parameters of another trainer's run: nothing to draw
            continue
    return out


def _kind(summary: RunSummary, graph: Graph) -> str | None:
    """Which baseline ``graph`` is under the run's recipe settings (``Graph.baseline_kind``)."""
    s = summary.cfg.settings
    return graph.baseline_kind(s.kd_temperature, s.peer_kl)


def _comparison(summary: RunSummary, ranked: Ranked) -> list[tuple[str, TrialSummary, Graph]]:
    """(role, trial, graph): the best searched (non-fixed) graph, then for each kind of
    ``BASELINES`` that was run its best trial, preferring the searched graph's node count and,
    for all-through, its models too ("the all-through graph of the same nodes")."""
    searched = [(t, g) for _, t, g in ranked if t.origin != _FIXED]
    out = [("best_searched", *searched[0])] if searched else []
    reference = searched[0][1] if searched else None
    for kind in BASELINES:
        found = [(t, g) for _, t, g in ranked if _kind(summary, g) == kind]
        if reference is not None:
            found = [(t, g) for t, g in found if g.nodes == reference.nodes] or found
            found = [(t, g) for t, g in found if g.models == reference.models] or found
        if found:
            out.append((kind, *found[0]))
    return out


def _record(summary: RunSummary, trial: TrialSummary, graph: Graph, reports: dict[str, dict[str, Any]], finals: dict[str, FinalResult]) -> dict[str, Any]:
    """One trial as both renderings use it; ``final`` holds its retrain runs' mean, sample
    std (NaN for one run) and count per metric, or None when it was not retrained."""
    row = reports.get(trial.trial_id, {})
    final = finals.get(trial.trial_id)
    final_doc = None
    if final is not None:
        stats = {m: {"mean": mean, "std": std, "n": n} for m, (mean, std, n) in final.stats.items()}
        final_doc = {"epochs": final.epochs, "completed": final.completed, "runs": final.runs, **stats}
    return {
        "trial_id": trial.trial_id,
        "origin": trial.origin,
        "status": trial.status,
        "epochs": trial.epochs,
        summary.metric: trial.value,
        "kind": _kind(summary, graph),
        "models": {str(k): graph.model(k) for k in range(1, graph.nodes + 1)},
        "frozen": sorted(graph.frozen),
        "gates": {f"{s}->{t}": graph.gates[(s, t)] for s, t in edges(graph.nodes)},
        "node_val_acc": {str(k): row.get(f"node{k}_val_acc") for k in range(1, graph.nodes + 1)},
        "final": final_doc,
    }


def _sections(summary: RunSummary) -> tuple[list[tuple[dict[str, Any], Graph]], list[tuple[dict[str, Any], Graph]]]:
    """(best graphs, comparison rows) as (record, graph) pairs."""
    ranked = _ranked_graphs(summary)
    reports, finals = last_reports(summary), {f.source: f for f in summary.final}
    best = [({"rank": rank, **_record(summary, t, g, reports, finals)}, g) for rank, t, g in ranked[:TOP_GRAPHS]]
    rows = [({"role": role, **_record(summary, t, g, reports, finals)}, g) for role, t, g in _comparison(summary, ranked)]
    return best, rows


def to_dict(summary: RunSummary) -> dict[str, Any]:
    """``{"graphs": [...], "comparison": [...]}``: the best ``TOP_GRAPHS`` trials (with their
    leaderboard ``rank``) and the comparison rows (with their ``role``: ``best_searched`` or a
    baseline kind), each with its graph, per-node accuracies and final-stage statistics."""
    best, rows = _sections(summary)
    return {"graphs": [r for r, _ in best], "comparison": [r for r, _ in rows]}


def _acc(value: Any) -> str:
    return "-" if value is None or math.isnan(value) else f"{float(value):.4f}"


def _mean_std(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "-"
    return f"{stat['mean']:.4f}" if math.isnan(stat["std"]) else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _result(record: dict[str, Any], metric: str) -> tuple[str, str, str]:
    """(metric, test_acc, where from): the final-stage mean ± std when the trial was
    retrained, else its search value at the epochs it reached."""
    final = record["final"]
    if final is not None and metric in final:
        where = f"retrained x{final[metric]['n']}, {_epochs(final['epochs'])}"
        return _mean_std(final[metric]), _mean_std(final.get("test_acc")), where
    return _acc(record[metric]), "-", f"search, {_epochs(record['epochs'])}"


def render(summary: RunSummary, console: Console) -> None:
    """Draw the best graphs with their per-node accuracies, then compare the best searched
    graph with the all-through, KD and plain graphs of the sweep (those that were run)."""
    best, rows = _sections(summary)
    metric = summary.metric
    if not best:
        console.print("graph gates: no graph has been evaluated yet")
        return
    # Data, not markup: a drawing or a model name must never be read as rich styles.
    for record, graph in best:
        kind = f", the {record['kind']} baseline" if record["kind"] else ""
        console.print()
        console.print(plain(f"#{record['rank']} {record['trial_id']} ({record['origin']}{kind}): target {metric} {_acc(record[metric])} after {_epochs(record['epochs'])}"))
        console.print(plain(draw(graph), lines=True))
        nodes = ", ".join(f"{k} {record['models'][k]} {_acc(v)}" for k, v in record["node_val_acc"].items() if v is not None)
        console.print(plain(f"per node {metric}: {nodes}"))
        if record["final"] is not None:
            shown, test, where = _result(record, metric)
            console.print(plain(f"{where}: {metric} {shown}, test_acc {test}"))
    console.print()
    table = DataTable(title=f"target node 1 ({summary.cfg.settings.target}): best searched graph vs reference graphs", title_justify="left")
    # The models column shows whether a reference graph has the same nodes as the searched one.
    for col in ("graph", "trial", "models (node 1..M)", metric, "test_acc", "from"):
        table.add_column(col, justify="right" if col in (metric, "test_acc") else "left", no_wrap=True)
    for record, graph in rows:
        shown, test, where = _result(record, metric)
        table.add_row(_ROLES[record["role"]], record["trial_id"], ", ".join(graph.models), shown, test, where)
    console.print(table)

