"""Multi-objective ASHA at scale: does the true Pareto front reach the top rung?

What is measured
    ``search_spaces/synthetic_mo.toml`` (val_acc up, latency_s down; random search, so the
    proposals do not depend on the results) with ``num_trials`` trials on ``--workers``
    simulated workers, twice, with the same seed and so the same configurations:

    * **ASHA**: the sweep as written, multi-objective ASHA (stop variant, η = 3, rungs
      1, 3, 9, 27): its time, and which trials ASHA let reach the top rung (epoch 27);
    * **no stopping**: ``--set asha.min_epochs=27``, one rung at the last epoch, so every
      trial trains all 27 epochs; its Pareto front at epoch 27 is the *true front*.

    It prints how many trials of the true front ASHA kept (reached the top rung), the rate
    (beside the rate a random choice of the same number of top-rung trials would give), the
    epoch at which ASHA stopped each true-front trial it did not keep,
    how many of the ASHA run's own front are on the true front, the epochs each run trained,
    and the real seconds each took. Both runs use the real driver, ASHA policy, worker code
    and Parquet store on a virtual clock (``kdsweep simulate``).

Run: ``python benchmarks/moasha_front.py [--trials 1000] [--workers 4] [--out-root DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from kdsweep.orchestrator.config import load_sweep
from kdsweep.orchestrator.pareto import pareto
from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.simulate import SimulationResult, simulate, synthetic

SWEEP = "synthetic_mo"


@dataclasses.dataclass(frozen=True)
class FrontKept:
    """What ASHA kept of the true Pareto front (trial ids are the same in both runs)."""

    asha: SimulationResult
    full: SimulationResult
    true_front: frozenset[str]
    reached_top: frozenset[str]
    asha_front: frozenset[str]
    #: Trial id -> the last epoch each trial of the ASHA run trained.
    epochs: dict[str, int]

    @property
    def kept(self) -> frozenset[str]:
        return self.true_front & self.reached_top

    @property
    def rate(self) -> float:
        return len(self.kept) / len(self.true_front)

    @property
    def chance(self) -> float:
        """The rate were the top-rung trials drawn at random: the share of all trials there."""
        return len(self.reached_top) / self.full.num_trials


def measure(trials: int, workers: int, root: Path) -> FrontKept:
    """Run both sweeps into ``root`` and compare them (ValueError when their configurations
    differ, which would make the comparison meaningless)."""
    common = [f"num_trials={trials}"]
    runs = {}
    for name, extra in (("asha", []), ("full", ["asha.min_epochs=27"])):
        cfg = load_sweep(SWEEP, common + extra)
        runs[name] = simulate(synthetic(cfg), root / name, workers)
    summaries = {name: summarize(result.run_dir) for name, result in runs.items()}
    params = {name: {t.trial_id: t.params for t in s.trials} for name, s in summaries.items()}
    if params["asha"] != params["full"]:
        raise ValueError("the two runs proposed different configurations; the searcher must not depend on results")
    fronts = {name: pareto(s) for name, s in summaries.items()}
    full, asha = fronts["full"], fronts["asha"]
    if full is None or asha is None or full.epoch != asha.epoch:
        raise ValueError("both runs must have trials at the last epoch")
    return FrontKept(
        asha=runs["asha"], full=runs["full"],
        true_front=frozenset(p.trial_id for p in full.front),
        reached_top=frozenset(p.trial_id for p in asha.points),
        asha_front=frozenset(p.trial_id for p in asha.front),
        epochs={t.trial_id: t.epochs for t in summaries["asha"].trials},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out-root", type=Path, default=None)
    args = parser.parse_args()
    root = args.out_root or Path(tempfile.mkdtemp(prefix="kdsweep-moasha-"))
    started = time.perf_counter()
    m = measure(args.trials, args.workers, root)
    for name, r in (("ASHA", m.asha), ("no stopping", m.full)):
        print(
            f"{name}: {r.num_trials} trials on {r.workers} workers, {r.real_s:.1f} s real, simulated {r.wall_s / 3600:.1f} h; "
            f"{r.epochs_trained} epochs trained of {r.epochs_without_stopping} ({r.run_dir})"
        )
    print(f"true Pareto front (no stopping, epoch 27): {len(m.true_front)} trials: {sorted(m.true_front)}")
    print(
        f"ASHA let {len(m.reached_top)} trials reach the top rung ({m.chance:.1%} of all, the rate a random choice would keep); "
        f"of the true front it kept {len(m.kept)} of {len(m.true_front)} = {m.rate:.0%}"
    )
    missed = ", ".join(f"{tid} at epoch {m.epochs[tid]}" for tid in sorted(m.true_front - m.reached_top))
    print(f"  true-front trials ASHA stopped: {missed or 'none'}")
    on_true = len(m.asha_front & m.true_front)
    print(f"ASHA run's own front at the top rung: {len(m.asha_front)} trials, {on_true} of them on the true front")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
