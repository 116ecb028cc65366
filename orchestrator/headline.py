"""The headline of a report: does the search beat the baseline?

Only the final stage can say. During the search the leader is the best of all trials on the
very validation examples it would be tested on, so "the leader beats the baseline" there is
biased towards yes (with every trial truly equal to the baseline, 14 % of simulated sweeps of
10 trials and 63 % of 100 said so: ``benchmarks/null_sweeps.py``). ``kdsweep retrain``
retrains the configurations the search chose and the fixed points with fresh seeds and
measures each once on the held-out test split, which played no part in choosing them; the
report compares every retrained searched configuration with every retrained fixed point by
Welch's t-test over the repeats, Holm-adjusted over configurations × fixed points
(``significance.final_comparisons``). The headline reads those adjusted comparisons:

* **better** — some retrained searched configuration is better than every retrained fixed
  point (each at an adjusted p < 0.05); ``p_adjusted`` is the largest of its adjusted
  p-values (the claim needs every one of them);
* **worse** — every retrained searched configuration is worse than some fixed point;
* **not distinguishable at 95 %** — anything else (also when the repeats have no spread);
* **not settled** — no final stage with a searched configuration and a fixed point yet: the
  headline says so, quotes the search's validation comparison as descriptive, and prints the
  exact ``kdsweep retrain`` command that would settle it;
* **no baseline** — the sweep has no fixed point (``points_to_evaluate``) to beat.

Pure Python over the cached analyses: it imports no scipy.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from typing import Any

from rich.console import Console

from kdsweep.orchestrator import analyses
from kdsweep.orchestrator.multiplicity import METHOD
from kdsweep.orchestrator.safe_text import plain
from kdsweep.orchestrator.significance import NO_SPREAD, NOT_DISTINGUISHABLE, Comparison, Paired, Significance
from kdsweep.orchestrator.summary import FIXED, RunSummary, test_metric

#: Headline verdicts besides "better", "worse" and "not distinguishable at 95 %".
NOT_SETTLED = "not settled"
NO_BASELINE = "no baseline"
#: Repeats the suggested ``kdsweep retrain`` asks for: the fewest at which Welch's test has
#: a spread on each side to work with.
REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Headline:
    """The answer to "does the search beat the baseline?" (module docstring).

    ``stage``: "final" when it comes from the final stage's test-split comparisons, else
    "search". ``verdict``: one of "better", "worse", "not distinguishable at 95 %",
    "not settled", "no baseline". ``sentence``: the answer in words, with its numbers.
    ``p_adjusted``: the Holm-adjusted p the verdict rests on (final stage), or, in the search
    stage, the descriptive validation comparison's (None where there is none). ``config`` and
    ``fixed``: the searched configuration and the fixed point the sentence names;
    ``metric``: the metric compared; ``command``: the ``kdsweep retrain`` that would settle
    or complete it (None when settled)."""

    stage: str
    verdict: str
    sentence: str
    p_adjusted: float | None
    config: str | None
    fixed: str | None
    metric: str | None
    command: str | None


def headline(summary: RunSummary, sig: Significance) -> Headline:
    """The headline of ``summary``, whose report shows the validation comparisons ``sig``."""
    fixed_ids = [t.trial_id for t in summary.trials if t.origin == FIXED]
    if not fixed_ids:
        return Headline("search", NO_BASELINE, "no fixed point (points_to_evaluate) to compare the search with: add the research baseline to the sweep file to ask whether the search beats it", None, None, None, None, None)
    rows = [c for c in analyses.of(summary).comparisons if c.searched]
    if rows:
        return _final(summary, rows)
    return _search(summary, sig, fixed_ids)


def _final(summary: RunSummary, rows: list[Comparison]) -> Headline:
    metric = rows[0].metric
    by_config: dict[str, list[Comparison]] = {}
    for c in rows:
        by_config.setdefault(c.config, []).append(c)
    n = len(analyses.of(summary).comparisons)
    family = f"{METHOD}-adjusted over {n} comparison{'s' if n != 1 else ''} (configurations × fixed points)"
    winners = [cs for cs in by_config.values() if all(c.verdict == "better" for c in cs)]
    if winners:
        best = min(winners, key=lambda cs: max(c.p_adjusted for c in cs))
        weakest = max(best, key=lambda c: c.p_adjusted)
        return Headline(
            "final", "better",
            f"the search beats the baseline: {weakest.config}, retrained {weakest.n_config}×, is better than every retrained fixed point on the "
            f"held-out {metric} ({_versus(best)}); {family}, the largest p_adj = {weakest.p_adjusted:.3g}",
            weakest.p_adjusted, weakest.config, weakest.fixed, metric, None,
        )  # fmt: skip
    if all(any(c.verdict == "worse" for c in cs) for cs in by_config.values()):
        # The search's own pick first: the leader's configuration, else the first retrained.
        cs = next((cs for cs in by_config.values() if cs[0].leader), next(iter(by_config.values())))
        worst = min((c for c in cs if c.verdict == "worse"), key=lambda c: c.p_adjusted)
        return Headline(
            "final", "worse",
            f"the search does not beat the baseline: every retrained searched configuration is worse than a fixed point on the held-out {metric} "
            f"({worst.config}: {_versus([worst])}); {family}",
            worst.p_adjusted, worst.config, worst.fixed, metric, None,
        )  # fmt: skip
    # The comparison closest to a win: the smallest adjusted p in the better direction.
    sign = 1.0 if summary.cfg.asha.mode == "max" else -1.0
    tested = [c for c in rows if not math.isnan(c.p_adjusted)]
    closest = min(tested, key=lambda c: (sign * c.difference <= 0, c.p_adjusted)) if tested else rows[0]
    why = " (the repeats have no spread: retrain with more repeats or seeds that differ)" if all(c.verdict == NO_SPREAD for c in rows) else ""
    return Headline(
        "final", NOT_DISTINGUISHABLE,
        f"{NOT_DISTINGUISHABLE}: no retrained searched configuration is better than every retrained fixed point on the held-out {metric}{why} "
        f"(closest: {closest.config}: {_versus([closest])}); {family}",
        None if math.isnan(closest.p_adjusted) else closest.p_adjusted, closest.config, closest.fixed, metric, None,
    )  # fmt: skip


def _versus(rows: list[Comparison]) -> str:
    """"vs t0000: +0.0123, 95 % Welch interval [+0.0040, +0.0206], p_adj = 0.003; vs ..."."""

    def one(c: Comparison) -> str:
        interval = "" if math.isnan(c.low) else f", 95 % Welch interval [{c.low:+.4f}, {c.high:+.4f}]"
        p = "" if math.isnan(c.p_adjusted) else f", p_adj = {c.p_adjusted:.3g}"
        return f"vs {c.fixed}: {c.mean_config:.4f} vs {c.mean_fixed:.4f}, {c.difference:+.4f}{interval}{p}"

    return "; ".join(one(c) for c in rows)


def _search(summary: RunSummary, sig: Significance, fixed_ids: list[str]) -> Headline:
    best = next((t for t in summary.trials if t.origin != FIXED), None)
    if best is None:
        return Headline("search", NOT_SETTLED, "no searched trial has a result yet: nothing to compare with the fixed points", None, None, fixed_ids[0], None, None)
    command = retrain_command(summary, best.trial_id, fixed_ids)
    compared = [p for p in sig.fixed + sig.searched if p.trial == best.trial_id and p.epoch is not None]
    seen = ""
    p_adjusted = None
    if compared:
        p: Paired = min(compared, key=lambda p: p.p_adjusted)
        seen = (
            f"; descriptive only — on the validation examples that chose it, {best.trial_id} vs fixed point {p.other}: "
            f"{p.verdict}, {METHOD}-adjusted p = {p.p_adjusted:.3g}"
        )
        p_adjusted = p.p_adjusted
    return Headline(
        "search", NOT_SETTLED,
        f"not settled: whether the search beats the baseline is decided on the held-out test split by the final stage, which this run "
        f"{'has not yet run with both a searched configuration and a fixed point' if summary.final else 'has not run'}{seen}. Settle it with: {command}",
        p_adjusted, best.trial_id, fixed_ids[0], test_metric(summary), command,
    )  # fmt: skip


def retrain_command(summary: RunSummary, best: str, fixed_ids: list[str]) -> str:
    """The ``kdsweep retrain`` that retrains the best searched trial and every fixed point
    (at least :data:`REPEATS` times; as often and as long as a final stage already run, so
    that the runs are comparable)."""
    repeats = max([REPEATS, *(f.runs for f in summary.final)])
    epochs = next((f.epochs for f in summary.final), None)
    words = ["kdsweep", "retrain", str(summary.run_dir or "RUN_DIR"), "--top", "0"]
    for tid in [best, *fixed_ids]:
        words += ["--trial", tid]
    words += ["--repeats", str(repeats)] + (["--epochs", str(epochs)] if epochs else [])
    return shlex.join(words)


def render(summary: RunSummary, sig: Significance, console: Console) -> None:
    """The headline as the report's last line."""
    h = headline(summary, sig)
    console.print(plain(f"headline ({h.stage} stage): {h.sentence}"))


def to_dict(summary: RunSummary, sig: Significance) -> dict[str, Any]:
    """The headline for JSON (``headline`` at the top level of ``report --format json``)."""
    return dataclasses.asdict(headline(summary, sig))
