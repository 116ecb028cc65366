"""Parameter tendencies: which searched parameters matter for the sweep metric, which way,
and where the best trials lie — from the sample the searcher drew, at one budget.

**Which trials.** The primary analysis is at rung 0 over every trial that reached it (every
trial that trained at all): the sample the searcher drew, before ASHA selected anything, so
each parameter's whole range is seen. Above rung 0 the trials are the ones ASHA let through,
a selected sample: ranges are restricted and correlations can be artefacts of the selection
(measured: on a 1 500-trial random sweep of the synthetic trainer, the 23 survivors at rung
6 made ``decoy``, which has no effect, "higher is better" at p = 0.03 and left ``lr``, the
dominant parameter, without a direction). That analysis is still shown — second, under its
own name (``tendencies_survivors`` in JSON), at the highest rung above 0 with ``MIN_TRIALS``
trials — and labelled as among ASHA's survivors. A 1-epoch value is never compared with a
9-epoch one: each analysis is at one rung. Diverged trials are in neither.

Per parameter, at that rung:

* **importance** — fANOVA (Hutter et al. 2014) by Optuna's ``FanovaImportanceEvaluator``
  over an in-memory study of the rung's trials (log parameters on their log scale): the share
  of the metric's variance the parameter explains on its own. Its forest is
  :data:`FANOVA_TREES` trees grown to depth :data:`FANOVA_DEPTH`, fitted on at most
  :data:`FANOVA_TRIALS` trials (a seeded sample above): Optuna's defaults (64 trees, depth
  64) make the marginals cost O(leaves) and took 25 s at 1 000 trials here and ~90 s at
  10 000 by Optuna's own measurement; with these the whole report of a 10 000-trial sweep
  computes its statistics in a few seconds, and the importances agreed with the defaults'
  within 0.005 at 200, 500 and 1 000 trials of a 4-parameter synthetic space and within
  0.01 at 10 000 (the main effects this table reports need no deeper interactions).
* **direction** — a test of the parameter's association with the metric *given the other
  parameters*. A model-based searcher (TPE, GP) samples parameters together — TPE ties an
  irrelevant parameter to the important one it is homing in on — so a marginal rank
  correlation reads that tie as an effect (measured before this test: ``decoy`` "lower is
  better" at p = 1e-4 on a 40-trial TPE sweep). The test regresses the metric's ranks on a
  cubic in every other ordered parameter's rank with their pairwise products (fewer terms
  when the trials are few: :func:`_nuisance`) and indicators of every other unordered one's
  options, and asks by an F-test whether a quadratic in this parameter's rank adds
  anything; p-values are Holm-adjusted over every parameter tested in the report's two
  analyses (:mod:`multiplicity`: the report states directions in both tables). Only a
  parameter whose adjusted p < :data:`ALPHA` gets words: "best inside the range" (near
  ``curvature_peak``) when the quadratic term is itself significant and its optimum lies
  between the 10th and 90th percentile of the parameter (the effect is not monotone, so no
  single direction is true: ``lr`` peaks inside its range), else "higher is better" /
  "lower is better" when the partial slope's own test is significant too, by its sign;
  otherwise "no clear direction". ``rho`` is the partial rank correlation given the others
  (residuals of the same regression). Measured on synthetic sweeps where the truth is known
  (``benchmarks/tendency_truth.py``, ``tests/orchestrator/test_tendencies_truth.py``).
* **best quarter** — the range (ordered parameters) or the options (unordered) of the best
  ⌈n/4⌉ trials at the rung.

Fixed points (``points_to_evaluate``) inside the space are trials like any other; those
outside it (a research baseline often is) are kept out and listed with where they stand.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from kdsweep.orchestrator.multiplicity import METHOD, holm
from kdsweep.orchestrator.safe_text import DataTable, plain
from kdsweep.orchestrator.summary import RunSummary, fmt_value

#: Fewest trials a rung needs for an analysis: fewer leave the forest and the tests mostly noise.
MIN_TRIALS = 20

#: Family-wise level at which a parameter's association is put into words.
ALPHA = 0.05

#: Depth and number of fANOVA's trees (see the module docstring).
FANOVA_DEPTH = 6
FANOVA_TREES = 32

#: Most trials fANOVA's forest is fitted on: above, a sample of this many drawn with the
#: sweep's seed. Optuna's in-memory study copies every trial it is given (3 s for 10 000);
#: variance shares estimated from 1 000 random trials of the rung differ from all of
#: 10 000's by sampling error only, far below the differences the table is read for
#: (measured on a 10 000-trial synthetic sweep: every importance within 0.01).
FANOVA_TRIALS = 1000

#: Where a quadratic's optimum must lie, as quantiles of the parameter, to read "inside".
INSIDE = (0.1, 0.9)

METHOD_IMPORTANCE = f"fANOVA (optuna.importance.FanovaImportanceEvaluator, {FANOVA_TREES} trees of depth <= {FANOVA_DEPTH})"
METHOD_TEST = (
    "association given the other parameters: F-test of a quadratic in the parameter's rank over a cubic in each other "
    "parameter's rank and their pairwise products (indicators for unordered options), on the metric's ranks; "
    f"{METHOD}-adjusted over the parameters"
)

#: The words a parameter can get.
HIGHER, LOWER, INSIDE_WORDS, UNCLEAR = "higher is better", "lower is better", "best inside the range", "no clear direction"
CONSTANT, UNORDERED = "constant at this rung", "unordered options"


@dataclasses.dataclass(frozen=True)
class ParamTendency:
    """One parameter at the analysis' rung.

    ``rho``: its partial rank correlation with the metric given the other parameters (better
    = positive, in the sweep's mode); ``p_value``: the F-test of its association given the
    others; ``p_adjusted``: Holm over every parameter tested in the report's analyses (all
    None for unordered options or a parameter constant at the rung). ``direction``: "higher
    is better", "lower is better", "best inside the range" (near ``curvature_peak``), "no
    clear direction", "constant at this rung" or "unordered options". ``best``: [low, high]
    of the best quarter for ordered parameters, else its options, most frequent first."""

    name: str
    importance: float
    rho: float | None
    p_value: float | None
    direction: str
    ordered: bool
    best: list[Any]
    p_adjusted: float | None = None
    #: The partial slope's own p-value: a monotone direction needs it below ALPHA too.
    p_slope: float | None = None
    #: Where the quadratic puts the best value, when its curvature is significant on its own
    #: and the optimum lies inside the range (else None); "best inside the range" uses it.
    curvature_peak: float | None = None


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """A fixed trial (``points_to_evaluate``) at the analysis' rung. ``outside`` holds its
    values outside the space (empty: inside, and counted in the statistics); ``rank`` is its
    place among the rung's statistics trials plus itself (1 = best), None without a value."""

    trial_id: str
    outside: dict[str, Any]
    value: float | None
    rank: int | None


@dataclasses.dataclass(frozen=True)
class Tendencies:
    """The parameter tendencies at one rung, most important parameter first. ``selected``:
    the rung's trials are ASHA's survivors (a rung above 0), not the searcher's sample."""

    rung: int
    epoch: int
    trials: int
    best_quarter: int
    method: str
    params: list[ParamTendency]
    fixed: list[FixedPoint]
    selected: bool = False
    test: str = METHOD_TEST


def counts(summary: RunSummary) -> list[int]:
    """Trials with a real (non-NaN) value of the metric, per rung."""
    return [sum(1 for v in values.values() if not math.isnan(v)) for values in summary.rung_values]


def survivors_rung(summary: RunSummary, min_trials: int = MIN_TRIALS) -> int | None:
    """The highest rung above 0 with at least ``min_trials`` real values, or None."""
    n = counts(summary)
    return next((k for k in range(len(n) - 1, 0, -1) if n[k] >= min_trials), None)


def tendencies(summary: RunSummary, rung: int = 0, min_trials: int = MIN_TRIALS) -> Tendencies | None:
    """The tendencies at ``rung`` alone, adjusted over its own parameters (the report adjusts
    over both of its analyses: :func:`analyses`)."""
    return adjust([_raw(summary, rung, min_trials)])[0]


def analyses(summary: RunSummary, min_trials: int = MIN_TRIALS) -> tuple[Tendencies | None, Tendencies | None]:
    """The report's two analyses — at rung 0 (the searcher's sample) and among ASHA's
    survivors (:func:`survivors_rung`) — with every direction test of both Holm-adjusted
    together: the report states directions in both tables, and each is a claim."""
    k = survivors_rung(summary, min_trials)
    first, second = _raw(summary, 0, min_trials), None if k is None else _raw(summary, k, min_trials)
    adjusted = adjust([first, second])
    return adjusted[0], adjusted[1]


def adjust(found: Sequence[Tendencies | None]) -> list[Tendencies | None]:
    """``found`` with ``p_adjusted`` Holm-adjusted over every parameter tested in any of them
    (:mod:`multiplicity`) and each direction put into words from it (module docstring)."""
    tested = [(i, j) for i, t in enumerate(found) if t is not None for j, p in enumerate(t.params) if p.p_value is not None]
    q = dict(zip(tested, holm([found[i].params[j].p_value for i, j in tested])))  # type: ignore[union-attr,misc]
    out: list[Tendencies | None] = []
    for i, t in enumerate(found):
        if t is None:
            out.append(None)
            continue
        params = [dataclasses.replace(p, p_adjusted=q[i, j], direction=_words(p, q[i, j])) if (i, j) in q else p for j, p in enumerate(t.params)]
        out.append(dataclasses.replace(t, params=params))
    return out


def _words(p: ParamTendency, p_adjusted: float) -> str:
    if p_adjusted >= ALPHA:
        return UNCLEAR
    if p.curvature_peak is not None:
        return INSIDE_WORDS
    if p.p_slope is not None and p.p_slope < ALPHA and p.rho is not None:
        return HIGHER if p.rho > 0 else LOWER
    return UNCLEAR  # associated, but neither monotone nor peaking inside: no one direction


def _raw(summary: RunSummary, rung: int, min_trials: int) -> Tendencies | None:
    """The tendencies at ``rung`` with each parameter's tests, not yet adjusted; None when
    fewer than ``min_trials`` trials inside the space have a value there. Deterministic: the
    forest is seeded with the sweep's seed."""
    # Imported here, as in _importances and _directions: Optuna, scikit-learn and scipy take
    # a second to import, which a report of cached tendencies (analyses.py) never pays.
    from kdsweep.orchestrator.export import split_params

    if rung >= len(summary.rung_values):
        return None
    cfg = summary.cfg
    sign = 1.0 if cfg.asha.mode == "max" else -1.0
    params_of = {t.trial_id: t.params for t in summary.trials}
    origin_of = {t.trial_id: t.origin for t in summary.trials}
    values = {tid: v for tid, v in summary.rung_values[rung].items() if not math.isnan(v) and tid in params_of}
    split = {tid: split_params(params_of[tid], cfg.space) for tid in values}
    inside = {tid: ins for tid, (ins, outs) in split.items() if not outs}
    if len(inside) < min_trials:
        return None
    # Best first; ties by trial id, so the best quarter does not depend on store order.
    ranked = sorted(inside, key=lambda tid: (-sign * values[tid], tid))
    n_best = math.ceil(len(ranked) / 4)
    names = [spec.name for spec in cfg.space]
    importances = _importances(summary, inside, values, cfg.seed)
    tests = _directions(names, ranked, inside, values, sign)
    params = [_tendency(name, importances.get(name, 0.0), ranked, n_best, inside, tests.get(name)) for name in names]
    params.sort(key=lambda p: -p.importance)
    board = [sign * values[tid] for tid in ranked]
    fixed = []
    for tid in sorted(tid for tid in params_of if origin_of[tid] == "fixed"):
        value = summary.rung_values[rung].get(tid)
        real = value is not None and not math.isnan(value)
        place = 1 + sum(1 for b in board if b > sign * value) if real and value is not None else None
        fixed.append(FixedPoint(tid, split_params(params_of[tid], cfg.space)[1], value if real else None, place))
    return Tendencies(rung, summary.rungs[rung].epoch, len(ranked), n_best, METHOD_IMPORTANCE, params, fixed, rung > 0)


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
    chosen = sorted(params)
    if len(chosen) > FANOVA_TRIALS:
        chosen = sorted(random.Random(seed).sample(chosen, FANOVA_TRIALS))
    study.add_trials([
        create_trial(state=TrialState.COMPLETE, value=values[tid], params={n: math.log10(v) if n in logs else v for n, v in params[tid].items()}, distributions=dists)
        for tid in chosen
    ])  # fmt: skip
    evaluator = FanovaImportanceEvaluator(seed=seed, n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH)
    return {name: float(v) for name, v in get_param_importances(study, evaluator=evaluator).items()}


@dataclasses.dataclass(frozen=True)
class _Test:
    """The direction test of one ordered parameter (see :func:`_directions`)."""

    rho: float
    p_value: float
    #: The partial slope's own two-sided p-value (t-test of the partial correlation).
    p_slope: float
    #: The quadratic's optimum as a quantile of the parameter, when the quadratic term is
    #: significant on its own and has a maximum of goodness inside :data:`INSIDE`; else None.
    peak_quantile: float | None


def _is_ordered(xs: Sequence[Any]) -> bool:
    return all(isinstance(x, (int, float)) for x in xs)  # bools are ints: False < True


def _directions(names: list[str], ranked: list[str], params: dict[str, dict[str, Any]], values: dict[str, float], sign: float) -> dict[str, _Test]:
    """The test of every ordered, non-constant parameter given the others (module docstring),
    by name; ordinary least squares (numpy), F and t tails (scipy.stats)."""
    import numpy as np
    from scipy import stats

    n = len(ranked)
    y = _ranks(np.array([sign * values[tid] for tid in ranked]))
    ranks: dict[str, Any] = {}  # ordered parameters: centred scaled ranks
    options: dict[str, Any] = {}  # unordered ones: indicators of all options but the first
    own: dict[str, Any] = {}
    for name in names:
        xs = [params[tid][name] for tid in ranked]
        if _is_ordered(xs):
            ranks[name] = _ranks(np.array([float(x) for x in xs])) - 0.5
            if len(set(xs)) > 1:
                own[name] = ranks[name]
        else:
            levels = sorted({str(x) for x in xs})[1:]
            options[name] = np.column_stack([np.array([str(x) == o for x in xs], dtype=float) for o in levels]) if levels else np.empty((n, 0))
    out: dict[str, _Test] = {}
    for name, u in own.items():
        others = _nuisance(n, [r for k, r in ranks.items() if k != name], [o for k, o in options.items() if k != name])
        terms = np.column_stack([u, u**2]) if len(np.unique(u)) > 2 else u[:, None]
        full = np.column_stack([others, terms])
        rss0, rank0 = _rss(others, y)
        rss1, rank1 = _rss(full, y)
        df1, df2 = rank1 - rank0, n - rank1
        if df1 < 1 or df2 < 1 or rss1 <= 0.0:
            continue
        f = max(0.0, (rss0 - rss1) / df1) / (rss1 / df2)
        p = float(stats.f.sf(f, df1, df2))
        # Partial rank correlation and slope: residuals of y and u on the other parameters.
        ry, ru = _resid(others, y), _resid(others, u)
        denom = math.sqrt(float(ry @ ry) * float(ru @ ru))
        rho = float(ry @ ru) / denom if denom > 0 else 0.0
        # The slope's own t-test (the partial correlation's): a monotone direction needs it.
        df_slope = n - rank0 - 1
        p_slope = float(2 * stats.t.sf(abs(rho) * math.sqrt(df_slope / max(1e-300, 1 - rho**2)), df_slope)) if df_slope >= 1 else 1.0
        peak = None
        if terms.shape[1] == 2:
            coef, *_ = np.linalg.lstsq(full, y, rcond=None)
            b1, b2 = float(coef[-2]), float(coef[-1])
            se2 = _coef_se(full, y, rss1, df2)
            p2 = float(2 * stats.t.sf(abs(b2) / se2, df2)) if se2 > 0 else 1.0
            if b2 < 0 and p2 < ALPHA:
                vertex = -b1 / (2 * b2) + 0.5  # back from the centred rank to a quantile
                if INSIDE[0] <= vertex <= INSIDE[1]:
                    peak = vertex
        out[name] = _Test(rho, p, p_slope, peak)
    return out


def _nuisance(n: int, ranks: list[Any], options: list[Any]) -> Any:
    """The design that stands for the other parameters: an intercept, indicators of the
    unordered ones' options, and for the ordered ones the richest of (a) a cubic in each
    rank and the products of every two ranks, (b) the cubics alone, (c) the ranks alone,
    whose column count leaves at least three quarters of the ``n`` trials as residual degrees
    of freedom. The interactions matter: epoch-1 accuracy is a product of an lr term and a
    momentum term, and a design without them left a misfit that a no-effect parameter's
    chance pattern could match — with it, the same 100 proposals no longer gave ``decoy`` a
    direction whatever the noise (measured in the tendency tests)."""
    import numpy as np

    base = [np.ones((n, 1)), *options]
    cubic = [np.column_stack([u, u**2, u**3]) for u in ranks]
    pairs = [(a * b)[:, None] for i, a in enumerate(ranks) for b in ranks[i + 1 :]]
    tiers = [base + cubic + pairs, base + cubic, base + [u[:, None] for u in ranks]]
    width = [sum(c.shape[1] for c in tier) for tier in tiers]
    chosen = next((tier for tier, w in zip(tiers, width) if w <= n // 4), tiers[-1])
    return np.column_stack(chosen)


def _ranks(x: Any) -> Any:
    """Average ranks scaled to [0, 1] (ties share their mean rank)."""
    from scipy import stats

    n = len(x)
    return (stats.rankdata(x) - 1) / max(1, n - 1)


def _rss(design: Any, y: Any) -> tuple[float, int]:
    """Residual sum of squares of the least-squares fit of ``y`` on ``design``, and its rank."""
    import numpy as np

    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    r = y - design @ coef
    return float(r @ r), int(rank)


def _resid(design: Any, y: Any) -> Any:
    import numpy as np

    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coef


def _coef_se(design: Any, y: Any, rss: float, df: int) -> float:
    """Standard error of the last coefficient of the least-squares fit (pseudo-inverse for a
    rank-deficient design)."""
    import numpy as np

    cov = np.linalg.pinv(design.T @ design) * (rss / df)
    return float(math.sqrt(max(0.0, float(cov[-1, -1]))))


def _tendency(name: str, importance: float, ranked: list[str], n_best: int, params: dict[str, dict[str, Any]], test: _Test | None) -> ParamTendency:
    """One parameter with its tests, its words still to be given by :func:`adjust`."""
    xs = [params[tid][name] for tid in ranked]
    best = xs[:n_best]
    if not _is_ordered(xs):
        tally: dict[Any, int] = {}
        for x in best:
            tally[x] = tally.get(x, 0) + 1
        return ParamTendency(name, importance, None, None, UNORDERED, False, sorted(tally, key=lambda x: (-tally[x], str(x))))
    span = [min(best), max(best)]
    if test is None:
        return ParamTendency(name, importance, None, None, CONSTANT, True, span)
    peak = None
    if test.peak_quantile is not None:
        ordered = sorted(float(x) for x in xs)
        peak = ordered[min(len(ordered) - 1, round(test.peak_quantile * (len(ordered) - 1)))]
    return ParamTendency(name, importance, test.rho, test.p_value, UNCLEAR, True, span, None, test.p_slope, peak)


def heading(summary: RunSummary, t: Tendencies) -> str:
    who = (
        f"among ASHA's survivors at rung {t.rung} (epoch {t.epoch}): a selected sample — ranges are restricted and correlations can be artefacts of the selection"
        if t.selected
        else f"at rung {t.rung} (epoch {t.epoch}), every trial that reached it: the sample the searcher drew"
    )
    return f"parameter tendencies for {summary.metric} {who}; {t.trials} trials, best quarter {t.best_quarter}; importance: {t.method}; direction: {t.test}"


def direction_words(p: ParamTendency) -> str:
    """The direction as the tables show it ("best inside the range (near 0.05)")."""
    return f"{p.direction} (near {fmt_value(p.curvature_peak)})" if p.direction == INSIDE_WORDS else p.direction


def render(summary: RunSummary, sample: Tendencies | None, survivors: Tendencies | None, console: Console) -> None:
    """Both analyses of :func:`analyses` (the report's are kept: ``analyses.of``) as tables:
    the searcher's ``sample`` first, then ASHA's ``survivors``; with the fixed points."""
    if sample is None:
        console.print(f"parameter tendencies: fewer than {MIN_TRIALS} trials inside the space reached rung 0 (trials per rung: {', '.join(map(str, counts(summary)))})", highlight=False)
        return
    for t in (sample, survivors):
        if t is None:
            continue
        table = DataTable(title=heading(summary, t), title_justify="left")
        for col in ("parameter", "importance", "partial rank corr. ρ", "p", f"p ({METHOD})", "direction", "best quarter"):
            table.add_column(col, justify="right" if col in ("importance", "partial rank corr. ρ", "p", f"p ({METHOD})") else "left")
        for p in t.params:
            best = " – ".join(fmt_value(v) for v in p.best) if p.ordered else ", ".join(fmt_value(v) for v in p.best)
            table.add_row(p.name, f"{p.importance:.3f}", fmt_value(p.rho), fmt_value(p.p_value), fmt_value(p.p_adjusted), direction_words(p), best)
        console.print(table)
        for f in t.fixed:
            where = f"{summary.metric} {fmt_value(f.value)}, rank {f.rank} of {t.trials + (1 if f.outside else 0)}" if f.value is not None else f"did not reach epoch {t.epoch}"
            if f.outside:
                outside = ", ".join(f"{k}={fmt_value(v)}" for k, v in f.outside.items())
                console.print(plain(f"  fixed point {f.trial_id}: outside the space ({outside}), kept out of the statistics; {where}"))
            else:
                console.print(plain(f"  fixed point {f.trial_id}: inside the space, counted; {where}"))


def to_dict(t: Tendencies | None, summary: RunSummary) -> dict[str, Any]:
    """One analysis for JSON: ``rung`` etc. and ``params``/``fixed`` as records, or ``rung``
    None with the trials per rung when it could not be made."""
    if t is None:
        return {"rung": None, "min_trials": MIN_TRIALS, "trials_per_rung": counts(summary)}
    return {"min_trials": MIN_TRIALS, **dataclasses.asdict(t)}


def to_csv(summary: RunSummary, sample: Tendencies | None, survivors: Tendencies | None) -> str:
    """One row per parameter and analysis of :func:`analyses` (the searcher's ``sample``
    first, most important parameter first), with the rung it was measured at and whether it
    is ASHA's selection; only the header when no analysis could be made."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["parameter", "importance", "rho", "p_value", "p_adjusted", "direction", "curvature_peak", "best_quarter_low", "best_quarter_high", "best_quarter_options", "rung", "epoch", "trials", "selected", "metric"])
    for t in (sample, survivors):
        if t is None:
            continue
        for p in t.params:
            low, high, options = (p.best[0], p.best[-1], "") if p.ordered else ("", "", " ".join(str(v) for v in p.best))
            writer.writerow([p.name, p.importance, p.rho, p.p_value, p.p_adjusted, p.direction, p.curvature_peak, low, high, options, t.rung, t.epoch, t.trials, t.selected, summary.metric])
    return buf.getvalue()
