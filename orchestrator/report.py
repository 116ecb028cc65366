"""What won: leaderboard, rung survival, status — computed from the results store alone.

Reports need nothing but ``RUN_DIR/results`` (plus ``sweep.toml`` for the metric and the
ladder), so they work on a copy of a run, while it runs, and after a crash. Corrupt fragments
are skipped with a warning by the store and listed under the tables.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import json
import math
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import RunDir, source_of, trial_order
from kdsweep.orchestrator.schema import PARAM_PREFIX, TERMINAL_EVENTS, Event, Stage
from kdsweep.orchestrator.store import Store
from kdsweep.trainers.base import REPORT_SECTIONS


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """One trial as the store records it."""

    trial_id: str
    origin: str
    status: str
    epochs: int
    value: float | None
    params: dict[str, Any]
    attempts: int
    error: str | None


@dataclasses.dataclass(frozen=True)
class RungStat:
    """How many trials reached a rung, went past it, and were stopped or paused at it."""

    rung: int
    epoch: int
    reached: int
    continued: int
    stopped: int
    paused: int
    best: float | None


@dataclasses.dataclass(frozen=True)
class FinalResult:
    """``kdsweep retrain``'s runs of one configuration: statistics over its completed runs.

    ``stats`` maps the sweep metric and every ``test_*`` metric to (mean, sample std, n);
    std is NaN for a single run.
    """

    source: str
    origin: str
    params: dict[str, Any]
    epochs: int
    completed: int
    runs: int
    stats: dict[str, tuple[float, float, int]]


@dataclasses.dataclass(frozen=True)
class RunSummary:
    cfg: SweepConfig
    trials: list[TrialSummary]  # ranked: best first; rejected proposals are not trials
    rungs: list[RungStat]
    driver: str | None
    skipped: list[str]
    #: Validation accuracy of the distillation teacher, for trainers that have one.
    teacher_val_acc: float | None = None
    #: Every row of the search stage, in store order (trainer report sections read these).
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Proposals the trainer rejected as untrainable: (trial id, reason).
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: ``kdsweep retrain`` results, best validation mean first.
    final: list[FinalResult] = dataclasses.field(default_factory=list)

    @property
    def metric(self) -> str:
        return self.cfg.asha.metric


def summarize(run_dir: str) -> RunSummary:
    """Read the run's store and rank its trials.

    Rank: trials that trained further come first (a 27-epoch result beats a 1-epoch one:
    they are not comparable, and the longer one is what a researcher would deploy), then by
    the metric at the trial's last report, NaN last. Trials with no report yet are listed last.
    """
    run = RunDir(run_dir)
    cfg = run.load_config()
    store = Store(run.path)
    metric, sign = cfg.asha.metric, (1.0 if cfg.asha.mode == "max" else -1.0)
    all_rows = store.rows()
    rows = [r for r in all_rows if r.get("stage") in (None, Stage.SEARCH.value)]
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    driver = run.driver_holder()
    trials = []
    rejected = []
    for tid, trows in by_trial.items():
        if trows[-1]["event"] == Event.REJECTED.value:
            rejected.append((tid, str(trows[-1].get("error") or "")))
            continue
        reports = [r for r in trows if r["event"] == Event.REPORT.value]
        last_report = reports[-1] if reports else None
        last = trows[-1]
        status = last["event"]
        if status not in TERMINAL_EVENTS and status != Event.PAUSED.value:
            status = "running" if driver else "interrupted"
        value = None if last_report is None else last_report.get(metric)
        trials.append(
            TrialSummary(
                trial_id=tid,
                origin=last.get("origin") or "",
                status=status,
                epochs=max((int(r["epoch"]) for r in reports), default=0),
                value=None if value is None else float(value),
                params={k[len(PARAM_PREFIX):]: v for k, v in last.items() if k.startswith(PARAM_PREFIX)},
                attempts=1 + max(int(r["attempt"]) for r in trows),
                error=last.get("error"),
            )
        )

    def key(t: TrialSummary) -> tuple[int, int, float, str]:
        missing = t.value is None or math.isnan(t.value)
        return (-t.epochs, int(missing), 0.0 if missing else -sign * (t.value or 0.0), t.trial_id)

    trials.sort(key=key)
    ladder = asha.rung_ladder(cfg.asha.min_epochs, cfg.asha.max_epochs, cfg.asha.reduction_factor)
    rungs = []
    for k, milestone in enumerate(ladder):
        values = store.rung_values(k, metric)
        reached = set(values)
        ended_here = {t.trial_id: t.status for t in trials if t.trial_id in reached and t.epochs == milestone}
        real = [v for v in values.values() if not math.isnan(v)]
        rungs.append(
            RungStat(
                rung=k,
                epoch=milestone,
                reached=len(reached),
                continued=sum(1 for t in trials if t.trial_id in reached and t.epochs > milestone),
                stopped=sum(1 for s in ended_here.values() if s == Event.STOPPED.value),
                paused=sum(1 for s in ended_here.values() if s == Event.PAUSED.value),
                best=(max(real) if sign > 0 else min(real)) if real else None,
            )
        )
    skipped = [f"{path.name}: {reason}" for path, reason in store.skipped]
    teacher = next((float(r["teacher_val_acc"]) for r in rows if r.get("teacher_val_acc") is not None), None)
    final_rows = [r for r in all_rows if r.get("stage") == Stage.FINAL.value]
    final = _final_results(cfg, run, final_rows, sign)
    return RunSummary(cfg, trials, rungs, driver, skipped, teacher, rows, rejected, final)


def _final_results(cfg: SweepConfig, run: RunDir, rows: list[dict[str, Any]], sign: float) -> list[FinalResult]:
    """Group final-stage runs by the search trial they retrain; statistics over the runs that
    completed (a run still training or failed is counted in ``runs`` but not averaged)."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["trial_id"], []).append(row)
    records = run.read_trials("final")
    groups: dict[str, list[str]] = {}
    for tid in sorted(set(by_run) | set(records), key=trial_order):
        groups.setdefault(source_of(tid), []).append(tid)
    out = []
    for source, tids in groups.items():
        done = [by_run[t] for t in tids if t in by_run and by_run[t][-1]["event"] == Event.COMPLETED.value]
        last = [next(r for r in reversed(trows) if r["event"] == Event.REPORT.value) for trows in done]
        metrics = [cfg.asha.metric] + sorted({k for r in last for k, v in r.items() if k.startswith("test_") and v is not None})
        stats = {}
        for m in metrics:
            values = [float(r[m]) for r in last if r.get(m) is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                stats[m] = (statistics.fmean(values), std, len(values))
        first = records.get(tids[0])
        params = dict(first.params) if first is not None else {k[len(PARAM_PREFIX):]: v for k, v in by_run[tids[0]][-1].items() if k.startswith(PARAM_PREFIX)}
        epochs = first.until_epoch if first is not None and first.until_epoch else max((int(r["epoch"]) for r in by_run.get(tids[0], [])), default=0)
        origin = first.origin if first is not None else str(by_run[tids[0]][-1].get("origin") or "")
        out.append(FinalResult(source, origin, params, epochs, len(done), len(tids), stats))

    def key(f: FinalResult) -> tuple[int, float, str]:
        mean = f.stats.get(cfg.asha.metric, (math.nan, math.nan, 0))[0]
        return (int(math.isnan(mean)), 0.0 if math.isnan(mean) else -sign * mean, f.source)

    return sorted(out, key=key)


def last_reports(summary: RunSummary) -> dict[str, dict[str, Any]]:
    """Each search trial's last ``report`` row (its furthest evaluation), by trial id."""
    out: dict[str, dict[str, Any]] = {}
    for row in summary.rows:
        if row["event"] == Event.REPORT.value:
            out[row["trial_id"]] = row
    return out


def trainer_section(summary: RunSummary) -> ModuleType | None:
    """The trainer's own report module (``REPORT_SECTIONS``), or None if it has none."""
    name = REPORT_SECTIONS.get(summary.cfg.trainer)
    return importlib.import_module(name) if name else None


def plot_unavailable(summary: RunSummary) -> str | None:
    """Why ``--plot`` cannot draw this run, or None when its trainer draws one."""
    section = trainer_section(summary)
    if section is not None and hasattr(section, "plot"):
        return None
    drawing = sorted(t for t, m in REPORT_SECTIONS.items() if hasattr(importlib.import_module(m), "plot"))
    return f"trainer {summary.cfg.trainer!r} draws no plot; trainers with one: {', '.join(drawing)}"


def plot(summary: RunSummary, path: Path) -> None:
    """Draw the trainer's figure of the run into ``path`` (see :func:`plot_unavailable`)."""
    section = trainer_section(summary)
    if section is None or not hasattr(section, "plot"):
        raise ValueError(plot_unavailable(summary))
    section.plot(summary, path)


#: Parameter columns the final-evaluation table shows at most.
MAX_FINAL_PARAMS = 9


def _mean_std(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "-"
    mean, std, n = stat
    return f"{mean:.4f} ± {std:.4f} (n={n})" if not math.isnan(std) else f"{mean:.4f} (n=1)"


def render_final(summary: RunSummary, console: Console) -> None:
    """The final-stage table: per retrained configuration, mean ± std over its runs."""
    if not summary.final:
        return
    metric = summary.metric
    tests = sorted({m for f in summary.final for m in f.stats if m != metric})
    table = Table(title="final evaluation (kdsweep retrain): mean ± sample std over completed runs", title_justify="left")
    for col in ("config", "origin", "runs", "epochs", f"{metric} (val)", *tests):
        table.add_column(col, no_wrap=True)
    # A few parameters fit beside the statistics; a large space (a graph's M² gates) would fold
    # every column into slivers, and the config id leads to its row in the leaderboard.
    names = [p.name for p in summary.cfg.space] if len(summary.cfg.space) <= MAX_FINAL_PARAMS else []
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    for f in summary.final:
        table.add_row(
            f.source, f.origin, f"{f.completed}/{f.runs}", str(f.epochs), _mean_std(f.stats.get(metric)),
            *(_mean_std(f.stats.get(m)) for m in tests), *(_fmt(f.params.get(n)) for n in names),
        )  # fmt: skip
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def render_table(summary: RunSummary, console: Console, top: int = 10) -> None:
    cfg = summary.cfg
    title = f"{cfg.name}: top {min(top, len(summary.trials))} of {len(summary.trials)} trials by {summary.metric} ({cfg.asha.mode})"
    board = Table(title=title, title_justify="left")
    # Identity and outcome columns never shrink; parameters fold when the terminal is narrow.
    for col in ("rank", "trial", summary.metric, "epochs", "status", "origin"):
        board.add_column(col, justify="right" if col in ("rank", summary.metric, "epochs") else "left", no_wrap=True, min_width=len(col))
    board.columns[4].min_width = len("completed")
    names = [p.name for p in cfg.space]
    for name in names:
        board.add_column(name, justify="right", overflow="fold")
    for i, t in enumerate(summary.trials[:top], start=1):
        board.add_row(str(i), t.trial_id, _fmt(t.value), str(t.epochs), t.status, t.origin, *(_fmt(t.params.get(n)) for n in names))
    console.print(board)
    if summary.teacher_val_acc is not None:
        console.print(f"teacher val_acc: {summary.teacher_val_acc:.4f} (the students' reference)")
    fixed = [(i, t) for i, t in enumerate(summary.trials, start=1) if t.origin == "fixed"]
    for i, t in fixed:
        if i > top:
            console.print(f"baseline {t.trial_id} ranks {i} of {len(summary.trials)}: {summary.metric} {_fmt(t.value)} after {t.epochs} epoch{'s' if t.epochs != 1 else ''} ({t.status})")
    rungs = Table(title="rung survival", title_justify="left")
    for col in ("rung", "epoch", "reached", "continued", "stopped", "paused", f"best {summary.metric}"):
        rungs.add_column(col, justify="right")
    for r in summary.rungs:
        rungs.add_row(str(r.rung), str(r.epoch), str(r.reached), str(r.continued), str(r.stopped), str(r.paused), _fmt(r.best))
    console.print(rungs)
    failed = [t for t in summary.trials if t.status == Event.FAILED.value]
    for t in failed:
        last_line = (t.error or "").strip().splitlines()[-1:] or [""]
        console.print(f"[red]failed[/red] {t.trial_id} after {t.attempts} attempts: {last_line[0]}")
    if summary.rejected:
        reasons = sorted({reason for _, reason in summary.rejected})
        console.print(f"rejected {len(summary.rejected)} untrainable proposals (not failures, not counted in num_trials): {'; '.join(reasons[:3])}", highlight=False)
    render_final(summary, console)
    section = trainer_section(summary)
    if section is not None:
        section.render(summary, console)
    for s in summary.skipped:
        console.print(f"[yellow]skipped unreadable fragment[/yellow] {s}")


def leaderboard_records(summary: RunSummary, top: int | None = None) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(summary.trials[:top], start=1):
        rec: dict[str, Any] = {
            "rank": i, "trial_id": t.trial_id, summary.metric: t.value, "epochs": t.epochs,
            "status": t.status, "origin": t.origin, "attempts": t.attempts,
        }  # fmt: skip
        rec.update({PARAM_PREFIX + k: v for k, v in t.params.items()})
        out.append(rec)
    return out


def to_json(summary: RunSummary, top: int | None = None) -> str:
    doc = {
        "sweep": summary.cfg.name,
        "metric": summary.metric,
        "mode": summary.cfg.asha.mode,
        "leaderboard": leaderboard_records(summary, top),
        "rungs": [dataclasses.asdict(r) for r in summary.rungs],
        "skipped": summary.skipped,
        "teacher_val_acc": summary.teacher_val_acc,
        "rejected": [{"trial_id": t, "reason": r} for t, r in summary.rejected],
        "final": [dataclasses.asdict(f) for f in summary.final],
    }
    section = trainer_section(summary)
    if section is not None:
        doc[summary.cfg.trainer] = section.to_dict(summary)
    return json.dumps(doc, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def to_csv(summary: RunSummary, top: int | None = None) -> str:
    records = leaderboard_records(summary, top)
    buf = io.StringIO()
    fields: list[str] = []
    for rec in records:
        fields += [k for k in rec if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def status_counts(summary: RunSummary) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in summary.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    if summary.rejected:
        counts["rejected"] = len(summary.rejected)
    return counts


def progress(summary: RunSummary) -> tuple[int, int]:
    """Epochs trained so far and the budget if every trial ran to max_epochs."""
    cfg = summary.cfg
    done = sum(t.epochs for t in summary.trials)
    return done, cfg.num_trials * cfg.asha.max_epochs


def render_status(summary: RunSummary, console: Console) -> None:
    cfg = summary.cfg
    counts = status_counts(summary)
    done, budget = progress(summary)
    driver = summary.driver or "none (resume with: kdsweep launch --resume RUN_DIR)"
    console.print(f"sweep {cfg.name}: {len(summary.trials)} of {cfg.num_trials} trials started; driver: {driver}")
    console.print("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    console.print(f"  epochs trained {done} ({100.0 * done / max(1, budget):.1f}% of the {budget}-epoch budget without early stopping)")
    active = [t for t in summary.trials if t.status in ("running", "interrupted", Event.PAUSED.value)]
    if active:
        table = Table(title="active or resumable trials", title_justify="left")
        for col in ("trial", "status", "epochs", summary.metric):
            table.add_column(col)
        for t in sorted(active, key=lambda t: t.trial_id):
            table.add_row(t.trial_id, t.status, str(t.epochs), _fmt(t.value))
        console.print(table)
    if summary.trials:
        best = summary.trials[0]
        console.print(f"  leader {best.trial_id}: {summary.metric} {_fmt(best.value)} after {best.epochs} epochs")
    if summary.final:
        done = sum(f.completed for f in summary.final)
        runs = sum(f.runs for f in summary.final)
        each = ", ".join(f"{f.source} {f.completed}/{f.runs}" for f in summary.final)
        console.print(f"  final stage (kdsweep retrain): {done} of {runs} runs completed ({each})")
