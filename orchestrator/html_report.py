"""``kdsweep report RUN --html FILE``: the whole report as one self-contained HTML page.

The page opens offline: plotly.js is embedded once, in the head, and every figure is a small
JSON document drawn by ``Plotly.newPlot``; nothing is fetched (no CDN, no fonts, no MathJax).
Plotly was chosen over matplotlib PNGs for the run's own figures because a sweep's curves need
zoom and hover (which trial is that line?) and over Bokeh/Altair because its one bundle
(about 4.8 MB) is all a page needs and the data stays compact JSON. Compact: the learning
curves of all trials are one trace per status group, trials separated by null points, so
1 500 trials cost a few hundred kB, not 1 500 traces. The trainer's own figure (``plot`` of
its report section, matplotlib) is embedded as a base64 PNG beside its text section.

Text is data: every string from the sweep file, a trainer or the results (a choice value,
a trial's error) is shown as written and does nothing. Text nodes and attributes get
:func:`_text` (control characters as visible escapes, then HTML escaping); strings plotly
draws get :func:`_label`, because plotly reads tags and entities in them; the figures' JSON
escapes every ``<``, ``>`` and ``&`` (:func:`_json`), so that no value can end or comment out
the script that holds it.

Like every reading command this module never imports torch: it reads the summary of the
results store (:func:`kdsweep.orchestrator.report.summarize`).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from kdsweep.orchestrator import analyses, headline, pareto, significance, strict_json
from kdsweep.orchestrator import tendencies as tend
from kdsweep.orchestrator.atomic import write_atomic
from kdsweep.orchestrator.report import diverged_line, leaderboard_records, status_counts, summarize, trainer_section
from kdsweep.orchestrator.safe_text import visible
from kdsweep.orchestrator.schedulers import scheduler_of
from kdsweep.orchestrator.schema import ACCURACY, Event
from kdsweep.orchestrator.summary import FIXED, RunSummary, fmt_mean_std, fmt_value, test_metric

#: Leaderboard rows shown by default (fixed points further down are listed below it).
TOP = 25

#: Line colour of each status group of the learning curves.
STATUS_COLORS = {
    "completed": "#1f77b4",
    "stopped": "#b0b0b0",
    "paused": "#9467bd",
    "running": "#2ca02c",
    "interrupted": "#8c564b",
    "failed": "#d62728",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.fig { width: 100%; height: 520px; } .small { height: 340px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
.note { color: #555; font-size: 0.9em; } pre.rich { font-size: 0.8em; line-height: 1.2; }
img.trainer { max-width: 100%; }
"""


def build_html(summary: RunSummary, top: int = TOP) -> str:
    """The report of ``summary`` as one HTML document (module docstring): header, leaderboard
    (``top`` rows), learning curves, rung survival, parameter tendencies with one plot per
    parameter, final-stage results with the comparison against the fixed points, and the
    trainer's section with its figure."""
    figures: dict[str, dict[str, Any]] = {}
    parts = [
        _header(summary),
        _headline(summary, top),
        _leaderboard(summary, top),
        _significance(summary, top),
        _section("Learning curves", _figure(figures, "curves", _curves(summary)), _curves_note(summary)),
        _rungs(summary, figures),
        _pareto(summary, figures),
        _tendencies(summary, figures),
        _final(summary, figures),
        _trainer(summary),
    ]
    from plotly.offline import get_plotlyjs  # the bundle shipped with the Python package

    title = _text(f"kdsweep report: {summary.cfg.name}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style>\n<script>{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(p for p in parts if p)
        + f"\n<script>const FIGURES = {_json(figures)};\n"
        "for (const [id, fig] of Object.entries(FIGURES)) {\n"
        "  Plotly.newPlot(id, fig.data, fig.layout, {responsive: true, displaylogo: false});\n"
        "}\n</script>\n</body></html>\n"
    )


def write_html(summary: RunSummary, path: Path, top: int = TOP) -> None:
    """Replace ``path`` with the HTML report of ``summary`` atomically: a reader (a browser
    reloading it) sees the old page or the new one, never half of one."""
    write_atomic(path, build_html(summary, top).encode())


def write_html_report(run_dir: str | Path, path: Path, top: int = TOP) -> None:
    """Summarise the run in ``run_dir`` and write its HTML report to ``path`` (:func:`write_html`)."""
    write_html(summarize(str(run_dir)), path, top)


class HtmlRefresher:
    """A driver ``on_update`` callback that keeps ``path`` the run's HTML report while it runs.

    It rewrites the page at most every ``period_s`` seconds, and never more often than every
    ten times the last rewrite took, so a large run (the store read and the tendencies grow
    with it) spends at most a tenth of the driver's time on its report. A failed rewrite is a
    warning, not the end of the sweep; the caller writes the page once more at the end.
    """

    def __init__(self, run_dir: Path, path: Path, period_s: float = 30.0) -> None:
        self.run_dir, self.path, self.period_s = run_dir, path, period_s
        self._due = time.monotonic()

    def __call__(self, snapshot: object) -> None:
        """Rewrite the page if it is due; ``snapshot`` (the driver's) is not needed."""
        now = time.monotonic()
        if now < self._due:
            return
        try:
            write_html_report(self.run_dir, self.path)
        except Exception as exc:  # noqa: BLE001 - a report must never stop the sweep it reports
            warnings.warn(f"{self.path} not updated: {type(exc).__name__}: {exc}", stacklevel=1)
        took = time.monotonic() - now
        self._due = now + max(self.period_s, 10.0 * took)


#: The JSON escapes of the characters that HTML's script parsing reads (``</script>``,
#: ``<!--``) or that could start an entity; each can only occur inside a JSON string.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _json(value: Any) -> str:
    """``value`` as JSON safe inside a ``<script>``: NaN and infinities as null (plotly's gap);
    ``<``, ``>`` and ``&`` as ``\\u`` escapes, so that no string (a choice value, a trial's
    error) can close the script or open a comment that swallows its end; every other non-ASCII
    character too (``ensure_ascii``), U+2028 and U+2029 among them."""
    return strict_json.dumps(value, reasons=False, separators=(",", ":"), default=str, ensure_ascii=True).translate(_SCRIPT_SAFE)


def _text(value: object) -> str:
    """``value`` for an HTML text node or attribute: control characters as visible escapes
    (``safe_text.visible``), then HTML-escaped."""
    return html.escape(visible(value))


def _label(value: object) -> str:
    """``value`` for a string plotly draws (a trace name, hover text, a category, a title):
    plotly reads tags (``<b>``, ``<a href>``) and entities in these, so ``&``, ``<``, ``>``
    become entities, and ``%`` becomes ``&#37;`` so that a hover template does not read
    ``%{...}`` in a name as a field; plotly shows each entity as its character."""
    return html.escape(visible(value), quote=False).replace("%", "&#37;")


def _figure(figures: dict[str, dict[str, Any]], fig_id: str, fig: dict[str, Any], small: bool = False) -> str:
    """Register ``fig`` (plotly's {data, layout}) under ``fig_id`` and return its div."""
    figures[fig_id] = fig
    return f'<div id="{fig_id}" class="fig{" small" if small else ""}"></div>'


def _section(title: str, *body: str) -> str:
    return f"<section><h2>{_text(title)}</h2>\n" + "\n".join(b for b in body if b) + "</section>"


def _note(text: str) -> str:
    return f'<p class="note">{_text(text)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned (names), the rest right."""

    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{_text(v)}</{tag}>' for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _header(summary: RunSummary) -> str:
    cfg, state = summary.cfg, summary.state
    counts = ", ".join(f"{k} {v}" for k, v in sorted(status_counts(summary).items()))
    if state is None:
        where = ""
    elif state.finished:
        where = "finished"
    else:
        where = f"{len(state.left)} trials left to run" + (f" (driver: {summary.driver})" if summary.driver else ", no driver running")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"{len(summary.trials) + len(summary.diverged)} of {cfg.num_trials} trials of {cfg.trainer} ({cfg.searcher}, ASHA {cfg.asha.variant}, η = {cfg.asha.reduction_factor}, epochs {cfg.asha.min_epochs}–{cfg.asha.max_epochs}); metric {summary.metric} ({cfg.asha.mode})",
        f"{counts}; {where}" if where else counts,
        f"run directory {summary.run_dir}; written {stamp}",
    ]
    skipped = [_note(f"skipped unreadable fragment {s}") for s in summary.skipped]
    return f"<h1>kdsweep report: {_text(cfg.name)}</h1>\n" + "\n".join(_note(x) for x in lines) + "".join(skipped)


def _leaderboard(summary: RunSummary, top: int) -> str:
    names = [p.name for p in summary.cfg.space]
    records = leaderboard_records(summary)
    shown = records[:top] + [r for r in records[top:] if r["origin"] == FIXED]
    header = ["rank", "trial", summary.metric, "epochs", "status", "origin", f"{ACCURACY} 95 % (Wilson)", "vs leader (McNemar)", *names]
    rows = [
        [r["rank"], r["trial_id"], fmt_value(r[summary.metric]), r["epochs"], r["status"], r["origin"], _interval(r), _versus(r), *(fmt_value(r.get("param." + n)) for n in names)]
        for r in shown
    ]  # fmt: skip
    note = f"top {min(top, len(records))} of {len(records)} trials, longest-trained first, then by {summary.metric}; fixed points further down are appended with their rank"
    failed = [t for t in summary.trials if t.status == Event.FAILED.value]
    errors = [_note(f"failed {t.trial_id} after {t.attempts} attempts: {((t.error or '').strip().splitlines() or [''])[-1]}") for t in failed]
    rejected = [_note(f"rejected {len(summary.rejected)} untrainable proposals (not failures, not counted in num_trials)")] if summary.rejected else []
    line = diverged_line(summary)
    diverged = [_note(line)] if line is not None else []
    return _section("Leaderboard", _note(note), _table(header, rows, left=0), *errors, *diverged, *rejected)


def _headline(summary: RunSummary, top: int) -> str:
    """Does the search beat the baseline? (:mod:`kdsweep.orchestrator.headline`)."""
    h = headline.headline(summary, analyses.of(summary).significance_top(top))
    return _section(f"Headline ({h.stage} stage): {h.verdict}", f"<p>{_text(h.sentence)}</p>")


def _interval(record: dict[str, Any]) -> str:
    low, high = record[f"{ACCURACY}_low"], record[f"{ACCURACY}_high"]
    return "-" if low is None else f"[{low:.4f}, {high:.4f}] (n={record['val_n']})"


def _versus(record: dict[str, Any]) -> str:
    if record["vs_leader"] is None:
        return "-"
    if record["vs_leader_epoch"] is None:
        return record["vs_leader"]
    return f"{record['vs_leader']} (p_adj={record['vs_leader_p_adjusted']:.3g}, epoch {record['vs_leader_epoch']})"


def _significance(summary: RunSummary, top: int) -> str:
    """The leader (and, when a fixed point leads, the best searched trial) against each fixed
    point, in a table and in words, and the leader against the ranks below it, during the
    search (:mod:`kdsweep.orchestrator.significance`)."""
    sig = analyses.of(summary).significance_top(top)
    header = ["trial", "vs", "rank", "origin", "epoch", "n", f"{ACCURACY} trial", f"{ACCURACY} other", "only trial right", "only other right", "p", "p (Holm)", "verdict (descriptive)"]

    def row(p: significance.Paired) -> list[Any]:
        if p.epoch is None:
            return [p.trial, p.other, p.other_rank, p.other_origin, "-", "-", "-", "-", "-", "-", "-", "-", p.verdict]
        return [p.trial, p.other, p.other_rank, p.other_origin, p.epoch, p.n, f"{p.acc:.4f}", f"{p.acc_other:.4f}", p.only_trial, p.only_other, f"{p.p_value:.3g}", f"{p.p_adjusted:.3g}", p.verdict]

    against_fixed = sig.fixed + sig.searched
    fixed = _table(header, [row(p) for p in against_fixed], left=2) if against_fixed else ""
    words = [_note(line) for line in significance.leader_sentences(sig)]
    tie = significance.ties(sig)
    ranks = _table(header, [row(p) for p in sig.ranks], left=2) if sig.ranks else ""
    method = _note(f"intervals: 95 % Wilson score intervals of {ACCURACY} over the val_n validation examples it was counted on; tests: {significance.RULE}")
    return _section("Significance during the search (descriptive)", method, *words, fixed, _note(tie) if tie else "", ranks)


def _curves(summary: RunSummary) -> dict[str, Any]:
    """Every trial's metric against epoch: one line trace per status group (trials split by
    null points), the fixed points and the leader on their own, a marker where ASHA stopped
    or paused a trial, and the rung milestones as dotted vertical lines."""
    metric, cfg = summary.metric, summary.cfg
    series: dict[str, dict[int, float]] = {}
    for row in summary.rows:
        if row["event"] == Event.REPORT.value and row.get(metric) is not None:
            # A retried attempt reports an epoch again; its last value is the one that counts.
            series.setdefault(row["trial_id"], {})[int(row["epoch"])] = float(row[metric])
    leader = summary.trials[0].trial_id if summary.trials else None
    groups: dict[str, list[str]] = {}
    for t in summary.trials:
        group = "leader" if t.trial_id == leader else ("fixed point" if t.origin == FIXED else t.status)
        groups.setdefault(group, []).append(t.trial_id)
    data = []
    order = [*STATUS_COLORS, "fixed point", "leader"]
    for group in sorted(groups, key=lambda g: order.index(g) if g in order else len(order)):
        xs: list[float | None] = []
        ys: list[float | None] = []
        text: list[str | None] = []
        for tid in groups[group]:
            points = sorted(series.get(tid, {}).items())
            xs += [e for e, _ in points] + [None]
            ys += [v for _, v in points] + [None]
            text += [_label(tid)] * len(points) + [None]
        width = {"leader": 3.0, "fixed point": 2.0}.get(group, 1.0)
        color = {"leader": "#ff7f0e", "fixed point": "#000000"}.get(group, STATUS_COLORS.get(group, "#17becf"))
        label = f"leader {leader}" if group == "leader" else f"{group} ({len(groups[group])})"
        data.append({"type": "scatter", "mode": "lines", "name": _label(label), "x": xs, "y": ys, "text": text, "line": {"width": width, "color": color}, "opacity": 1.0 if width > 1 else 0.6, "hovertemplate": "%{text}<br>epoch %{x}<br>" + _label(metric) + " %{y:.4f}<extra></extra>"})
    for status, symbol in ((Event.STOPPED.value, "x"), (Event.PAUSED.value, "diamond-open")):
        ended = [t for t in summary.trials if t.status == status and t.value is not None]
        if ended:
            data.append({
                "type": "scatter", "mode": "markers", "name": f"{status} by ASHA here ({len(ended)})",
                "x": [t.epochs for t in ended], "y": [t.value for t in ended], "text": [_label(t.trial_id) for t in ended],
                "marker": {"symbol": symbol, "size": 6, "color": "#d62728"},
                "hovertemplate": "%{text} " + status + " at epoch %{x}<extra></extra>",
            })  # fmt: skip
    ladder = scheduler_of(cfg.asha, cfg.seed).ladder
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": e, "x1": e, "y0": 0, "y1": 1, "line": {"dash": "dot", "width": 1, "color": "#888"}} for e in ladder]
    notes = [{"x": math.log10(e), "xref": "x", "yref": "paper", "y": 1.0, "text": f"rung {k}", "showarrow": False, "yanchor": "bottom", "font": {"size": 10}} for k, e in enumerate(ladder)]
    layout = {
        "xaxis": {"title": {"text": "epoch (log scale: the rungs are geometric)"}, "type": "log", "tickvals": ladder},
        "yaxis": {"title": {"text": _label(metric)}},
        "shapes": shapes, "annotations": notes, "hovermode": "closest", "margin": {"t": 40},
    }  # fmt: skip
    return {"data": data, "layout": layout}


def _curves_note(summary: RunSummary) -> str:
    return _note(
        f"{summary.metric} at every evaluated epoch of every search trial; dotted lines: the rung milestones; "
        "red marks: where ASHA stopped (x) or paused (◇) a trial. Click a legend entry to hide a group."
    )


def _rungs(summary: RunSummary, figures: dict[str, dict[str, Any]]) -> str:
    rungs = summary.rungs
    rows = [[r.rung, r.epoch, r.reached, r.continued, r.stopped, r.paused, r.diverged, fmt_value(r.best)] for r in rungs]
    table = _table(["rung", "epoch", "reached", "continued", "stopped", "paused", "diverged", f"best {summary.metric}"], rows, left=0)
    labels = [f"rung {r.rung} (epoch {r.epoch})" for r in rungs]
    data = [
        {"type": "bar", "name": name, "x": labels, "y": [getattr(r, field) for r in rungs]}
        for name, field in (("reached", "reached"), ("continued", "continued"), ("stopped", "stopped"), ("paused", "paused"), ("diverged", "diverged"))
    ]
    fig = {"data": data, "layout": {"barmode": "group", "yaxis": {"title": {"text": "trials"}}, "margin": {"t": 20}}}
    return _section("Rung survival", table, _figure(figures, "rungs", fig, small=True))


def _pareto(summary: RunSummary, figures: dict[str, dict[str, Any]]) -> str:
    """A multi-objective sweep's Pareto front (``pareto.pareto``): every trial at the compared
    rung in the plane of the first two objectives, the front joined by a line, and a table of
    its members. Nothing for a single-objective sweep."""
    found = pareto.pareto(summary)
    if found is None:
        return ""
    y, x = found.objectives[0], found.objectives[1]
    data = []
    for on_front, name, style in ((False, "dominated", {"color": "#b0b0b0", "size": 7}), (True, "Pareto front", {"color": "#d62728", "size": 10})):
        group = sorted((p for p in found.points if p.on_front == on_front), key=lambda p: (p.values[x.metric], p.trial_id))
        data.append({
            "type": "scatter", "mode": "lines+markers" if on_front else "markers", "name": name, "marker": style,
            "line": {"color": style["color"]},
            "x": [p.values[x.metric] for p in group], "y": [p.values[y.metric] for p in group],
            "text": [_label(f"{p.trial_id} {p.params}") for p in group], "hoverinfo": "text+x+y",
        })  # fmt: skip
    axis = {o.metric: {"title": {"text": _label(f"{o.metric} ({o.mode})")}} for o in (x, y)}
    fig = {"data": data, "layout": {"xaxis": axis[x.metric], "yaxis": axis[y.metric], "margin": {"t": 20}}}
    others = f"; objectives beyond the first two ({', '.join(o.metric for o in found.objectives[2:])}) are in the table" if len(found.objectives) > 2 else ""
    note = _note(
        f"{len(found.front)} of the {len(found.points)} trials at rung {found.rung} (epoch {found.epoch}) are non-dominated "
        f"(no other trial there is as good in every objective and better in one){others}."
    )
    header = ["trial", *(o.metric for o in found.objectives), "origin"]
    rows = [[p.trial_id, *(fmt_value(p.values[o.metric]) for o in found.objectives), p.origin] for p in found.front]
    return _section("Pareto front", note, _figure(figures, "pareto", fig), _table(header, rows))


def _tendencies(summary: RunSummary, figures: dict[str, dict[str, Any]]) -> str:
    """The tendencies of the searcher's sample (rung 0) and, second, of ASHA's survivors:
    per analysis a table and, per parameter, the metric at its rung against the parameter's
    value (fixed points as black stars)."""
    a = analyses.of(summary)
    if a.tendencies is None:
        counts = ", ".join(map(str, tend.counts(summary)))
        return _section("Parameter tendencies", _note(f"fewer than {tend.MIN_TRIALS} trials inside the space reached rung 0 (trials per rung: {counts})"))
    parts = [_tendencies_one(summary, t, figures) for t in (a.tendencies, a.survivors) if t is not None]
    return _section("Parameter tendencies", *parts)


def _tendencies_one(summary: RunSummary, t: tend.Tendencies, figures: dict[str, dict[str, Any]]) -> str:
    metric = summary.metric
    note = tend.heading(summary, t)
    rows = [
        [p.name, f"{p.importance:.3f}", fmt_value(p.rho), fmt_value(p.p_value), fmt_value(p.p_adjusted), tend.direction_words(p), (" – " if p.ordered else ", ").join(fmt_value(v) for v in p.best)]
        for p in t.params
    ]
    table = _table(["parameter", "importance", "partial rank corr. ρ", "p", "p (Holm)", "direction", "best quarter"], rows)
    fixed = [
        _note(f"fixed point {f.trial_id}: " + (f"outside the space ({', '.join(f'{k}={fmt_value(v)}' for k, v in f.outside.items())}), kept out of the statistics" if f.outside else "inside the space, counted") + (f"; rank {f.rank}" if f.rank is not None else f"; did not reach epoch {t.epoch}"))
        for f in t.fixed
    ]  # fmt: skip
    values = {tid: v for tid, v in summary.rung_values[t.rung].items() if not math.isnan(v)}
    trials = [tr for tr in summary.trials if tr.trial_id in values]
    specs = {spec.name: spec for spec in summary.cfg.space}
    plots: list[str] = []
    for p in t.params:
        spec = specs[p.name]
        categorical = spec.kind == "choice" or not p.ordered
        data = []
        for label, group in (("trials", [tr for tr in trials if tr.origin != FIXED]), ("fixed points", [tr for tr in trials if tr.origin == FIXED])):
            if not group:
                continue
            fixed_group = label == "fixed points"
            marker = {"symbol": "star", "size": 12, "color": "#000"} if fixed_group else {"size": 6, "color": [values[tr.trial_id] for tr in group], "colorscale": "Viridis", "showscale": False, "opacity": 0.8}
            data.append({
                "type": "scatter", "mode": "markers", "name": label, "marker": marker,
                "x": [_label(tr.params.get(p.name)) if categorical else tr.params.get(p.name) for tr in group],
                "y": [values[tr.trial_id] for tr in group], "text": [_label(tr.trial_id) for tr in group],
                "hovertemplate": "%{text}<br>" + _label(p.name) + " %{x}<br>" + _label(metric) + " %{y:.4f}<extra></extra>",
            })  # fmt: skip
        xaxis: dict[str, Any] = {"title": {"text": _label(p.name)}}
        if spec.kind == "loguniform":
            xaxis["type"] = "log"
        elif categorical:
            # The options in the sweep file's order, not in the order the trials list them.
            xaxis.update(type="category", categoryorder="array", categoryarray=[_label(v) for v in spec.values or ()])
        title = _label(f"{p.name}: importance {p.importance:.3f}, {tend.direction_words(p)}")
        # Left-aligned: the mode bar takes the top right corner.
        layout = {"title": {"text": title, "font": {"size": 13}, "x": 0.02, "xanchor": "left"}, "xaxis": xaxis, "yaxis": {"title": {"text": _label(f"{metric} at epoch {t.epoch}")}}, "showlegend": False, "margin": {"t": 40}}
        plots.append(_figure(figures, f"tend-{t.rung}-{len(plots)}", {"data": data, "layout": layout}, small=True))
    heading = f"<h3>{'Among ASHA survivors' if t.selected else 'The searcher sample'} (rung {t.rung})</h3>"
    return heading + _note(note) + table + "".join(fixed) + f'<div class="grid">{"".join(plots)}</div>'


def _final(summary: RunSummary, figures: dict[str, dict[str, Any]]) -> str:
    """The final stage: mean ± std per retrained configuration, every repeat's test value
    as a point, and the comparison with the fixed points."""
    if not summary.final:
        return _section("Final evaluation", _note("no final stage yet: kdsweep retrain RUN --top K --repeats R retrains the best configurations and evaluates them on the test split"))
    metric = summary.metric
    tests = sorted({m for f in summary.final for m in f.stats if m != metric})
    rows = [[f.source, f.origin, f"{f.completed}/{f.runs}", f.epochs, fmt_mean_std(f.stats.get(metric)), *(fmt_mean_std(f.stats.get(m)) for m in tests)] for f in summary.final]
    table = _table(["config", "origin", "runs", "epochs", f"{metric} (val)", *tests], rows, left=2)
    target = test_metric(summary)
    points = [(f.source, v) for f in summary.final for v in f.values.get(target, [])]
    strip = ""
    if points:
        fig = {
            "data": [{"type": "box", "boxpoints": "all", "jitter": 0.3, "pointpos": 0, "x": [_label(s) for s, _ in points], "y": [v for _, v in points], "name": _label(target), "hovertemplate": "%{x}: %{y:.4f}<extra></extra>"}],
            "layout": {"yaxis": {"title": {"text": _label(f"{target} per repeat")}}, "xaxis": {"type": "category"}, "showlegend": False, "margin": {"t": 20}},
        }  # fmt: skip
        strip = _figure(figures, "final", fig, small=True)
    comparisons = analyses.of(summary).comparisons
    if comparisons:
        comp_rows = [
            [f"{c.config} (leader)" if c.leader else c.config, c.fixed, f"{c.n_config} vs {c.n_fixed}", f"{c.mean_config:.4f}", f"{c.mean_fixed:.4f}", f"{c.difference:+.4f}",
             "-" if math.isnan(c.low) else f"[{c.low:+.4f}, {c.high:+.4f}]", fmt_value(c.p_value), fmt_value(c.p_adjusted), c.verdict]
            for c in comparisons
        ]  # fmt: skip
        header = ["config", "vs fixed", "n", "mean", "mean fixed", "difference", "95 % interval", "p", "p (Holm)", "verdict"]
        tests_note = _note(
            f"significance: difference of the mean {target} (config − fixed point, {summary.cfg.asha.mode} is better), Welch's t-test over the repeats and "
            f"its 95 % Welch–Satterthwaite interval; p Holm-adjusted over the {len(comparisons)} comparisons, which the verdict reads"
        ) + _table(header, comp_rows, left=2)
    else:
        tests_note = _note("significance: no comparison yet; it needs a retrained fixed point (kdsweep retrain RUN --trial <a fixed trial>) and a retrained configuration")
    return _section("Final evaluation", _note("kdsweep retrain: mean ± sample std over completed runs"), table, strip, tests_note)


def _trainer(summary: RunSummary) -> str:
    """The trainer's report section as its terminal rendering (rich, exported with inline
    styles), and its figure as an embedded PNG when it draws one and has something to draw."""
    section = trainer_section(summary)
    if section is None:
        return ""
    console = Console(record=True, width=160, file=io.StringIO(), color_system="truecolor")
    section.render(summary, console)
    text = console.export_html(inline_styles=True, code_format='<pre class="rich">{code}</pre>')
    image = ""
    if hasattr(section, "plot"):
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "figure.png"
            try:
                section.plot(summary, png)
            except ValueError:  # nothing to draw yet (the section's text says so)
                pass
            else:
                data = base64.b64encode(png.read_bytes()).decode("ascii")
                image = f'<img class="trainer" alt="{_text(summary.cfg.trainer)} figure" src="data:image/png;base64,{data}">'
    return _section(f"Trainer: {summary.cfg.trainer}", image, text)
