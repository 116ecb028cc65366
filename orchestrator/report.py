"""What won: leaderboard, rung survival, status — computed from the results store alone.

Reports need nothing but ``RUN_DIR/results`` (plus ``sweep.toml`` for the metric and the
ladder), so they work on a copy of a run, while it runs, and after a crash. Corrupt fragments
are skipped with a warning by the store and listed under the tables.

:func:`summarize` builds the run's :class:`~kdsweep.orchestrator.summary.RunSummary` (the
model every reading module reads, in ``summary.py``, imported here and re-exported); the rest
of this module renders it, with the statistics of ``analyses.of``.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import math
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.text import Text

from kdsweep.orchestrator import analyses, headline, pareto, schedulers, significance, strict_json, tendencies, warm_start
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.multiplicity import METHOD
from kdsweep.orchestrator.ranking import rank_key
from kdsweep.orchestrator.rundir import RunDir, TrialRecord, source_of, trial_order
from kdsweep.orchestrator.safe_text import DataTable, plain
from kdsweep.orchestrator.schema import ACCURACY, PARAM_PREFIX, PREDICTED, PREDICTED_STD, TERMINAL_EVENTS, Event, Stage
from kdsweep.orchestrator.store import Store
from kdsweep.orchestrator.summary import (
    FIXED,
    FinalResult,
    RungStat,
    RunSummary,
    SweepState,
    TrialSummary,
    fmt_mean_std,
    fmt_value,
)
from kdsweep.trainers.base import trainer_names, trainer_spec


def summarize(run_dir: str) -> RunSummary:
    """Read the run's store and rank its trials.

    Rank: ``ranking.rank_key`` — trials that trained further come first (a 27-epoch result
    beats a 1-epoch one: they are not comparable, and the longer one is what a researcher
    would deploy), then by the metric at the trial's last report, NaN last. Trials with no
    report yet are listed last.
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
    diverged = []
    rejected = []
    for tid, trows in by_trial.items():
        last = trows[-1]
        if last["event"] == Event.REJECTED.value:
            rejected.append((tid, str(last.get("error") or "")))
            continue
        reports = [r for r in trows if r["event"] == Event.REPORT.value]
        last_report = reports[-1] if reports else None
        status = last["event"]
        if status not in TERMINAL_EVENTS and status != Event.PAUSED.value:
            status = "running" if driver else "interrupted"
        value = None if last_report is None else last_report.get(metric)
        trial = TrialSummary(
            trial_id=tid,
            origin=last.get("origin") or "",
            status=status,
            epochs=max((int(r["epoch"]) for r in reports), default=0),
            value=None if value is None else float(value),
            params={k[len(PARAM_PREFIX):]: v for k, v in last.items() if k.startswith(PARAM_PREFIX)},
            attempts=1 + max(int(r["attempt"]) for r in trows),
            error=last.get("error"),
        )
        if status == Event.DIVERGED.value:
            # Its last numbers are a broken model's (a NaN loss, class 0's share as val_acc):
            # kept apart, with the epoch it diverged at, so no ranking or test sees them.
            diverged.append(dataclasses.replace(trial, epochs=int(last["epoch"]), value=None))
        else:
            trials.append(trial)

    trials.sort(key=lambda t: rank_key(t.trial_id, t.epochs, t.value, cfg.asha.mode))
    diverged.sort(key=lambda t: trial_order(t.trial_id))
    gone = {t.trial_id for t in diverged}
    policy = schedulers.load(cfg.asha, cfg.seed, run.path, store)
    ladder = policy.ladder
    rungs = []
    # What ASHA saw at each rung (diverged trials' earlier values included), and what the
    # statistics read (without them).
    seen = [store.rung_values(k, metric) for k in range(len(ladder))]
    rung_values = [{tid: v for tid, v in values.items() if tid not in gone} for values in seen]
    last_rung = {tid: k for k, values in enumerate(seen) for tid in values if tid in gone}
    for k, milestone in enumerate(ladder):
        reached = set(seen[k])
        ended_here = {t.trial_id: t.status for t in trials if t.trial_id in reached and t.epochs == milestone}
        real = [v for v in rung_values[k].values() if not math.isnan(v)]
        rungs.append(
            RungStat(
                rung=k,
                epoch=milestone,
                reached=len(reached),
                continued=sum(1 for t in trials + diverged if t.trial_id in reached and t.epochs > milestone),
                stopped=sum(1 for s in ended_here.values() if s == Event.STOPPED.value),
                paused=sum(1 for s in ended_here.values() if s == Event.PAUSED.value),
                best=(max(real) if sign > 0 else min(real)) if real else None,
                diverged=sum(1 for r in last_rung.values() if r == k),
            )
        )
    skipped = [f"{path.name}: {reason}" for path, reason in store.skipped]
    teacher = next((float(r["teacher_val_acc"]) for r in rows if r.get("teacher_val_acc") is not None), None)
    final_rows = [r for r in all_rows if r.get("stage") == Stage.FINAL.value]
    final = _final_results(cfg, run, final_rows, sign)
    records = run.read_trials(Stage.SEARCH.value, cfg)
    rung_points = [store.rung_points(k, cfg.asha.metrics) for k in range(len(ladder))]
    state = _sweep_state(cfg, policy, trials + diverged, {tid for tid, _ in rejected}, records, rung_points)
    warm = warm_start.read(run, cfg)
    return RunSummary(
        cfg, trials, rungs, driver, skipped, teacher, rows, rejected, final, run.path, rung_values, state, diverged, store.identity(),
        warm_start=warm.sources if warm is not None else (),
    )  # fmt: skip


def _sweep_state(
    cfg: SweepConfig,
    policy: schedulers.Scheduler,
    trials: list[TrialSummary],
    rejected: set[str],
    records: dict[str, TrialRecord],
    rung_points: list[dict[str, tuple[float, ...]]],
) -> SweepState:
    """What is left to run, decided as the driver would decide it (see :class:`SweepState`).

    A trial has left rung k when its record targets a later epoch than the milestone (the
    driver's own test) or, for a copy of the results without records, when it reported past
    the milestone. Every trial that is not paused is busy, as in the driver's ``get_job``.
    ``rung_points`` are the rung values over every objective (``Store.rung_points``);
    ``policy`` is the run's scheduler with the state its driver saved.
    """
    by_id = {t.trial_id: t for t in trials}
    paused = {t.trial_id for t in trials if t.status == Event.PAUSED.value}
    promoted_out = [
        {t.trial_id for t in trials if t.epochs > milestone}
        | {tid for tid, r in records.items() if policy.target(r.until_epoch) > milestone}
        for milestone in policy.ladder
    ]
    resumed = {tid for tid in paused if tid in records and policy.target(records[tid].until_epoch) > by_id[tid].epochs}
    busy = set(by_id) - paused | resumed
    promotable: list[str] = []
    # get_job hands out one trial per call; asking again with that one busy lists them all.
    while (job := policy.next_job(rung_points, promoted_out, busy)) is not None:
        promotable.append(job[0])
        busy.add(job[0])
    queued = [tid for tid in records if tid not in by_id and tid not in rejected]
    by_status = {s: [t.trial_id for t in trials if t.status == s] for s in ("running", "interrupted")}
    left = by_status["running"] + by_status["interrupted"] + queued + sorted(resumed) + promotable
    return SweepState(
        proposed=len(trials) + len(queued),
        finished=len(trials) + len(queued) >= cfg.num_trials and not left,
        running=sorted(by_status["running"], key=trial_order),
        interrupted=sorted(by_status["interrupted"], key=trial_order),
        queued=sorted(queued, key=trial_order),
        promoted=sorted(resumed, key=trial_order),
        promotable=promotable,
        not_promoted=sorted(paused - resumed - set(promotable), key=trial_order),
    )


def _final_results(cfg: SweepConfig, run: RunDir, rows: list[dict[str, Any]], sign: float) -> list[FinalResult]:
    """Group final-stage runs by the search trial they retrain; statistics over the runs that
    completed (a run still training or failed is counted in ``runs`` but not averaged)."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["trial_id"], []).append(row)
    records = run.read_trials(Stage.FINAL.value, cfg)
    groups: dict[str, list[str]] = {}
    for tid in sorted(set(by_run) | set(records), key=trial_order):
        groups.setdefault(source_of(tid), []).append(tid)
    out = []
    for source, tids in groups.items():
        done = [by_run[t] for t in tids if t in by_run and by_run[t][-1]["event"] == Event.COMPLETED.value]
        last = [next(r for r in reversed(trows) if r["event"] == Event.REPORT.value) for trows in done]
        metrics = [cfg.asha.metric] + sorted({k for r in last for k, v in r.items() if k.startswith("test_") and v is not None})
        stats, per_metric = {}, {}
        for m in metrics:
            values = [float(r[m]) for r in last if r.get(m) is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                stats[m] = (statistics.fmean(values), std, len(values))
                per_metric[m] = values
        first = records.get(tids[0])
        params = dict(first.params) if first is not None else {k[len(PARAM_PREFIX):]: v for k, v in by_run[tids[0]][-1].items() if k.startswith(PARAM_PREFIX)}
        epochs = first.until_epoch if first is not None and first.until_epoch else max((int(r["epoch"]) for r in by_run.get(tids[0], [])), default=0)
        origin = first.origin if first is not None else str(by_run[tids[0]][-1].get("origin") or "")
        out.append(FinalResult(source, origin, params, epochs, len(done), len(tids), stats, per_metric))

    def key(f: FinalResult) -> tuple[int, float, str]:
        mean = f.stats.get(cfg.asha.metric, (math.nan, math.nan, 0))[0]
        return (int(math.isnan(mean)), 0.0 if math.isnan(mean) else -sign * mean, f.source)

    return sorted(out, key=key)


def render_comparisons(summary: RunSummary, console: Console) -> None:
    """The final comparison table (``significance.final_comparisons``, from
    :func:`analyses.of`); nothing when it is empty."""
    rows = analyses.of(summary).comparisons
    if not rows:
        return
    metric = rows[0].metric
    title = (
        f"retrained configurations vs fixed points on {metric} ({summary.cfg.asha.mode}): difference of means, 95 % Welch interval, "
        f"Welch t-test over the repeats, p {METHOD}-adjusted over the {len(rows)} comparisons"
    )
    table = DataTable(title=title, title_justify="left")
    for col in ("config", "vs fixed", "n", "difference", "95 % interval", "p", f"p ({METHOD})", "verdict"):
        table.add_column(col, justify="right" if col in ("n", "difference", "p", f"p ({METHOD})") else "left", no_wrap=True)
    for c in rows:
        interval = "-" if math.isnan(c.low) else f"[{c.low:+.4f}, {c.high:+.4f}]"
        name = f"{c.config} (leader)" if c.leader else c.config
        table.add_row(name, c.fixed, f"{c.n_config} vs {c.n_fixed}", f"{c.difference:+.4f}", interval, fmt_value(c.p_value), fmt_value(c.p_adjusted), c.verdict)
    console.print(table)


def trainer_section(summary: RunSummary) -> ModuleType | None:
    """The trainer's own report module (``TrainerSpec.report_section``), or None."""
    name = trainer_spec(summary.cfg.trainer).report_section
    return importlib.import_module(name) if name else None


def plot_unavailable(summary: RunSummary) -> str | None:
    """Why ``--plot`` cannot draw this run, or None when its trainer draws one."""
    section = trainer_section(summary)
    if section is not None and hasattr(section, "plot"):
        return None
    sections = {name: trainer_spec(name).report_section for name in trainer_names()}
    drawing = [name for name, module in sections.items() if module and hasattr(importlib.import_module(module), "plot")]
    return f"trainer {summary.cfg.trainer!r} draws no plot; trainers with one: {', '.join(drawing)}"


def plot(summary: RunSummary, path: Path) -> None:
    """Draw the trainer's figure of the run into ``path`` (see :func:`plot_unavailable`)."""
    section = trainer_section(summary)
    if section is None or not hasattr(section, "plot"):
        raise ValueError(plot_unavailable(summary))
    section.plot(summary, path)


#: Parameter columns the final-evaluation table shows at most.
MAX_FINAL_PARAMS = 9


def render_final(summary: RunSummary, console: Console) -> None:
    """The final-stage table: per retrained configuration, mean ± std over its runs."""
    if not summary.final:
        return
    metric = summary.metric
    tests = sorted({m for f in summary.final for m in f.stats if m != metric})
    table = DataTable(title="final evaluation (kdsweep retrain): mean ± sample std over completed runs", title_justify="left")
    for col in ("config", "origin", "runs", "epochs", f"{metric} (val)", *tests):
        table.add_column(col, no_wrap=True)
    # A few parameters fit beside the statistics; a large space (a graph's M² gates) would fold
    # every column into slivers, and the config id leads to its row in the leaderboard.
    names = [p.name for p in summary.cfg.space] if len(summary.cfg.space) <= MAX_FINAL_PARAMS else []
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    for f in summary.final:
        table.add_row(
            f.source, f.origin, f"{f.completed}/{f.runs}", str(f.epochs), fmt_mean_std(f.stats.get(metric)),
            *(fmt_mean_std(f.stats.get(m)) for m in tests), *(fmt_value(f.params.get(n)) for n in names),
        )  # fmt: skip
    console.print(table)
    render_comparisons(summary, console)


def render_table(summary: RunSummary, console: Console, top: int = 10) -> None:
    cfg = summary.cfg
    title = f"{cfg.name}: top {min(top, len(summary.trials))} of {len(summary.trials)} trials by {summary.metric} ({cfg.asha.mode})"
    found = analyses.of(summary)
    sig = found.significance_top(top)
    interval_col = f"{ACCURACY} 95 % ({significance.INTERVAL_METHOD})"
    board = DataTable(title=title, title_justify="left")
    # Identity and outcome columns never shrink; parameters fold when the terminal is narrow.
    for col in ("rank", "trial", summary.metric, "epochs", "status", "origin", interval_col, "vs leader (McNemar, Holm)"):
        board.add_column(col, justify="right" if col in ("rank", summary.metric, "epochs") else "left", no_wrap=True, min_width=len(col))
    board.columns[4].min_width = len("completed")
    names = [p.name for p in cfg.space]
    for name in names:
        board.add_column(name, justify="right", overflow="fold")
    versus = {p.other: significance.short(p) for p in sig.ranks}
    for i, t in enumerate(summary.trials[:top], start=1):
        interval = significance.fmt_interval(sig.intervals[t.trial_id])
        board.add_row(str(i), t.trial_id, fmt_value(t.value), str(t.epochs), t.status, t.origin, interval, versus.get(t.trial_id, "-"), *(fmt_value(t.params.get(n)) for n in names))
    console.print(board)
    significance.render(sig, console)
    for source in summary.warm_start:
        console.print(plain(source.describe()))
    if summary.teacher_val_acc is not None:
        console.print(f"teacher val_acc: {summary.teacher_val_acc:.4f} (the students' reference)")
    fixed = [(i, t) for i, t in enumerate(summary.trials, start=1) if t.origin == FIXED]
    for i, t in fixed:
        if i > top:
            console.print(plain(f"baseline {t.trial_id} ranks {i} of {len(summary.trials)}: {summary.metric} {fmt_value(t.value)} after {t.epochs} epoch{'s' if t.epochs != 1 else ''} ({t.status})"))
    rungs = DataTable(title="rung survival", title_justify="left")
    for col in ("rung", "epoch", "reached", "continued", "stopped", "paused", "diverged", f"best {summary.metric}"):
        rungs.add_column(col, justify="right")
    for r in summary.rungs:
        rungs.add_row(str(r.rung), str(r.epoch), str(r.reached), str(r.continued), str(r.stopped), str(r.paused), str(r.diverged), fmt_value(r.best))
    console.print(rungs)
    line = predicted_stops_line(summary)
    if line is not None:
        console.print(plain(line))
    pareto.render(summary, console)

    tendencies.render(summary, found.tendencies, found.survivors, console)
    failed = [t for t in summary.trials if t.status == Event.FAILED.value]
    for t in failed:
        last_line = (t.error or "").strip().splitlines()[-1:] or [""]
        console.print(Text.assemble(("failed", "red"), plain(f" {t.trial_id} after {t.attempts} attempts: {last_line[0]}")))
    line = diverged_line(summary)
    if line is not None:
        console.print(plain(line))
    if summary.rejected:
        reasons = sorted({reason for _, reason in summary.rejected})
        console.print(plain(f"rejected {len(summary.rejected)} untrainable proposals (not failures, not counted in num_trials): {'; '.join(reasons[:3])}"))
    render_final(summary, console)
    section = trainer_section(summary)
    if section is not None:
        section.render(summary, console)
    for s in summary.skipped:
        console.print(Text.assemble(("skipped unreadable fragment", "yellow"), plain(f" {s}")))
    headline.render(summary, sig, console)


#: Diverged trials a report names one by one; more are counted.
MAX_DIVERGED_NAMED = 5
#: Trials stopped on their predicted curves that the text report names; JSON lists all.
MAX_PREDICTED_NAMED = 5


def predicted_stops(summary: RunSummary) -> list[dict[str, Any]]:
    """Each trial stopped or left paused at a rung where its report carries a prediction
    (``[asha] extrapolate``), in trial order: the epoch, its value there, and what was
    predicted for the top rung (mean and sd), as the worker recorded it with the decision."""
    ended = {t.trial_id for t in summary.trials if t.status in (Event.STOPPED.value, Event.PAUSED.value)}
    last: dict[str, dict[str, Any]] = {}
    for row in summary.rows:
        if row["trial_id"] in ended and row["event"] == Event.REPORT.value:
            last[row["trial_id"]] = row
    return [
        {"trial_id": tid, "epoch": int(r["epoch"]), summary.metric: r.get(summary.metric), "predicted": r[PREDICTED], "predicted_std": r.get(PREDICTED_STD), "at_epoch": summary.rungs[-1].epoch}
        for tid, r in sorted(last.items(), key=lambda item: trial_order(item[0]))
        if r.get(PREDICTED) is not None
    ]


def predicted_stops_line(summary: RunSummary) -> str | None:
    """The text report's line on the trials stopped on their predicted curves, or None."""
    stops = predicted_stops(summary)
    if not stops:
        return None
    named = "; ".join(
        f"{s['trial_id']} at epoch {s['epoch']}: {fmt_value(s[summary.metric])}, predicted {fmt_value(s['predicted'])} ± {fmt_value(s['predicted_std'])}"
        for s in stops[:MAX_PREDICTED_NAMED]
    )
    more = f"; {len(stops) - MAX_PREDICTED_NAMED} more in report --format json" if len(stops) > MAX_PREDICTED_NAMED else ""
    return f"stopped on their predicted {summary.metric} at epoch {summary.rungs[-1].epoch} (asha.extrapolate): {len(stops)} trials; {named}{more}"


def diverged_line(summary: RunSummary) -> str | None:
    """One line on the trials that diverged (how many, the first few with their epoch and
    value), or None when none did."""
    if not summary.diverged:
        return None
    named = "; ".join(f"{t.trial_id}: {t.error}" for t in summary.diverged[:MAX_DIVERGED_NAMED])
    more = f"; and {len(summary.diverged) - MAX_DIVERGED_NAMED} more" if len(summary.diverged) > MAX_DIVERGED_NAMED else ""
    return (
        f"diverged {len(summary.diverged)} trials (a non-finite loss or metric ended each at once; "
        f"left out of the leaderboard and every statistic): {named}{more}"
    )


def diverged_records(summary: RunSummary) -> list[dict[str, Any]]:
    """The diverged trials for JSON: id, origin, the epoch and the value that diverged, params."""
    return [
        {"trial_id": t.trial_id, "origin": t.origin, "epoch": t.epochs, "error": t.error, **{PARAM_PREFIX + k: v for k, v in t.params.items()}}
        for t in summary.diverged
    ]


def leaderboard_records(summary: RunSummary, top: int | None = None) -> list[dict[str, Any]]:
    """The first ``top`` trials (all when None), best first: identity, outcome, ``val_n``
    and the Wilson interval of ``val_acc`` at the trial's last report (``val_acc_low``/
    ``_high``; null without ``val_n``), the exact McNemar verdict of the trial against the
    leader (``vs_leader``: "worse" when the leader is better; with ``vs_leader_p`` and the
    ``vs_leader_epoch`` compared at; null for the leader), and the parameters."""
    sig = analyses.of(summary).significance_top(top)
    versus = {p.other: p for p in sig.ranks}
    out = []
    for i, t in enumerate(summary.trials[:top], start=1):
        iv, vs = sig.intervals[t.trial_id], versus.get(t.trial_id)
        rec: dict[str, Any] = {
            "rank": i, "trial_id": t.trial_id, summary.metric: t.value, "epochs": t.epochs,
            "status": t.status, "origin": t.origin, "attempts": t.attempts,
            "val_n": iv.n, f"{ACCURACY}_low": None if iv.n is None else iv.low, f"{ACCURACY}_high": None if iv.n is None else iv.high,
            "vs_leader": None if vs is None else significance.against_leader(vs),
            "vs_leader_p": None if vs is None or vs.epoch is None else vs.p_value,
            "vs_leader_p_adjusted": None if vs is None or vs.epoch is None else vs.p_adjusted,
            "vs_leader_epoch": None if vs is None else vs.epoch,
        }  # fmt: skip
        rec.update({PARAM_PREFIX + k: v for k, v in t.params.items()})
        out.append(rec)
    return out


def to_json(summary: RunSummary, top: int | None = None) -> str:
    found = analyses.of(summary)
    doc: dict[str, Any] = {
        "sweep": summary.cfg.name,
        "metric": summary.metric,
        "mode": summary.cfg.asha.mode,
        "leaderboard": leaderboard_records(summary, top),
        "rungs": [dataclasses.asdict(r) for r in summary.rungs],
        "skipped": summary.skipped,
        "teacher_val_acc": summary.teacher_val_acc,
        "rejected": [{"trial_id": t, "reason": r} for t, r in summary.rejected],
        "diverged": diverged_records(summary),
        "final": [dataclasses.asdict(f) for f in summary.final],
        "final_comparisons": [dataclasses.asdict(c) for c in found.comparisons],
        "warm_start": [dataclasses.asdict(w) for w in summary.warm_start],
        "predicted_stops": predicted_stops(summary),
    }
    sig = found.significance_top(top)
    doc["significance"] = significance.to_dict(sig)
    doc["headline"] = headline.to_dict(summary, sig)
    doc["pareto_front"] = pareto.to_dict(summary)
    doc["tendencies"] = tendencies.to_dict(found.tendencies, summary)
    doc["tendencies_survivors"] = tendencies.to_dict(found.survivors, summary)
    section = trainer_section(summary)
    if section is not None:
        doc[summary.cfg.trainer] = section.to_dict(summary)
    return strict_json.dumps(doc, indent=2, default=str)


def to_csv(summary: RunSummary, top: int | None = None) -> str:
    """The leaderboard records, each with the report's headline (stage, verdict, adjusted
    p) in its ``headline_*`` columns, so that a CSV reader sees the same answer."""
    h = headline.headline(summary, analyses.of(summary).significance_top(top))
    extra = {"headline_stage": h.stage, "headline_verdict": h.verdict, "headline_p_adjusted": h.p_adjusted}
    records = [{**rec, **extra} for rec in leaderboard_records(summary, top)]
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
    for t in summary.trials + summary.diverged:
        counts[t.status] = counts.get(t.status, 0) + 1
    if summary.rejected:
        counts["rejected"] = len(summary.rejected)
    return counts


def progress(summary: RunSummary) -> tuple[int, int]:
    """Epochs trained so far and the budget if every trial ran to max_epochs."""
    cfg = summary.cfg
    done = sum(t.epochs for t in summary.trials + summary.diverged)
    return done, cfg.num_trials * cfg.asha.max_epochs


def render_status(summary: RunSummary, console: Console) -> None:
    """Where the sweep stands: finished, running, or stopped with trials left to run (and the
    command that continues it, with the real run directory); counts by outcome, with paused
    trials told apart by what ASHA will do with them; the budget used; the leader.

    Raises ValueError for a summary without a state (one not made by :func:`summarize`).
    """
    cfg, state = summary.cfg, summary.state
    if state is None:
        raise ValueError("render_status needs the summary of a run directory (summarize)")
    counts = status_counts(summary)
    done, budget = progress(summary)
    started = f"sweep {cfg.name}: {len(summary.trials) + len(summary.diverged)} of {cfg.num_trials} trials started; driver: {summary.driver or 'none'}"
    if state.finished:
        console.print(plain(f"{started}; finished: all {cfg.num_trials} trials proposed and none left to run"))
    elif summary.driver:
        console.print(plain(f"{started}; {len(state.left)} trials left to run, {max(0, cfg.num_trials - state.proposed)} not yet proposed"))
    else:
        console.print(plain(f"{started}; not finished, resume with: kdsweep launch --resume {summary.run_dir}"))
    # "paused" alone reads as "will continue": say which paused trials ASHA would resume.
    counts.pop(Event.PAUSED.value, None)
    to_promote = state.promoted + state.promotable
    if to_promote:
        counts["paused, to be promoted"] = len(to_promote)
    if state.not_promoted:
        counts["paused for good" if state.finished else "paused, not promoted so far"] = len(state.not_promoted)
    if state.queued:
        counts["queued"] = len(state.queued)
    console.print("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), highlight=False)
    if state.not_promoted:
        eta = cfg.asha.reduction_factor
        fate = "they stay paused for good" if state.finished else "more trials reaching their rung may still lift them"
        console.print(f"  ASHA promotes the top 1/{eta} of each rung; {len(state.not_promoted)} paused trials are below it: {fate}", highlight=False)
    console.print(f"  epochs trained {done} ({100.0 * done / max(1, budget):.1f}% of the {budget}-epoch budget without early stopping)")
    if state.left:
        by_id = {t.trial_id: t for t in summary.trials}
        table = DataTable(title="trials left to run", title_justify="left")
        for col in ("trial", "status", "epochs", summary.metric):
            table.add_column(col)
        for tid in state.left:
            t = by_id.get(tid)
            if t is None:
                table.add_row(tid, "queued", "0", "-")
            else:
                table.add_row(tid, "paused, to be promoted" if tid in to_promote else t.status, str(t.epochs), fmt_value(t.value))
        console.print(table)
    if summary.trials:
        best = summary.trials[0]
        console.print(plain(f"  leader {best.trial_id}: {summary.metric} {fmt_value(best.value)} after {best.epochs} epochs"))
    if summary.final:
        done = sum(f.completed for f in summary.final)
        runs = sum(f.runs for f in summary.final)
        each = ", ".join(f"{f.source} {f.completed}/{f.runs}" for f in summary.final)
        console.print(plain(f"  final stage (kdsweep retrain): {done} of {runs} runs completed ({each})"))
