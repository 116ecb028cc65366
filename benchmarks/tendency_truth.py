"""How often the parameter tendencies say something false, on sweeps where the truth is known.

The synthetic trainer's ``decoy`` has no effect on any curve, so any direction the report
gives it ("higher is better", "lower is better", "best inside the range") is a false claim;
``lr`` is the dominant parameter, and where it is best is known from the closed form: at
epoch 1 (rung 0 of ``synthetic.toml``'s ladder 1, 3, 9, 27) fast starters lead and the best
lr is about 0.35; once the curves have settled (epoch 9) the best lr is 0.05, where
``a_inf`` peaks. This script runs ``--sweeps`` simulated sweeps of ``--trials`` [100] trials
per searcher and budget (the real driver, searcher, ASHA and store on the simulated backend,
4 workers; seeds 1..N), computes the tendencies exactly as ``kdsweep report`` does
(``analyses.compute``), and prints per searcher and budget: the rate at which ``decoy`` got a
direction (with its Wilson 95 % interval, scipy), how often ``lr`` ranked first in
importance, how often lr's best quarter holds the true best lr at the analysis' epoch, and
lr's words. Budgets: ``asha`` — ``synthetic.toml`` as it is (the analysis at rung 0, epoch
1); ``settled`` — every trial trained 9 epochs (one rung at epoch 9). Its last line is one
JSON object with the same numbers.

Run: ``python benchmarks/tendency_truth.py [--sweeps 40] [--searchers random tpe gp]
[--budgets asha settled] [--trials 100]``. About 4-16 s per random or TPE sweep and 50 s per
GP sweep (Optuna's GP proposes in 0.2-1 s at 100 trials) on 2 shared cores.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.analyses import compute
from kdsweep.orchestrator.config import load_sweep
from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.simulate import simulate, synthetic
from kdsweep.orchestrator.tendencies import UNCLEAR


#: The ``--set`` overrides of each budget.
BUDGETS = {"asha": [], "settled": ["asha.min_epochs=9", "asha.max_epochs=9"]}


def best_lr(epoch: int) -> float:
    """The lr of the synthetic trainer's best curve at ``epoch`` (momentum 0.9, the widest
    width), by a fine grid over [1e-4, 1] on the log scale; from the trainer's own formula."""
    from kdsweep.trainers.base import TrialContext
    from kdsweep.trainers.synthetic import SyntheticSettings, SyntheticTrainer

    def mean(lr: float) -> float:
        t = SyntheticTrainer({"lr": lr, "momentum": 0.9, "width": 128}, SyntheticSettings(noise_std=0.0), TrialContext(trial_id="t", seed=0, attempt=0, run_dir=Path("."), cache_dir=Path("."), device="cpu", data=None, budget_epochs=epoch))
        return t.a_inf - (t.a_inf - 0.1) * math.exp(-epoch / t.tau)

    grid = [10 ** (-4 + 4 * i / 4000) for i in range(4001)]
    return max(grid, key=mean)


def one_sweep(searcher: str, budget: str, seed: int, trials: int, out: Path) -> dict[str, Any]:
    """One simulated sweep's tendencies: decoy's words, lr's importance rank, range, words."""
    overrides = [f"searcher={searcher}", f"seed={seed}", f"num_trials={trials}", "points_to_evaluate=[]", *BUDGETS[budget]]
    cfg = load_sweep("synthetic", overrides)
    simulate(synthetic(cfg), out, workers=4)
    t = compute(summarize(str(out))).tendencies
    if t is None:
        raise RuntimeError(f"{searcher} seed {seed}: no tendencies")
    by_name = {p.name: p for p in t.params}
    order = [p.name for p in t.params]
    lr = by_name["lr"]
    return {
        "epoch": t.epoch,
        "decoy": by_name["decoy"].direction,
        "decoy_p_adjusted": by_name["decoy"].p_adjusted,
        "lr_rank": order.index("lr") + 1,
        "lr_best": lr.best,
        "lr_words": lr.direction,
        "lr_peak": lr.curvature_peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=40)
    parser.add_argument("--searchers", nargs="+", default=["random", "tpe", "gp"])
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args(argv)
    from scipy import stats

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            for searcher in args.searchers:
                start = time.perf_counter()
                runs = [one_sweep(searcher, budget, seed, args.trials, Path(tmp) / f"{budget}-{searcher}-{seed}") for seed in range(1, args.sweeps + 1)]
                truth = best_lr(runs[0]["epoch"])
                wrong = sum(1 for r in runs if r["decoy"] != UNCLEAR)
                ci = stats.binomtest(wrong, len(runs)).proportion_ci(0.95, method="wilson")
                r = results.setdefault(budget, {})[searcher] = {
                    "sweeps": len(runs),
                    "epoch": runs[0]["epoch"],
                    "decoy_direction_rate": wrong / len(runs),
                    "decoy_direction_ci95": [float(ci.low), float(ci.high)],
                    "lr_first_rate": sum(1 for r in runs if r["lr_rank"] == 1) / len(runs),
                    "best_lr": truth,
                    "lr_best_quarter_holds_it": sum(1 for r in runs if r["lr_best"][0] <= truth <= r["lr_best"][1]) / len(runs),
                    "lr_best_quarter_median": [statistics.median(r["lr_best"][0] for r in runs), statistics.median(r["lr_best"][1] for r in runs)],
                    "lr_words": dict(collections.Counter(r["lr_words"] for r in runs)),
                    "seconds_per_sweep": (time.perf_counter() - start) / len(runs),
                }
                print(
                    f"{budget} (epoch {r['epoch']}), {searcher}: decoy given a direction in {wrong} of {len(runs)} sweeps "
                    f"({r['decoy_direction_rate']:.1%}, 95 % [{ci.low:.1%}, {ci.high:.1%}]); lr first in importance in "
                    f"{r['lr_first_rate']:.0%}; its best quarter holds the true best lr {truth:.3g} in {r['lr_best_quarter_holds_it']:.0%} "
                    f"(median {r['lr_best_quarter_median'][0]:.3g}-{r['lr_best_quarter_median'][1]:.3g}); lr words {r['lr_words']}; "
                    f"{r['seconds_per_sweep']:.1f} s per sweep",
                    flush=True,
                )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
