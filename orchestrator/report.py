"""What won: leaderboard, rung survival, status — computed from the results store alone.

Reports need nothing but ``RUN_DIR/results`` (plus ``sweep.toml`` for the metric and the
ladder), so they work on a copy of a run, while it runs, and after a crash. Corrupt fragments
are skipped with a warning by the store and listed under the tables.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.schema import PARAM_PREFIX, TERMINAL_EVENTS, Event
from kdsweep.orchestrator.store import Store


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
class RunSummary:
    cfg: SweepConfig
    trials: list[TrialSummary]  # ranked: best first
    rungs: list[RungStat]
    driver: str | None
    skipped: list[str]
    #: Validation accuracy of the distillation teacher, for trainers that have one.
    teacher_val_acc: float | None = None

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
    rows = store.rows()
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    driver = run.driver_holder()
    trials = []
    for tid, trows in by_trial.items():
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
    return RunSummary(cfg, trials, rungs, driver, skipped, teacher)


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
            console.print(f"baseline {t.trial_id} ranks {i} of {len(summary.trials)}: {summary.metric} {_fmt(t.value)} after {t.epochs} epochs ({t.status})")
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
    }
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
