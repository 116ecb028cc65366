"""How often the report says "the search beats the baseline" when it does not.

Simulates sweeps in which every configuration is exactly as good as the baseline and counts
how often each verdict says "better", through the very code ``kdsweep report`` runs — a
``RunSummary`` is built from simulated rows and final-stage results and handed to
``significance.analyse``, ``significance.final_comparisons`` and ``headline.headline``; nothing
here re-implements a test.

One simulated sweep of T trials (defaults in brackets):

* **search** — the baseline (a fixed point) and T searched configurations are evaluated on
  one validation split of ``--val-n`` [5 000] examples at the top rung. The baseline gets
  each example right with probability ``--accuracy`` [0.90]; every configuration disagrees
  with it on ``--discordance`` [8 %] of the examples, as often right where the baseline is
  wrong as wrong where it is right, so its expected accuracy is the baseline's (equally
  good, differently wrong — two networks trained with different hyperparameters). The
  leader is the best on validation (the report's ranking rule).
* **final stage** — the ``--top`` [3] best searched configurations by validation and the
  baseline are retrained ``--repeats`` [3] times each; a retrain's test accuracy is its true
  accuracy plus a seed effect (normal, sd ``--seed-sd`` [0.003]) counted over ``--test-n``
  [10 000] held-out examples (binomial).

Rates printed per T in (10, 30, 100), over ``--sweeps`` sweeps each:

* ``headline_fp`` — the headline says "better" (the final stage's Welch tests, Holm over
  configurations × fixed points): should be at most 5 % up to Monte-Carlo error;
* ``descriptive_fp`` — the verdict the report gave before the final stage existed: the
  leader beats the baseline by the exact McNemar test on the validation examples that chose
  it, unadjusted (for contrast: it grows with T, as the leader is the maximum of T);
* ``descriptive_adjusted_fp`` — the same comparison as the report now labels it (descriptive,
  Holm-adjusted over the report's comparisons);
* ``power`` — the headline says "better" when one configuration is truly 2 points better
  (``--effect``) than the baseline and every other one, on validation and test alike.

The last line printed is one JSON object: ``{"trials": {"10": {"headline_fp": …,
"descriptive_fp": …, "descriptive_adjusted_fp": …, "power": …}, …}, "settings": …}``.
Run: ``python benchmarks/null_sweeps.py --sweeps 500 --json`` (about 2 minutes here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from typing import Any

import numpy as np

from kdsweep.orchestrator import headline
from kdsweep.orchestrator.analyses import Analyses
from kdsweep.orchestrator.config import SweepConfig, load_sweep
from kdsweep.orchestrator.ranking import rank_key
from kdsweep.orchestrator.significance import final_comparisons
from kdsweep.orchestrator.summary import FIXED, FinalResult, RunSummary, TrialSummary
from kdsweep.orchestrator.schema import Event, Stage, pack_correct
from kdsweep.orchestrator.significance import analyse

#: The sweep the summaries describe: one rung (every trial evaluated at epoch 9), val_acc.
CONFIG = ["asha.min_epochs=9", "asha.max_epochs=9"]
EPOCH = 9
#: Leaderboard rows of a default ``kdsweep report``: the comparisons its verdicts adjust over.
REPORT_TOP = 10


@dataclasses.dataclass(frozen=True)
class Settings:
    val_n: int
    accuracy: float
    discordance: float
    top: int
    repeats: int
    seed_sd: float
    test_n: int
    effect: float


def _correct(rng: np.random.Generator, baseline: np.ndarray, s: Settings, gain: float) -> np.ndarray:
    """A configuration's per-example correctness: it disagrees with ``baseline`` on a fraction
    ``discordance`` of the examples; with ``gain`` 0 as often right-where-wrong as
    wrong-where-right (equal accuracy), else shifted so its accuracy is ``gain`` higher."""
    p = s.accuracy
    # Flip probabilities: right -> wrong q1 on the p right examples, wrong -> right q2 on the
    # 1 - p wrong ones; discordance p·q1 + (1 - p)·q2, accuracy change (1 - p)·q2 - p·q1.
    q1 = (s.discordance - gain) / (2 * p)
    q2 = (s.discordance + gain) / (2 * (1 - p))
    flip = np.where(baseline, rng.random(baseline.size) < q1, rng.random(baseline.size) < q2)
    return baseline ^ flip


def one_sweep(cfg: SweepConfig, rng: np.random.Generator, trials: int, s: Settings, better: bool) -> dict[str, bool]:
    """One simulated sweep through the report's code; which verdicts said "better"."""
    base = rng.random(s.val_n) < s.accuracy
    gains = np.zeros(trials)
    if better:
        gains[rng.integers(trials)] = s.effect
    correct = {"t0000": base} | {f"t{i + 1:04d}": _correct(rng, base, s, g) for i, g in enumerate(gains)}
    true_acc = {"t0000": s.accuracy} | {f"t{i + 1:04d}": s.accuracy + g for i, g in enumerate(gains)}
    rows: list[dict[str, Any]] = []
    summaries = []
    for tid, c in correct.items():
        origin = FIXED if tid == "t0000" else "random"
        acc = float(c.mean())
        rows.append({"trial_id": tid, "event": Event.REPORT.value, "epoch": EPOCH, "rung": 0, "stage": Stage.SEARCH.value, "val_acc": acc, "val_n": s.val_n, "val_correct": pack_correct(c)})
        summaries.append(TrialSummary(tid, origin, Event.COMPLETED.value, EPOCH, acc, {}, 1, None))
    summaries.sort(key=lambda t: rank_key(t.trial_id, t.epochs, t.value, "max"))
    retrained = [t.trial_id for t in summaries if t.origin != FIXED][: s.top] + ["t0000"]
    final = []
    for tid in retrained:
        p = np.clip(true_acc[tid] + rng.normal(0.0, s.seed_sd, s.repeats), 0.0, 1.0)
        tests = [float(x) for x in rng.binomial(s.test_n, p) / s.test_n]
        origin = FIXED if tid == "t0000" else "random"
        final.append(FinalResult(tid, origin, {}, EPOCH, s.repeats, s.repeats, {"test_acc": (float(np.mean(tests)), float(np.std(tests, ddof=1)), s.repeats)}, {"test_acc": tests}))
    summary = RunSummary(cfg, summaries, [], None, [], rows=rows, final=final)
    # The report's own statistics, as analyses.compute makes them (without the tendencies,
    # which need rungs; the ranks a default report shows rather than all of them).
    analyses = Analyses(analyse(summary, REPORT_TOP), None, final_comparisons(summary))
    summary.__dict__["analyses"] = analyses  # the cached property, as analyses.of would fill it
    sig = analyses.significance_top(REPORT_TOP)
    h = headline.headline(summary, sig)
    leader_vs_baseline = next((p for p in sig.fixed + sig.searched if p.other == "t0000"), None)
    old = leader_vs_baseline is not None and leader_vs_baseline.p_value < 0.05 and leader_vs_baseline.only_trial > leader_vs_baseline.only_other
    new = leader_vs_baseline is not None and leader_vs_baseline.verdict == "better"
    return {"headline": h.verdict == "better", "descriptive": old, "descriptive_adjusted": new}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=200, help="sweeps per number of trials (and as many for the power)")
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--val-n", type=int, default=5000)
    parser.add_argument("--accuracy", type=float, default=0.90)
    parser.add_argument("--discordance", type=float, default=0.08)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-sd", type=float, default=0.003)
    parser.add_argument("--test-n", type=int, default=10_000)
    parser.add_argument("--effect", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed last; kept for scripts that pass it)")
    args = parser.parse_args(argv)
    s = Settings(args.val_n, args.accuracy, args.discordance, args.top, args.repeats, args.seed_sd, args.test_n, args.effect)
    cfg = load_sweep("synthetic", CONFIG)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for trials in args.trials:
        rng = np.random.default_rng([args.seed, trials])
        null = [one_sweep(cfg, rng, trials, s, better=False) for _ in range(args.sweeps)]
        alt = [one_sweep(cfg, rng, trials, s, better=True) for _ in range(args.sweeps)]
        rate = {k: sum(r[k] for r in null) / len(null) for k in ("headline", "descriptive", "descriptive_adjusted")}
        power = sum(r["headline"] for r in alt) / len(alt)
        mc = 2 * math.sqrt(0.05 * 0.95 / args.sweeps)
        out[str(trials)] = {"headline_fp": rate["headline"], "descriptive_fp": rate["descriptive"], "descriptive_adjusted_fp": rate["descriptive_adjusted"], "power": power}
        print(
            f"{trials:>4} trials, {args.sweeps} null sweeps: headline says better in {rate['headline']:.1%} (5 % ± {mc:.1%} allowed), "
            f"the old validation verdict in {rate['descriptive']:.1%}, the descriptive adjusted one in {rate['descriptive_adjusted']:.1%}; "
            f"power at +{args.effect:g}: {power:.1%}",
            flush=True,
        )
    print(f"{time.perf_counter() - start:.1f} s for {2 * args.sweeps * len(args.trials)} sweeps", file=sys.stderr)
    print(json.dumps({"trials": out, "settings": dataclasses.asdict(s) | {"sweeps": args.sweeps}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
