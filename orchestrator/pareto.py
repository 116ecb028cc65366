"""The Pareto front of a multi-objective sweep, for the table, JSON and HTML reports.

Trials are compared at one rung: the highest rung any trial has reached (the top rung once a
trial has trained the full budget), so a 1-epoch value is never set against a 27-epoch one.
A trial's value of each objective there is the one its last report at that rung recorded,
as ``Store.rung_points`` reads it. The front is :func:`asha.pareto_front` of those values:
the same dominance that ranks the rungs, so a trial marked on the front is one that no other
trial at the rung beats in every objective. A trial with a NaN objective is listed but never
on the front.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rich.console import Console

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.config import Objective
from kdsweep.orchestrator.safe_text import DataTable
from kdsweep.orchestrator.schedulers import scheduler_of
from kdsweep.orchestrator.schema import Event
from kdsweep.orchestrator.summary import RunSummary, fmt_value


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One trial at the compared rung: its value of each objective (by metric name)."""

    trial_id: str
    values: dict[str, float]
    on_front: bool
    origin: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ParetoFront:
    """Every trial at rung ``rung`` (epoch ``epoch``): front members first, then the others,
    each group best first by the primary objective (ties by trial id)."""

    rung: int
    epoch: int
    objectives: tuple[Objective, ...]
    points: list[FrontPoint]

    @property
    def front(self) -> list[FrontPoint]:
        return [p for p in self.points if p.on_front]


def pareto(summary: RunSummary) -> ParetoFront | None:
    """The front of ``summary``'s sweep (module docstring); None for a single-objective sweep
    or while no trial has reported at a rung."""
    a = summary.cfg.asha
    if not a.multi_objective:
        return None
    # Trial id -> objective values, per rung; a later row of a trial at a rung replaces an
    # earlier one (a re-evaluation after a resume), as the store's rung reads do.
    by_rung: dict[int, dict[str, tuple[float, ...]]] = {}
    for row in summary.rows:
        if row["event"] != Event.REPORT.value or row.get("rung") is None or int(row["rung"]) < 0:
            continue
        point = tuple(math.nan if row.get(m) is None else float(row[m]) for m in a.metrics)
        by_rung.setdefault(int(row["rung"]), {})[row["trial_id"]] = point
    if not by_rung:
        return None
    rung = max(by_rung)
    values = by_rung[rung]
    front = asha.pareto_front(values, a.modes)
    trials = {t.trial_id: t for t in summary.trials}
    # asha.rank sorts by the primary objective alone (one objective: by value, NaN last, then
    # trial id); front members go first, keeping that order.
    by_primary = asha.rank({tid: v[0] for tid, v in values.items()}, a.mode)
    ranked = [tid for tid in by_primary if tid in front] + [tid for tid in by_primary if tid not in front]
    points = [
        FrontPoint(
            tid, dict(zip(a.metrics, values[tid])), tid in front,
            trials[tid].origin if tid in trials else "", dict(trials[tid].params) if tid in trials else {},
        )  # fmt: skip
        for tid in ranked
    ]
    ladder = scheduler_of(a, summary.cfg.seed).ladder
    return ParetoFront(rung, ladder[rung], a.objectives, points)


def render(summary: RunSummary, console: Console) -> None:
    """The front as a table (its members; the dominated trials at the rung are counted);
    nothing for a single-objective sweep."""
    found = pareto(summary)
    if found is None:
        return
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in found.objectives)
    title = (
        f"Pareto front at rung {found.rung} (epoch {found.epoch}): {len(found.front)} of "
        f"{len(found.points)} trials there are non-dominated in {objectives}"
    )
    table = DataTable(title=title, title_justify="left")
    names = [p.name for p in summary.cfg.space]
    for col in ("trial", *(o.metric for o in found.objectives), "origin", *names):
        table.add_column(col, justify="left" if col in ("trial", "origin") else "right")
    for p in found.front:
        table.add_row(p.trial_id, *(fmt_value(p.values[o.metric]) for o in found.objectives), p.origin, *(fmt_value(p.params.get(n)) for n in names))
    console.print(table)


def to_dict(summary: RunSummary) -> dict[str, Any] | None:
    """The front for the JSON report: the rung, the objectives, and every trial at the rung
    with ``on_front``; None for a single-objective sweep or before any rung is reached."""
    found = pareto(summary)
    if found is None:
        return None
    return {
        "rung": found.rung,
        "epoch": found.epoch,
        "objectives": [dataclasses.asdict(o) for o in found.objectives],
        "trials": [dataclasses.asdict(p) for p in found.points],
    }
