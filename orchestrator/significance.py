"""How sure the search is: an interval for each accuracy, and paired tests of the leader
against the sweep's fixed points and against the ranks just below it.

What it reads (``orchestrator/schema.py``): ``val_n``, the number of validation examples
``val_acc`` was counted over, on every row that comes from an evaluation; ``val_correct``,
which of those examples the model got right, on reports at rung milestones and at the end of
the budget.

* **Interval** of an accuracy k/n: the 95 % Wilson score interval,
  ``scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")``. Wilson rather than
  Clopper–Pearson because its coverage stays close to the nominal 95 % where Clopper–Pearson's
  is well above it (wider than it needs to be at the few hundred examples of a small
  validation split), and because it stays informative at k = n, frequent there: 144 of 144
  gives [0.974, 1] (Brown, Cai & DasGupta 2001).
* **Paired test** of two trials: both were evaluated on the same validation examples (one
  split per sweep), so the evidence is in the examples exactly one of them got right, b for
  the first, c for the second. Exact McNemar test: under "equally good" each of those b + c
  examples is the first's with probability 1/2, and p is the two-sided binomial p-value,
  ``scipy.stats.binomtest(b, b + c, 0.5).pvalue`` (1 when they never disagree). Exact rather
  than McNemar's χ² approximation: b + c is small on validation splits of a few hundred.
  Two independent intervals would ignore the pairing and say "not distinguishable" far more
  often than the data warrant.
* **Where two trials are compared**: at the highest epoch at which both recorded per-example
  correctness — the top rung when both reached it, else the highest rung both reached (a fixed
  point ASHA stopped early is compared with the leader at the epoch it stopped), which the
  output states. Without such an epoch (a run recorded before ``val_correct`` existed, a
  trainer without examples such as the synthetic one, a trial that has not reached its first
  rung, a different validation split) the verdict is :data:`NO_PAIRED_DATA`, never a guess
  from unpaired numbers.
* **Verdict**: "better" or "worse" (the first trial got more, or fewer, of the discordant
  examples right, at an adjusted p < 0.05), else "not distinguishable at 95 %". Higher
  accuracy is better whatever the sweep's metric (a sweep ranking by a combined score J is
  still compared on ``val_acc``, the quantity the examples count).
* **Multiplicity**: every p-value of one report is Holm-adjusted over the comparisons that
  report makes (the leader against each fixed point and each rank it shows, the best searched
  trial against each fixed point; :mod:`multiplicity`), and the verdict reads the adjusted
  value. ``Analyses.significance_top`` re-adjusts when a report shows fewer ranks.
* **Descriptive, not a verdict on the search**: the leader is the best of all trials on the
  very validation examples it is then tested on, so these tests favour it — with every trial
  truly equal to the baseline, "the leader beats the baseline" came out in 14 % of simulated
  sweeps of 10 trials and 63 % of 100 (``benchmarks/null_sweeps.py``). They describe the
  search; whether the search beats the baseline is the headline's question, answered on the
  held-out test split by the final stage (``headline.py``).
* **The final stage** (``kdsweep retrain``): each retrained configuration against each
  retrained fixed point on the held-out test metric, by Welch's t-test over their repeats
  (:func:`final_comparisons`, :class:`Comparison`), Holm-adjusted over those comparisons.

Like every reading module it imports no torch; scipy only when a test is computed, so a
report whose statistics are cached (``analyses.py``) and ``kdsweep status`` never load it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console

from kdsweep.orchestrator.multiplicity import METHOD, family_size, holm
from kdsweep.orchestrator.safe_text import plain
from kdsweep.orchestrator.schema import ACCURACY, Event, unpack_correct
from kdsweep.orchestrator.summary import FIXED, RunSummary, TrialSummary, last_reports, test_metric

#: Confidence level of every interval and test of a report, and the verdict when a
#: difference is not significant at it.
CONFIDENCE = 0.95
NOT_DISTINGUISHABLE = "not distinguishable at 95 %"
#: The verdict of two sets of repeats that both have zero spread: no test exists.
NO_SPREAD = "not testable (no spread)"

#: Which binomial interval every accuracy gets (``proportion_ci``'s ``method``).
INTERVAL_METHOD = "wilson"
#: The verdict when two trials have no epoch with per-example correctness in common.
NO_PAIRED_DATA = "no paired data"
#: The rule behind :data:`NO_PAIRED_DATA` and the tests, as the outputs state it.
RULE = (
    "exact McNemar test on the validation examples exactly one of the two got right, at the highest "
    "epoch both recorded per-example correctness; p-values Holm-adjusted over the comparisons of this report; "
    "descriptive: the leader was selected on these same examples"
)

Correct = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A trial's ``val_acc`` at its last report, counted over ``n`` validation examples, and
    its 95 % Wilson interval [``low``, ``high``]; ``n`` None and the bounds NaN when the
    run recorded no ``val_n`` (older runs, trainers without examples)."""

    trial_id: str
    epoch: int
    acc: float | None
    n: int | None
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Paired:
    """``trial`` against ``other`` by the exact McNemar test (module docstring).

    ``epoch``: where they were compared (None: no paired data, ``note`` says why); ``top``:
    that epoch is the sweep's last (``asha.max_epochs``). ``acc``/``acc_other`` their
    accuracies there over the same ``n`` examples; ``only_trial``/``only_other`` the examples
    only ``trial``/only ``other`` got right; ``p_value`` two-sided; ``verdict`` for ``trial``:
    "better", "worse", "not distinguishable at 95 %" or "no paired data". ``other_rank`` is
    ``other``'s place on the leaderboard (1 = leader). ``p_value`` is the test's own,
    ``p_adjusted`` and ``verdict`` are over the family of the report (:func:`adjust`).
    """

    trial: str
    other: str
    other_rank: int
    other_origin: str
    epoch: int | None
    top: bool
    n: int
    acc: float
    acc_other: float
    only_trial: int
    only_other: int
    p_value: float
    verdict: str
    note: str
    #: ``p_value`` Holm-adjusted over the report's comparisons (:func:`adjust`); the verdict
    #: reads it. NaN without paired data.
    p_adjusted: float = math.nan


@dataclasses.dataclass(frozen=True)
class Significance:
    """Everything this module says about a run: ``intervals`` by trial id (every ranked
    trial), ``fixed`` — the leader against every fixed point but itself — and ``ranks`` — the
    leader against ranks 2..``top``. When the leader is a fixed point (the baseline still
    leads), ``searched`` holds the best searched trial against every fixed point, which is
    the question a sweep asks: did the search find anything better? ``leader`` is None for a
    run without trials."""

    leader: TrialSummary | None
    intervals: dict[str, Interval]
    fixed: list[Paired]
    ranks: list[Paired]
    searched: list[Paired]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A retrained configuration against a retrained fixed point, on the test metric.

    ``difference`` = mean(config) − mean(fixed) over their completed runs; [``low``,
    ``high``] its 95 % Welch–Satterthwaite interval (not adjusted); ``t``, ``df``,
    ``p_value`` Welch's two-sided t-test (``scipy.stats.ttest_ind(equal_var=False)``);
    ``p_adjusted`` that p Holm-adjusted over every comparison of the final stage
    (configurations × fixed points). ``verdict``: "better" or "worse" (in the sweep's mode:
    for ``min`` a negative difference is better) when the adjusted p < 0.05, else "not
    distinguishable at 95 %" — also when either side has fewer than two runs, where the test
    is undefined and the numbers are NaN; :data:`NO_SPREAD` when neither side varies over its
    repeats (Welch's t is then infinite or undefined, and p = 0 would be no evidence).
    ``leader``: the configuration is the search leaderboard's first trial; ``searched``: it
    is a searched configuration, not a fixed point (the headline's question).
    """

    config: str
    fixed: str
    metric: str
    leader: bool
    n_config: int
    n_fixed: int
    mean_config: float
    mean_fixed: float
    difference: float
    low: float
    high: float
    t: float
    df: float
    p_value: float
    verdict: str
    p_adjusted: float = math.nan
    searched: bool = True


@functools.lru_cache(maxsize=1 << 16)
def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of k successes in n trials (scipy). Raises ValueError
    unless 0 <= k <= n and n >= 1. Kept per (k, n): the trials of one sweep share a split, so
    a 10 000-trial report asks for a few hundred distinct intervals (scipy's ``binomtest``
    costs about a millisecond each, most of it the p-value an interval does not need)."""
    from scipy import stats  # here: rendering cached analyses (analyses.py) needs no scipy

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method=INTERVAL_METHOD)
    return float(ci.low), float(ci.high)


def accuracy_interval(acc: float, n: int) -> tuple[float, float]:
    """The Wilson interval of an accuracy measured on ``n`` examples (``acc`` = k/n; k is
    recovered by rounding, exact for any accuracy computed as a count over n)."""
    return wilson_interval(round(acc * n), n)


def mcnemar(first: Correct, second: Correct) -> tuple[int, int, float]:
    """(b, c, p) of the exact McNemar test of two per-example correctness vectors of one
    split: b examples only ``first`` got right, c only ``second``, and the two-sided p-value
    of b successes in b + c fair coin flips (1.0 when b + c = 0). Raises ValueError when the
    vectors differ in length (they were not measured on the same examples)."""
    if first.shape != second.shape:
        raise ValueError(f"paired test needs one split: {first.shape[0]} vs {second.shape[0]} examples")
    b = int(np.count_nonzero(first & ~second))
    c = int(np.count_nonzero(~first & second))
    from scipy import stats  # see wilson_interval

    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def verdict(b: int, c: int, p: float) -> str:
    """"better"/"worse" for the first of a McNemar pair when its (adjusted) p < 1 −
    CONFIDENCE, else "not distinguishable at 95 %"."""
    if p < 1.0 - CONFIDENCE:
        return "better" if b > c else "worse"
    return NOT_DISTINGUISHABLE


def analyse(summary: RunSummary, top: int = 10) -> Significance:
    """Intervals of every ranked trial and the leader's paired comparisons (see
    :class:`Significance`), adjusted over the family they form (:func:`adjust`)."""
    reports = last_reports(summary)
    intervals = {t.trial_id: _interval(t.trial_id, reports.get(t.trial_id)) for t in summary.trials}
    if not summary.trials:
        return Significance(None, intervals, [], [], [])
    records = _correctness(summary)
    leader = summary.trials[0]
    ranked = list(enumerate(summary.trials, start=1))
    fixed = [_paired(summary, records, leader, t, rank) for rank, t in ranked[1:] if t.origin == FIXED]
    ranks = [_paired(summary, records, leader, t, rank) for rank, t in ranked[1:top]]
    best = next((t for t in summary.trials if t.origin != FIXED), None) if leader.origin == FIXED else None
    searched = [] if best is None else [_paired(summary, records, best, t, rank) for rank, t in ranked if t.origin == FIXED]
    return adjust(Significance(leader, intervals, fixed, ranks, searched))


def family(sig: Significance) -> dict[tuple[str, str], float]:
    """The comparisons ``sig`` reports, once each (the leader against a fixed point among its
    ranks is one test, shown twice), with their p-values: the family Holm adjusts over."""
    return {(p.trial, p.other): p.p_value for p in sig.fixed + sig.ranks + sig.searched}


def adjust(sig: Significance) -> Significance:
    """``sig`` with every comparison's ``p_adjusted`` Holm-adjusted over :func:`family` and
    its verdict read from it (pure Python: cached analyses are re-adjusted without scipy)."""
    tests = family(sig)
    adjusted = dict(zip(tests, holm(list(tests.values()))))

    def one(p: Paired) -> Paired:
        if p.epoch is None:
            return p
        q = adjusted[(p.trial, p.other)]
        return dataclasses.replace(p, p_adjusted=q, verdict=verdict(p.only_trial, p.only_other, q))

    return dataclasses.replace(sig, fixed=[one(p) for p in sig.fixed], ranks=[one(p) for p in sig.ranks], searched=[one(p) for p in sig.searched])


def final_comparisons(summary: RunSummary) -> list[Comparison]:
    """Every retrained configuration that is not a fixed point, and the search leader
    whatever its origin, against every other retrained fixed point (see :class:`Comparison`);
    the leader's rows first, then in the final stage's order. Empty without a retrained fixed
    point or without the test metric."""
    from scipy import stats  # here: status and the live view never need scipy

    metric = test_metric(summary)
    leader = summary.trials[0].trial_id if summary.trials else None
    tested = [f for f in summary.final if len(f.values.get(metric, [])) > 0]
    fixed = [f for f in tested if f.origin == FIXED]
    configs = sorted((f for f in tested if f.origin != FIXED or f.source == leader), key=lambda f: f.source != leader)
    sign = 1.0 if summary.cfg.asha.mode == "max" else -1.0
    raw = []
    for c in configs:
        for b in fixed:
            if b.source == c.source:
                continue
            x, y = c.values[metric], b.values[metric]
            diff = statistics.fmean(x) - statistics.fmean(y)
            low = high = t = df = p = math.nan
            flat = len(x) > 1 and len(y) > 1 and statistics.pvariance(x) == 0.0 and statistics.pvariance(y) == 0.0
            if len(x) > 1 and len(y) > 1 and not flat:
                with warnings.catch_warnings():
                    # One side without spread (a deterministic fixed point) is a valid Welch
                    # test; scipy warns about its moments all the same.
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = stats.ttest_ind(x, y, equal_var=False)
                ci = res.confidence_interval(CONFIDENCE)
                low, high, t, df, p = float(ci.low), float(ci.high), float(res.statistic), float(res.df), float(res.pvalue)
            raw.append(Comparison(c.source, b.source, metric, c.source == leader, len(x), len(y), statistics.fmean(x), statistics.fmean(y), diff, low, high, t, df, p, NO_SPREAD if flat else NOT_DISTINGUISHABLE, searched=c.origin != FIXED))
    out = []
    for row, q in zip(raw, holm([row.p_value for row in raw])):
        verdict = row.verdict
        if q < 1.0 - CONFIDENCE:
            verdict = "better" if sign * row.difference > 0 else "worse"
        out.append(dataclasses.replace(row, p_adjusted=q, verdict=verdict))
    return out


def _interval(trial_id: str, row: dict[str, Any] | None) -> Interval:
    if row is None:
        return Interval(trial_id, 0, None, None, math.nan, math.nan)
    acc, n = row.get(ACCURACY), row.get("val_n")
    if acc is None or n is None or math.isnan(acc):
        return Interval(trial_id, int(row["epoch"]), acc, None, math.nan, math.nan)
    low, high = accuracy_interval(float(acc), int(n))
    return Interval(trial_id, int(row["epoch"]), float(acc), int(n), low, high)


def _correctness(summary: RunSummary) -> dict[str, dict[int, Correct]]:
    """Trial id -> epoch -> per-example correctness, from the search's report rows that
    carry it (the latest row wins, as everywhere in the store)."""
    out: dict[str, dict[int, Correct]] = {}
    for row in summary.rows:
        packed, n = row.get("val_correct"), row.get("val_n")
        if row["event"] != Event.REPORT.value or packed is None or n is None:
            continue
        out.setdefault(row["trial_id"], {})[int(row["epoch"])] = unpack_correct(packed, int(n))
    return out


def _paired(summary: RunSummary, records: dict[str, dict[int, Correct]], trial: TrialSummary, other: TrialSummary, other_rank: int) -> Paired:
    mine, theirs = records.get(trial.trial_id, {}), records.get(other.trial_id, {})
    common = sorted(e for e in mine.keys() & theirs.keys() if mine[e].shape == theirs[e].shape)
    if not common:
        if not mine or not theirs:
            missing = " and ".join(t.trial_id for t, r in ((trial, mine), (other, theirs)) if not r)
            note = f"no per-example correctness recorded for {missing} (a run from before val_correct, a trainer without examples, or no rung reached yet)"
        else:
            note = "no epoch at which both recorded per-example correctness on the same examples"
        return Paired(trial.trial_id, other.trial_id, other_rank, other.origin, None, False, 0, math.nan, math.nan, 0, 0, math.nan, NO_PAIRED_DATA, note)
    epoch = common[-1]
    first, second = mine[epoch], theirs[epoch]
    b, c, p = mcnemar(first, second)
    top = epoch == summary.cfg.asha.max_epochs
    note = "" if top else f"at epoch {epoch}, the highest both reached with per-example correctness (the top rung is epoch {summary.cfg.asha.max_epochs})"
    return Paired(trial.trial_id, other.trial_id, other_rank, other.origin, epoch, top, int(first.size), float(first.mean()), float(second.mean()), b, c, p, verdict(b, c, p), note)


def fmt_interval(iv: Interval) -> str:
    """"[low, high]", or "-" without ``val_n``."""
    return "-" if iv.n is None else f"[{iv.low:.4f}, {iv.high:.4f}]"


def against_leader(p: Paired) -> str:
    """The verdict of a leaderboard trial (``p.other``) against the leader (``p.trial``): a
    row of the leaderboard reads "worse" when the leader is better than it."""
    return {"better": "worse", "worse": "better"}.get(p.verdict, p.verdict)


def short(p: Paired) -> str:
    """A leaderboard cell: :func:`against_leader` with p and the epoch compared at."""
    if p.epoch is None:
        return NO_PAIRED_DATA
    word = "not distinguishable" if p.verdict == NOT_DISTINGUISHABLE else against_leader(p)
    return f"{word} (p_adj={p.p_adjusted:.3g}, e{p.epoch})"


def sentence(p: Paired, role: str = "leader", tests: int = 1) -> str:
    """The comparison of ``p.trial`` (the ``role`` it plays: "leader", "best searched
    trial") with the fixed point ``p.other``, in words; ``tests``: the family's size."""
    if p.epoch is None:
        return f"{role} {p.trial} vs fixed point {p.other}: {NO_PAIRED_DATA} ({p.note}); cannot tell whether the {role} beats it"
    outcome = {
        "better": f"the {role} beats this fixed point on these examples",
        "worse": f"the {role} is worse than this fixed point on these examples",
    }.get(p.verdict, f"{NOT_DISTINGUISHABLE}: the {role} does not beat this fixed point on these examples")
    where = f"at epoch {p.epoch} (top rung)" if p.top else p.note
    return (
        f"{role} {p.trial} vs fixed point {p.other} {where}: {ACCURACY} {p.acc:.4f} vs {p.acc_other:.4f} on the same {p.n} "
        f"examples, {p.only_trial} right only by {p.trial} and {p.only_other} only by {p.other}; exact McNemar p = {p.p_value:.3g}, "
        f"{METHOD}-adjusted over {tests} comparison{'s' if tests != 1 else ''} p = {p.p_adjusted:.3g}: {outcome} "
        f"(descriptive: the {role} was selected on these validation examples)"
    )


def leader_sentences(sig: Significance) -> list[str]:
    """Whether the leader beats each fixed point (:func:`sentence`); when the leader is a
    fixed point itself, whether the best searched trial beats the fixed points; a word when
    the sweep has no fixed point."""
    leader = sig.leader
    if leader is None:
        return []
    lines = []
    if leader.origin == FIXED:
        lines.append(f"the leader {leader.trial_id} is a fixed point itself: no searched trial ranks above it")
    tests = family_size(list(family(sig).values()))
    lines += [sentence(p, tests=tests) for p in sig.fixed]
    lines += [sentence(p, "best searched trial", tests) for p in sig.searched]
    if leader.origin != FIXED and not sig.fixed:
        lines.append("no fixed point (points_to_evaluate) to compare the leader with")
    return lines


def ties(sig: Significance) -> str | None:
    """Which of the ranks below the leader it cannot be told from (one line), or None
    without a second trial."""
    if sig.leader is None or not sig.ranks:
        return None
    def ranks(verdicts: set[str], keep: bool) -> str:
        return ", ".join(f"{p.other_rank} ({p.other})" for p in sig.ranks if (p.verdict in verdicts) == keep)

    leader = sig.leader.trial_id
    same, unpaired = ranks({NOT_DISTINGUISHABLE}, True), ranks({NO_PAIRED_DATA}, True)
    told = ranks({NOT_DISTINGUISHABLE, NO_PAIRED_DATA}, False)
    parts = []
    if same:
        parts.append(f"not distinguishable from the leader {leader} at 95 %: rank {same}")
    elif told:
        parts.append(f"the leader {leader} is distinguishable at 95 % from every rank below it with paired data: {told}")
    if unpaired:
        parts.append(f"{NO_PAIRED_DATA} to tell the leader {leader} from rank {unpaired}")
    return "; ".join(parts) + f" (rule: {RULE})"


def render(sig: Significance, console: Console) -> None:
    """The leader against the fixed points, in words, and the line on the top ranks."""
    tie = ties(sig)
    if tie is not None:
        console.print(plain(tie))
    for line in leader_sentences(sig):
        console.print(plain(line))


def to_dict(sig: Significance) -> dict[str, Any]:
    """The JSON form: the methods, the fixed-point comparisons with their sentences, and the
    top-rank comparisons; NaN (no paired data) as null, which strict JSON readers need."""

    def record(p: Paired) -> dict[str, Any]:
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in dataclasses.asdict(p).items()}

    return {
        "confidence": CONFIDENCE,
        "interval": INTERVAL_METHOD,
        "test": "exact McNemar (scipy.stats.binomtest on the discordant counts)",
        "rule": RULE,
        "adjustment": METHOD,
        "comparisons": family_size(list(family(sig).values())),
        "descriptive": True,
        "leader_vs_fixed": [record(p) for p in sig.fixed],
        "searched_vs_fixed": [record(p) for p in sig.searched],
        "leader_sentences": leader_sentences(sig),
        "leader_vs_ranks": [record(p) for p in sig.ranks],
        "ties": ties(sig),
    }
