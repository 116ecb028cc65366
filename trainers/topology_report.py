"""The student-topology section of ``kdsweep report``: every student as (latency, accuracy),
the Pareto-optimal students, and the seed's "limit curve" (METHODS.md §2, seed 002 §4.4).

The limit curve is a Gaussian-process regression of latency as a function of accuracy over
the Pareto set (scikit-learn, RBF + white noise, ``normalize_y``, fixed ``random_state``),
predicted with its standard deviation on a grid spanning the front: an estimate, with its
uncertainty, of how fast a student of a given accuracy can be.

Each student is its trial's last report. The Pareto set and the curve are taken over the
students trained for the furthest budget any student reached (the sweep's ``max_epochs``
once a trial completes): a student that ASHA stopped after one epoch shows the accuracy it
had then, a lower bound, and counting it would put near-chance students on the front merely
for being fast (measured on a digits sweep: two stopped students at accuracy 0.10 and 0.14
joined a front of 0.95–0.99 students and dragged the curve to negative latencies). The
figure still shows them, marked as stopped early.

No torch here (``REPORT_SECTIONS`` contract): reports run wherever the results are. numpy and
scikit-learn are imported where the curve is fitted, matplotlib where the figure is drawn.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kdsweep.orchestrator.safe_text import DataTable
from kdsweep.orchestrator.schema import PARAM_PREFIX
from kdsweep.orchestrator.summary import RunSummary, last_reports

#: Grid points of the limit curve in the table and the JSON; the figure draws a finer one.
TABLE_POINTS = 9
PLOT_POINTS = 200


@dataclasses.dataclass(frozen=True)
class Student:
    """One trial's student at its last report."""

    trial_id: str
    latency_s: float
    val_acc: float
    J: float
    num_params: int
    macs: int
    epochs: int
    filters: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LimitCurve:
    """Predicted latency (mean and standard deviation, seconds) at each grid accuracy."""

    accuracy: tuple[float, ...]
    latency_s: tuple[float, ...]
    std_s: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Reference:
    """What the students were scored against: t_max (s), a_max, r_t; ``teacher`` tells
    whether (t_max, a_max) is the measured teacher or values set in ``[objective]``."""

    t_max: float
    a_max: float
    r_t: float
    teacher: bool


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points among (latency, accuracy) pairs, lower latency and
    higher accuracy being better, in order of increasing latency (so of increasing accuracy).

    A point is kept when no other point is at least as good in both and better in one. Ties
    are resolved deterministically: of identical points only the first (lowest index) is kept.
    Points with a NaN coordinate are ignored.
    """
    order = sorted(
        (i for i, (t, a) in enumerate(points) if not (math.isnan(t) or math.isnan(a))),
        key=lambda i: (points[i][0], -points[i][1], i),
    )
    front: list[int] = []
    best = -math.inf
    for i in order:
        # Sorted by latency, then accuracy descending: a point is dominated exactly when an
        # earlier (no slower) point is at least as accurate.
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def limit_curve(accuracy: Sequence[float], latency: Sequence[float], *, points: int, random_state: int = 0) -> LimitCurve:
    """Gaussian-process fit of latency against accuracy over a Pareto front, predicted at
    ``points`` accuracies evenly spanning the front (mean and standard deviation).

    One point gives a one-point curve with std 0 (there is nothing to fit). With two or more,
    the kernel is C·RBF + White with normalised targets. The RBF length scale is bounded to
    [span/4, 10·span] of the front's accuracy span: a front is monotone, and with a handful
    of points a shorter scale lets the fit wiggle between them (measured: span/100 made a
    4-point convex front swing by a third of its latency range). The white noise is bounded
    to at most 0.01 of the normalised variance, so the curve follows the measured front
    (latency noise is small next to the front's spread) instead of explaining it away as
    noise (measured on three convex fronts of 4–6 points: within 8% of the latency range of
    every front point at 0.01, up to 17% at 0.1). The optimiser's restarts are seeded by
    ``random_state``: the same front gives the same curve.
    """
    if len(accuracy) != len(latency) or not accuracy:
        raise ValueError(f"need one latency per accuracy and at least one point, got {len(accuracy)} and {len(latency)}")
    if len(accuracy) == 1:
        return LimitCurve((float(accuracy[0]),), (float(latency[0]),), (0.0,))
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x = np.asarray(accuracy, dtype=float).reshape(-1, 1)
    y = np.asarray(latency, dtype=float)
    span = float(x.max() - x.min())
    if not span > 0:
        raise ValueError("the accuracies of a Pareto front of two or more points differ; got one value")
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length_scale=span / 2, length_scale_bounds=(span / 4, span * 10)) + WhiteKernel(
        noise_level=1e-3, noise_level_bounds=(1e-8, 1e-2)
    )
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=3, random_state=random_state)
    with warnings.catch_warnings():
        # A handful of points often pins a hyperparameter at a bound; the fit is still the
        # best within the bounds, and the warning would only clutter the report.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    grid = np.linspace(float(x.min()), float(x.max()), points)
    mean, std = gp.predict(grid.reshape(-1, 1), return_std=True)
    return LimitCurve(tuple(grid.tolist()), tuple(mean.tolist()), tuple(std.tolist()))


def students(summary: RunSummary) -> list[Student]:
    """Every trial with a report, as its last report describes it, in trial order."""
    out = []
    for tid, row in last_reports(summary).items():
        if row.get("latency_s") is None or row.get("val_acc") is None:
            continue
        names = sorted(k for k in row if k.startswith(PARAM_PREFIX))
        out.append(
            Student(
                trial_id=tid, latency_s=float(row["latency_s"]), val_acc=float(row["val_acc"]),
                J=float(row["J"]), num_params=int(row["num_params"]), macs=int(row["macs"]),
                epochs=int(row["epoch"]), filters=tuple(int(row[n]) for n in names),
            )
        )  # fmt: skip
    return out


def reference(summary: RunSummary) -> Reference | None:
    """The run's (t_max, a_max, r_t), read from its report rows; None before any report."""
    row = next((r for r in last_reports(summary).values() if r.get("t_max") is not None), None)
    if row is None:
        return None
    o = summary.cfg.objective
    return Reference(float(row["t_max"]), float(row["a_max"]), float(o.r_t), teacher=o.t_max is None and o.a_max is None)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """All students; those trained for the furthest budget (``epochs``), the comparable
    ones; the Pareto students among them by latency; the limit curve over those."""

    every: list[Student]
    epochs: int
    full: list[Student]
    front: list[Student]
    curve: LimitCurve | None


def analyse(summary: RunSummary, points: int) -> Analysis:
    """The section's numbers, with a limit curve of ``points`` grid points."""
    every = students(summary)
    epochs = max((s.epochs for s in every), default=0)
    full = [s for s in every if s.epochs == epochs]
    front = [full[i] for i in pareto_front([(s.latency_s, s.val_acc) for s in full])]
    curve = limit_curve([s.val_acc for s in front], [s.latency_s for s in front], points=points) if front else None
    return Analysis(every, epochs, full, front, curve)


def _describe(ref: Reference) -> str:
    source = "the teacher, measured once for the sweep" if ref.teacher else "set in [objective]"
    return f"reference: t_max {ref.t_max:.4g} s, a_max {ref.a_max:.4f} ({source}); r_t {ref.r_t:g}"


def render(summary: RunSummary, console: Console) -> None:
    """Print the Pareto students, the reference and the limit curve."""
    an = analyse(summary, TABLE_POINTS)
    if not an.every:
        console.print("student topology: no student has reported yet")
        return
    title = (
        f"Pareto-optimal students (latency down, val_acc up): {len(an.front)} of the {len(an.full)} "
        f"trained for {an.epochs} epochs ({len(an.every)} students in all)"
    )
    table = DataTable(title=title, title_justify="left")
    for col in ("trial", "latency_s", "val_acc", "J", "params", "MACs", "epochs"):
        table.add_column(col, justify="left" if col == "trial" else "right", no_wrap=True)
    table.add_column("filters", overflow="fold")
    for s in an.front:
        table.add_row(
            s.trial_id, f"{s.latency_s:.4g}", f"{s.val_acc:.4f}", f"{s.J:.4f}", f"{s.num_params:,}",
            f"{s.macs:,}", str(s.epochs), str(list(s.filters)),
        )  # fmt: skip
    console.print(table)
    ref = reference(summary)
    if ref is not None:
        console.print(_describe(ref), highlight=False)
    curve = an.curve
    if curve is not None:
        # A heading line, not a table title: rich wraps titles to the (narrow) table width.
        console.print("limit curve: GP fit of latency against accuracy over the Pareto set", highlight=False)
        limit = Table()
        for col in ("val_acc", "latency_s", "± std"):
            limit.add_column(col, justify="right")
        for a, t, sd in zip(curve.accuracy, curve.latency_s, curve.std_s):
            limit.add_row(f"{a:.4f}", f"{t:.4g}", f"{sd:.2g}")
        console.print(limit)


def to_dict(summary: RunSummary) -> dict[str, Any]:
    """The section for ``--format json``: reference, Pareto students, limit curve."""
    an = analyse(summary, TABLE_POINTS)
    ref, curve = reference(summary), an.curve
    return {
        "students": len(an.every),
        "epochs": an.epochs,
        "students_at_epochs": len(an.full),
        "reference": None if ref is None else dataclasses.asdict(ref),
        "pareto": [dataclasses.asdict(s) | {"filters": list(s.filters)} for s in an.front],
        "limit_curve": None
        if curve is None
        else [{"val_acc": a, "latency_s": t, "std_s": sd} for a, t, sd in zip(curve.accuracy, curve.latency_s, curve.std_s)],
    }


def plot(summary: RunSummary, path: Path) -> None:
    """Draw the students (latency against accuracy) into the PNG ``path``, in two panels: every
    student on a log latency axis (a sweep's latencies span orders of magnitude), and a zoom
    on the Pareto front with the limit curve and its ±2σ band. Both mark the teacher (or the
    ``[objective]`` reference). Raises ValueError when no student has reported."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    an = analyse(summary, PLOT_POINTS)
    if not an.every:
        raise ValueError(f"{summary.cfg.name}: no student has reported yet, nothing to plot")
    ref = reference(summary)
    device = next((r.get("device") for r in summary.rows if r.get("device")), None) or "device"
    # Figure + Agg canvas instead of pyplot: no global backend switch, no GUI, thread-safe.
    fig = Figure(figsize=(13.0, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    overview, zoom = fig.subplots(1, 2)
    for ax, lone in ((overview, True), (zoom, False)):
        _draw(ax, an, ref, every=lone)
        ax.set_xlabel(f"latency t (s to classify the fixed validation batch set on {device})")
        ax.set_ylabel("validation accuracy a")
        ax.grid(True, alpha=0.3)
    overview.set_xscale("log")
    # Ticks at 1, 2, 5 × 10^k as plain numbers: the default labels every minor tick in
    # exponent notation when the span is under a decade, and they overlap.
    overview.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    overview.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    overview.xaxis.set_minor_formatter(NullFormatter())
    overview.set_title("every student (log latency)")
    overview.legend(loc="best", fontsize="small")
    zoom.set_title("Pareto front and GP limit curve")
    _zoom_to_front(zoom, an, ref)
    zoom.legend(loc="best", fontsize="small")
    r_t = f"{ref.r_t:g}" if ref is not None else "?"
    fig.suptitle(f"{summary.cfg.name}: {len(an.every)} students, r_t = {r_t}")
    fig.savefig(path, format="png", dpi=110)


def _draw(ax: Any, an: Analysis, ref: Reference | None, *, every: bool) -> None:
    """Students trained for the full budget, the front, the reference; with ``every``, also
    the students stopped early, else the limit curve and its band."""
    ax.scatter([s.latency_s for s in an.full], [s.val_acc for s in an.full], s=18, color="0.45", label=f"students, {an.epochs} epochs ({len(an.full)})", zorder=2)
    early = [s for s in an.every if s.epochs < an.epochs]
    if every and early:
        ax.scatter(
            [s.latency_s for s in early], [s.val_acc for s in early], s=18, facecolors="none", edgecolors="0.6",
            label=f"stopped early by ASHA ({len(early)})", zorder=2,
        )  # fmt: skip
    ax.plot(
        [s.latency_s for s in an.front], [s.val_acc for s in an.front], "o-", color="tab:red", markersize=6,
        label=f"Pareto front ({len(an.front)})", zorder=4,
    )  # fmt: skip
    curve = an.curve
    if not every and curve is not None and len(curve.accuracy) > 1:
        # Clipped at 0 s: no student is faster than instantaneous.
        low = [max(0.0, t - 2 * sd) for t, sd in zip(curve.latency_s, curve.std_s)]
        high = [t + 2 * sd for t, sd in zip(curve.latency_s, curve.std_s)]
        ax.fill_betweenx(curve.accuracy, low, high, color="tab:blue", alpha=0.15, label="limit curve ±2σ", zorder=1)
        ax.plot(curve.latency_s, curve.accuracy, "--", color="tab:blue", label="limit curve (GP mean)", zorder=3)
    if ref is not None:
        label = f"teacher (t_max {ref.t_max:.3g} s, a_max {ref.a_max:.3f})" if ref.teacher else f"reference (t_max {ref.t_max:.3g} s, a_max {ref.a_max:.3f})"
        ax.scatter([ref.t_max], [ref.a_max], marker="*", s=220, color="gold", edgecolors="black", label=label, zorder=5)


def _zoom_to_front(ax: Any, an: Analysis, ref: Reference | None) -> None:
    """Limit ``ax`` to the front, its curve band and the reference, with a margin."""
    xs = [s.latency_s for s in an.front] + ([ref.t_max] if ref is not None else [])
    ys = [s.val_acc for s in an.front] + ([ref.a_max] if ref is not None else [])
    if an.curve is not None:
        xs += [t + 2 * sd for t, sd in zip(an.curve.latency_s, an.curve.std_s)]
    x_pad = 0.08 * (max(xs) - min(xs)) or 0.1 * max(xs)
    y_pad = 0.08 * (max(ys) - min(ys)) or 0.01
    ax.set_xlim(max(0.0, min(xs) - x_pad), max(xs) + x_pad)
    ax.set_ylim(min(ys) - y_pad, min(1.0, max(ys)) + y_pad)
