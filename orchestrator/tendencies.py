"""Parameter tendencies: which searched parameters matter for the sweep metric, which way,
and where the best trials lie, all at one common budget.

Trials are compared at one rung only — the highest rung with at least ``min_trials`` trials
— so a 1-epoch value is never set against a 9-epoch one. At that rung, per parameter:

* **importance**: fANOVA (Hutter et al. 2014) by Optuna's ``FanovaImportanceEvaluator``,
  over an in-memory Optuna study holding the rung's trials (parameters over the space's
  distributions, log parameters on their log scale, the rung value as the objective): the
  share of the metric's variance the parameter explains on its own, normalised to sum to 1
  over the parameters;
* **direction and strength**: Spearman's rank correlation of the parameter with the metric
  (``scipy.stats.spearmanr``), with its p-value; for options without an order (strings),
  none;
* **best quarter**: the range (ordered parameters) or the options (unordered) of the best
  ⌈n/4⌉ trials at the rung.

Fixed points (``points_to_evaluate``) inside the space are trials like any other; those
outside it (a research baseline often is) cannot be placed in the distributions and would
bias the statistics, so they are kept out and listed with where they stand at the rung.
Above rung 0 the rung's trials are those ASHA let reach it, a selection: the tendencies then
describe the region the search kept. Measured on synthetic sweeps of 200 trials: with every
trial trained to the same budget, lr explains about 95 % of the variance (the closed form
makes it dominant); among the 9-epoch survivors of ASHA, whose lr the search has already
narrowed to near its optimum, momentum comes first. Both are right for their population.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from kdsweep.orchestrator.report import RunSummary, _fmt

#: Fewest trials a rung needs to be the common budget: fewer leave the forest and the rank
#: correlations mostly noise.
MIN_TRIALS = 20

#: Significance level below which a rank correlation is given a direction in words.
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class ParamTendency:
    """One parameter at the common rung.

    ``rho``/``p_value``: Spearman's correlation with the metric and its two-sided p-value
    (None for unordered options, or a parameter constant at the rung). ``direction``: "higher
    is better" / "lower is better" when p < ``ALPHA`` (better: in the sweep's mode), "no clear
    direction", "constant at this rung" or "unordered options". ``best``: [low, high] of the
    best quarter for ordered parameters, else its options, most frequent first.
    """

    name: str
    importance: float
    rho: float | None
    p_value: float | None
    direction: str
    ordered: bool
    best: list[Any]


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """A fixed trial (``points_to_evaluate``) at the common rung. ``outside`` holds its values
    outside the space (empty: inside, and counted in the statistics); ``rank`` is its place
    among the rung's statistics trials plus itself (1 = best), None when it has no value."""

    trial_id: str
    outside: dict[str, Any]
    value: float | None
    rank: int | None


@dataclasses.dataclass(frozen=True)
class Tendencies:
    """The parameter tendencies of a run, most important parameter first."""

    rung: int
    epoch: int
    trials: int
    best_quarter: int
    method: str
    params: list[ParamTendency]
    fixed: list[FixedPoint]


def common_rung(summary: RunSummary, min_trials: int = MIN_TRIALS) -> int | None:
    """The highest rung where at least ``min_trials`` trials recorded a real (non-NaN) value
    of the metric; None when no rung has that many yet."""
    counts = [sum(1 for v in values.values() if not math.isnan(v)) for values in summary.rung_values]
    return next((k for k in range(len(counts) - 1, -1, -1) if counts[k] >= min_trials), None)


def tendencies(summary: RunSummary, min_trials: int = MIN_TRIALS) -> Tendencies | None:
    """The tendencies at :func:`common_rung` (see the module docstring); None when no rung has
    ``min_trials`` trials inside the space. Deterministic: the forest is seeded with the
    sweep's seed."""
    # Imported here, as in _importances and _tendency: Optuna, scikit-learn and scipy take a
    # second to import, which a report of cached tendencies (analyses.py) never pays.
    from kdsweep.orchestrator.export import split_params

    k = common_rung(summary, min_trials)
    if k is None:
        return None
    cfg = summary.cfg
    sign = 1.0 if cfg.asha.mode == "max" else -1.0
    params_of = {t.trial_id: t.params for t in summary.trials}
    origin_of = {t.trial_id: t.origin for t in summary.trials}
    values = {tid: v for tid, v in summary.rung_values[k].items() if not math.isnan(v)}
    split = {tid: split_params(params_of[tid], cfg.space) for tid in values}
    inside = {tid: ins for tid, (ins, outs) in split.items() if not outs}
    if len(inside) < min_trials:
        return None
    # Best first; ties by trial id, so the best quarter does not depend on store order.
    ranked = sorted(inside, key=lambda tid: (-sign * values[tid], tid))
    n_best = math.ceil(len(ranked) / 4)
    importances = _importances(summary, inside, values, cfg.seed)
    params = [_tendency(spec.name, importances.get(spec.name, 0.0), ranked, n_best, inside, values, sign) for spec in cfg.space]
    params.sort(key=lambda p: -p.importance)
    board = [sign * values[tid] for tid in ranked]
    fixed = []
    for tid in sorted(tid for tid in params_of if origin_of[tid] == "fixed"):
        value = summary.rung_values[k].get(tid)
        real = value is not None and not math.isnan(value)
        rank = 1 + sum(1 for b in board if b > sign * value) if real and value is not None else None
        fixed.append(FixedPoint(tid, split_params(params_of[tid], cfg.space)[1], value if real else None, rank))
    epoch = summary.rungs[k].epoch
    return Tendencies(k, epoch, len(ranked), n_best, "fANOVA (optuna.importance.FanovaImportanceEvaluator)", params, fixed)


def _importances(summary: RunSummary, params: dict[str, dict[str, Any]], values: dict[str, float], seed: int) -> dict[str, float]:
    """fANOVA importances of the trials ``params`` (all inside the space) with ``values``.

    Optuna's fANOVA integrates each marginal uniformly over a parameter's raw range, also for
    a log distribution; over lr in [1e-4, 1] that puts 90 % of the weight on lr > 0.1 and
    hides the decades below, which the search samples as often. Log parameters therefore go
    in as their base-10 logarithm: the marginals are then taken over the measure the space
    samples from, as in the fANOVA paper's log-transformed spaces.
    """
    from optuna.distributions import FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState, create_trial

    from kdsweep.orchestrator.export import distributions, new_study

    logs = {spec.name for spec in summary.cfg.space if spec.kind == "loguniform"}
    dists = {
        name: FloatDistribution(math.log10(d.low), math.log10(d.high)) if name in logs and isinstance(d, FloatDistribution) else d
        for name, d in distributions(summary.cfg.space).items()
    }  # fmt: skip
    study = new_study(summary.cfg)
    study.add_trials([
        create_trial(state=TrialState.COMPLETE, value=values[tid], params={n: math.log10(v) if n in logs else v for n, v in p.items()}, distributions=dists)
        for tid, p in params.items()
    ])  # fmt: skip
    return {name: float(v) for name, v in get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed)).items()}


def _tendency(
    name: str, importance: float, ranked: list[str], n_best: int, params: dict[str, dict[str, Any]], values: dict[str, float], sign: float
) -> ParamTendency:
    xs = [params[tid][name] for tid in ranked]
    best = xs[:n_best]
    ordered = all(isinstance(x, (int, float)) for x in xs)  # bools are ints: False < True
    if not ordered:
        counts: dict[Any, int] = {}
        for x in best:
            counts[x] = counts.get(x, 0) + 1
        return ParamTendency(name, importance, None, None, "unordered options", False, sorted(counts, key=lambda x: (-counts[x], str(x))))
    if len(set(xs)) < 2:
        return ParamTendency(name, importance, None, None, "constant at this rung", True, [min(best), max(best)])
    from scipy import stats

    rho, p = stats.spearmanr(xs, [values[tid] for tid in ranked])
    rho, p = float(rho), float(p)
    if p < ALPHA:
        direction = "higher is better" if sign * rho > 0 else "lower is better"
    else:
        direction = "no clear direction"
    return ParamTendency(name, importance, rho, p, direction, True, [min(best), max(best)])



def render(summary: RunSummary, console: Console) -> None:
    """The tendencies (``summary.analyses``) as a table, with the rung they are measured at
    and the fixed points."""
    t, min_trials = summary.analyses.tendencies, MIN_TRIALS
    if t is None:
        counts = ", ".join(str(len(v)) for v in summary.rung_values)
        console.print(f"parameter tendencies: no rung has {min_trials} trials inside the space yet (trials per rung: {counts})", highlight=False)
        return
    title = (
        f"parameter tendencies for {summary.metric} at rung {t.rung} (epoch {t.epoch}, the highest rung with {min_trials}+ trials): "
        f"{t.trials} trials, best quarter {t.best_quarter}; importance: {t.method}"
    )
    table = Table(title=title, title_justify="left")
    for col in ("parameter", "importance", "rank corr. ρ", "p", "direction", "best quarter"):
        table.add_column(col, justify="right" if col in ("importance", "rank corr. ρ", "p") else "left")
    for p in t.params:
        best = " – ".join(_fmt(v) for v in p.best) if p.ordered else ", ".join(_fmt(v) for v in p.best)
        table.add_row(p.name, f"{p.importance:.3f}", _fmt(p.rho), _fmt(p.p_value), p.direction, best)
    console.print(table)
    for f in t.fixed:
        where = f"{summary.metric} {_fmt(f.value)}, rank {f.rank} of {t.trials + (1 if f.outside else 0)}" if f.value is not None else f"did not reach epoch {t.epoch}"
        if f.outside:
            outside = ", ".join(f"{k}={_fmt(v)}" for k, v in f.outside.items())
            console.print(f"  fixed point {f.trial_id}: outside the space ({outside}), kept out of the statistics; {where}", highlight=False)
        else:
            console.print(f"  fixed point {f.trial_id}: inside the space, counted; {where}", highlight=False)


def to_dict(summary: RunSummary) -> dict[str, Any]:
    """The tendencies (``summary.analyses``) for JSON: ``rung`` etc. and ``params``/``fixed``
    as records, or ``rung`` None with the trials per rung when no rung has ``MIN_TRIALS``."""
    t = summary.analyses.tendencies
    if t is None:
        return {"rung": None, "min_trials": MIN_TRIALS, "trials_per_rung": [len(v) for v in summary.rung_values]}
    return {"min_trials": MIN_TRIALS, **dataclasses.asdict(t)}


def to_csv(summary: RunSummary) -> str:
    """One row per parameter (most important first) of ``summary.analyses``' tendencies,
    with the rung it was measured at; only the header when no rung has ``MIN_TRIALS``."""
    t = summary.analyses.tendencies
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["parameter", "importance", "rho", "p_value", "direction", "best_quarter_low", "best_quarter_high", "best_quarter_options", "rung", "epoch", "trials", "metric"])
    if t is not None:
        for p in t.params:
            low, high, options = (p.best[0], p.best[-1], "") if p.ordered else ("", "", " ".join(str(v) for v in p.best))
            writer.writerow([p.name, p.importance, p.rho, p.p_value, p.direction, low, high, options, t.rung, t.epoch, t.trials, summary.metric])
    return buf.getvalue()
