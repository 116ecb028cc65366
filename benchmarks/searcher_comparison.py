"""Seed 002's searcher comparison: one student-topology sweep under gp, ga, tpe and random.

What is compared
    ``search_spaces/student_topology_vgg_seed.toml`` (VGG-form students, the VGG16 with halved
    filters as the fixed first trial, every student trained the same number of epochs: no
    early stopping, as the seed ran) once per searcher and seed, all with the same budget of
    proposals. Per searcher: the mean ± std over seeds of the best J a sweep found; ``gp``
    against ``ga`` paired by seed (same seed, same random start): the mean difference, a
    paired t-test and the Wilcoxon signed-rank test (seed 002's Table 3 averages 9 seeds:
    ``--seeds 9``). Per fixed
    point: the mean ± std of its J over every sweep (it is trained again in each, from that
    sweep's seed). The model-based searchers start alike: ``gp`` and ``tpe`` propose the first
    half of the budget at random (the seed's 150 random + 150 guided), ``ga``'s first
    generation is random (the seed's population of 20; half the budget on digits). ``gp`` and
    ``ga`` draw that random start from the same Optuna sampler and seed stream, so with one
    seed they begin with the same students (common random numbers); ``tpe`` and ``random``
    share hyperopt's. Each sweep line says which trial was best: a trial id past the random
    start means the model found it.

    The teacher is trained once (one teacher cache for all sweeps) and its latency and
    accuracy, t_max and a_max, are measured by the first sweep and pinned for the others, so
    every J is on one scale. Student latencies are measured per trial: on a shared machine
    they carry its load, which moves J; the fixed point, trained in every sweep, shows how
    much, and the order of the searchers rotates from seed to seed so that a drift in load
    does not favour one of them.

Scales
    default: digits at 8×8 (teacher 5 epochs), 3 seeds × 8 proposals × 2 epochs per searcher,
    batch 32: about 10 minutes on a 2-core CPU. A smoke-scale run: it checks the machinery end
    to end, and 8 proposals cannot separate the searchers the way the seed's 300 did.
    ``--data-root DIR`` (a directory holding ``cifar-10-batches-py``): CIFAR-10 at the seed's
    scale, 300 proposals × 10 epochs, n_startup_trials 150, population_size 20 (15
    generations), on the GPU the worker sees: about 5.5 h per sweep on one H200
    (student_topology_vgg_seed.toml has the arithmetic), so 4 searchers × ``--seeds``.

How
    The real ``kdsweep launch`` in a subprocess per sweep (``python -m
    kdsweep.orchestrator.cli launch student_topology_vgg_seed --set searcher=gp --set seed=N
    ...``) into ``--out-root`` (default a temporary directory), J read back from each run
    with ``kdsweep.orchestrator.report.summarize``. Run again on the same ``--out-root``, it
    resumes each sweep (``launch --resume``): an interrupted comparison continues, finished
    sweeps are only read. Prints one line per sweep, then the
    comparison beside the seed's numbers (CIFAR-10, 9 seeds: GA 0.756, BO 0.814; halved VGG16
    0.649), and writes ``comparison.json`` to the out root.

Run: ``python benchmarks/searcher_comparison.py [--seeds 3] [--searchers gp ga tpe random]
[--num-trials 8] [--epochs 2] [--data-root DIR] [--out-root DIR]``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.search_options import SEARCHER_OPTIONS, SEARCHERS

SWEEP_FILE = "student_topology_vgg_seed"

#: Seed 002's numbers (CIFAR-10, 300 proposals × 10 epochs, 9 seeds): mean best J (Table 3)
#: and the halved VGG16's J (Table 1).
SEED_BEST_J = {"ga": 0.756, "gp": 0.814}
SEED_HALVED_VGG16_J = 0.649


@dataclasses.dataclass(frozen=True)
class Scale:
    """One budget: proposals and epochs per sweep, the searchers' options, data overrides."""

    num_trials: int
    epochs: int
    n_startup_trials: int
    population_size: int
    overrides: tuple[str, ...]


def digits_scale(num_trials: int, epochs: int) -> Scale:
    # Half the budget random for every model, as the seed's 150 + 150 (ga: one generation).
    half = max(2, num_trials // 2)
    return Scale(num_trials, epochs, half, half, (
        'data.dataset="digits"', "data.image_size=8", "settings.teacher_epochs=5",
        "settings.batch_size=32", "backend.gpus_per_trial=0",
        # Three timed passes after one warm-up: a student of digits' 144 validation images
        # takes milliseconds, and the sweep file's 2 + 5 would be most of a short trial.
        "settings.latency_warmup=1", "settings.latency_repeats=3",
    ))  # fmt: skip


def cifar_scale(root: Path, num_trials: int, epochs: int) -> Scale:
    # The sweep file's own settings (batch 128, teacher 30 epochs) with the seed's options.
    return Scale(num_trials, epochs, 150, 20, (f"data.root={json.dumps(str(root))}",))


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """One finished sweep, as the comparison reads it back."""

    searcher: str
    seed: int
    best_j: float
    #: The best trial's id (t0000 is the fixed point; ids count proposals) and filters.
    best_trial: str
    best_filters: list[int]
    #: J of each fixed point, by its filter list as text.
    fixed_j: dict[str, float]
    #: The teacher reference its J was scored against (seconds, accuracy).
    t_max: float
    a_max: float
    wall_s: float


def overrides(scale: Scale, searcher: str, seed: int, teacher_cache: Path, reference: tuple[float, float] | None) -> list[str]:
    """The ``--set`` values of one sweep: the scale, the searcher with the options it takes
    (search_options decides which), the seed, a shared teacher, pinned t_max/a_max if known."""
    sets = [
        *scale.overrides, f"searcher={json.dumps(searcher)}", f"seed={seed}", f"num_trials={scale.num_trials}",
        f"asha.min_epochs={scale.epochs}", f"asha.max_epochs={scale.epochs}",
        f"settings.teacher_cache={json.dumps(str(teacher_cache))}",
    ]  # fmt: skip
    sets += [f"{name}={getattr(scale, name)}" for name in SEARCHER_OPTIONS[searcher]]
    if reference is not None:
        sets += [f"objective.t_max={reference[0]!r}", f"objective.a_max={reference[1]!r}"]
    return sets


def run_sweep(out: Path, sets: Sequence[str]) -> float:
    """Launch one sweep with the real CLI, or resume it where ``out`` holds one already (a
    finished sweep then only reports); its wall seconds. RuntimeError with the CLI's output
    if it fails."""
    cli = [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "--no-live"]
    if (out / "run.json").exists():
        cmd = [*cli, "--resume", str(out)]
    else:
        cmd = [*cli, SWEEP_FILE, "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def read_result(out: Path, searcher: str, seed: int, wall_s: float) -> SweepResult:
    """Best J and the fixed points' J of a finished sweep, from its results store."""
    summary = summarize(str(out))
    scored = [t for t in summary.trials if t.value is not None and math.isfinite(t.value)]
    if not scored:
        raise RuntimeError(f"{out}: no trial reported J")
    best = max(scored, key=lambda t: t.value or 0.0)
    names = [spec.name for spec in summary.cfg.space]
    fixed = {str([t.params[n] for n in names]): float(t.value or 0.0) for t in scored if t.origin == "fixed"}
    reported = [r for r in summary.rows if r.get("t_max") is not None]
    return SweepResult(
        searcher, seed, float(best.value or 0.0), best.trial_id, [int(best.params[n]) for n in names], fixed,
        float(reported[-1]["t_max"]), float(reported[-1]["a_max"]), wall_s,
    )  # fmt: skip


def mean_std(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, mean and sample standard deviation of one searcher's best J over the seeds."""
    return {
        "n": len(values), "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": list(values),
    }  # fmt: skip


def paired_test(results: Sequence[SweepResult], a: str, b: str) -> dict[str, Any] | None:
    """``a`` against ``b`` over the seeds both ran (a sweep of each per seed: a pair), on
    the best J: the mean paired difference a − b, a paired t-test and the Wilcoxon
    signed-rank test (two-sided; scipy's defaults: exact for small n, zero differences
    dropped). None when fewer than two seeds pair up; a test scipy cannot compute (all
    differences zero) gives NaN."""
    from scipy import stats

    by_seed = {(r.searcher, r.seed): r.best_j for r in results}
    seeds = sorted(seed for (searcher, seed) in by_seed if searcher == a and (b, seed) in by_seed)
    if len(seeds) < 2:
        return None
    diffs = [by_seed[(a, s)] - by_seed[(b, s)] for s in seeds]
    t = stats.ttest_rel([by_seed[(a, s)] for s in seeds], [by_seed[(b, s)] for s in seeds])
    try:
        w = stats.wilcoxon(diffs)
        w_stat, w_p = float(w.statistic), float(w.pvalue)
    except ValueError:  # every difference is zero
        w_stat = w_p = math.nan
    return {
        "a": a, "b": b, "n": len(seeds), "seeds": seeds, "mean_diff": statistics.fmean(diffs),
        "diffs": diffs, "t_statistic": float(t.statistic), "t_pvalue": float(t.pvalue),
        "wilcoxon_statistic": w_stat, "wilcoxon_pvalue": w_p,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="sweeps per searcher (seeds 0..N-1)")
    parser.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=SEARCHERS)
    parser.add_argument("--num-trials", type=int, default=None, help="proposals per sweep (default 8; 300 with --data-root)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per student (default 2; 10 with --data-root)")
    parser.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 directory: the seed's scale")
    parser.add_argument("--out-root", type=Path, default=None)
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.data_root is None:
        scale = digits_scale(args.num_trials or 8, args.epochs or 2)
    else:
        scale = cifar_scale(args.data_root, args.num_trials or 300, args.epochs or 10)
    root = args.out_root or Path(tempfile.mkdtemp(prefix="kdsweep-searchers-"))
    print(f"runs under {root}: {len(args.searchers)} searchers × {args.seeds} seeds × {scale.num_trials} proposals × {scale.epochs} epochs")

    results: list[SweepResult] = []
    reference: tuple[float, float] | None = None
    for seed in range(args.seeds):
        # Rotated per seed: on a machine whose load drifts (latency is in J), no searcher
        # always runs last.
        shift = seed % len(args.searchers)
        for searcher in args.searchers[shift:] + args.searchers[:shift]:
            out = root / f"{searcher}-seed{seed}"
            wall = run_sweep(out, overrides(scale, searcher, seed, root / "teachers", reference))
            result = read_result(out, searcher, seed, wall)
            reference = reference or (result.t_max, result.a_max)
            results.append(result)
            fixed = ", ".join(f"{j:.3f}" for j in result.fixed_j.values())
            print(f"{searcher:6s} seed {seed}: best J {result.best_j:.3f} ({result.best_trial} {result.best_filters}); fixed point J {fixed}; {wall:.0f} s", flush=True)

    print(f"\nbest J per searcher (mean ± std over {args.seeds} seeds; t_max {reference[0] if reference else float('nan'):.4g} s, a_max {reference[1] if reference else float('nan'):.4f}):")
    per_searcher: dict[str, dict[str, Any]] = {}
    for searcher in args.searchers:
        values = [r.best_j for r in results if r.searcher == searcher]
        walls = [r.wall_s for r in results if r.searcher == searcher]
        per_searcher[searcher] = summary(values) | {"wall_s": sum(walls)}
        seed_note = f"   (seed 002 on CIFAR-10: {SEED_BEST_J[searcher]})" if searcher in SEED_BEST_J else ""
        print(f"  {searcher:6s} {mean_std(values)}  n {len(values)}  [{', '.join(f'{v:.3f}' for v in values)}]  {sum(walls):.0f} s{seed_note}")
    paired = paired_test(results, "gp", "ga") if {"gp", "ga"} <= set(args.searchers) else None
    if paired is not None:
        print(
            f"gp vs ga, paired by seed (n {paired['n']}): mean difference of best J {paired['mean_diff']:+.4f}; "
            f"paired t-test t = {paired['t_statistic']:.3f}, p = {paired['t_pvalue']:.3g}; "
            f"Wilcoxon signed-rank W = {paired['wilcoxon_statistic']:.1f}, p = {paired['wilcoxon_pvalue']:.3g}"
        )
    print("fixed points (J over every sweep):")
    for point in dict.fromkeys(p for r in results for p in r.fixed_j):
        values = [r.fixed_j[point] for r in results if point in r.fixed_j]
        print(f"  {point}: {mean_std(values)} over {len(values)} sweeps   (seed 002's halved VGG16: {SEED_HALVED_VGG16_J})")
    print(f"wall time: {sum(r.wall_s for r in results):.0f} s over {len(results)} sweeps")
    report: dict[str, Any] = {
        "scale": dataclasses.asdict(scale), "results": [dataclasses.asdict(r) for r in results],
        "best_j": per_searcher, "gp_vs_ga": paired,
    }  # fmt: skip
    (root / "comparison.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
