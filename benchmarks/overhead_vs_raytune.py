"""Orchestration overhead: kdsweep's local backend against Ray Tune on the same sweep.

What is measured
    Wall time of one synthetic sweep whose training costs nothing (``sleep_s = 0``), so that
    what remains is the orchestrator: proposing configurations, starting and feeding workers,
    recording reports and applying ASHA. The sweep is 200 trials of the closed-form
    ``SyntheticTrainer`` (``trainers/synthetic.py``), epochs 1..16 (``--epochs``) with ASHA rungs at
    1, 2, 4, 8, 16 (η = 2, "stop" variant), TPE after 12 random start-up points, 2 trials in
    flight, over the space of ``search_spaces/synthetic.toml`` (lr loguniform 1e-4..1,
    momentum uniform 0..0.99, width in {16, 32, 64, 128}, decoy uniform 0..1 with no effect),
    maximising ``val_acc``.

How
    * kdsweep (driver, in-process): ``load_sweep`` + ``RunDir.create`` + ``Driver`` on
      ``make_backend(cfg)`` (the local backend). Timed from just before ``RunDir.create``
      to the return of ``run_sweep``, so the spawn of the worker processes is included.
    * kdsweep (CLI end to end): ``python -m kdsweep.orchestrator.cli launch synthetic
      --no-live`` with the same overrides, timed around the subprocess: interpreter start,
      imports and the final report are included too.
    * kdsweep (driver, --backend ray), with ``--kdsweep-ray``: the same driver on kdsweep's
      Ray backend (trials on Ray actors, no Ray Tune), a local Ray instance started inside
      the clock.
    * Ray Tune: ``Tuner`` with a function trainable that drives the very same
      ``SyntheticTrainer`` epoch by epoch and ``tune.report``-s each epoch,
      ``HyperOptSearch`` (same space, 12 random start-up points, fixed seed) inside
      ``ConcurrencyLimiter(max_concurrent=2)``, ``ASHAScheduler(max_t=16, grace_period=1,
      reduction_factor=2)``, ``ray.init(num_cpus=2)``, Ray's defaults otherwise (result
      loggers on, no actor reuse), as a user would run it. Timed from before ``ray.init``
      to the return of ``Tuner.fit``; ``ray.shutdown`` happens after the clock stops.
      ``--ray-reuse-actors`` sets ``TuneConfig(reuse_actors=True)`` (off by default in Ray
      2.60): Ray then keeps its trial processes, as kdsweep's local backend always does, and
      most of its overhead goes away; quote both numbers when comparing the two.

    Both in-process timings start after their imports, so the two are like for like; the
    CLI number is the one that includes interpreter start and imports.
    Each side also prints how many trials ran to the last epoch and how many ASHA stopped
    early: the two searchers propose different configurations, so the counts differ a
    little, but they must be of the same order for the times to be comparable.

    With ``--repeat K`` the three measurements are interleaved K times (so that a burst of
    load on a shared machine hits all of them alike) and the medians are compared.

    With ``--epoch-s S`` every epoch sleeps S seconds on both sides (the synthetic
    trainer's ``sleep_s``), so trials cost something: "one-second trials" are ``--epochs
    10 --epoch-s 0.1``. Each side then also prints its overhead over the ideal wall time,
    ``epochs trained × S / trials in flight`` (its own count of epochs: the searchers
    propose different configurations, so ASHA stops different trials).

How to run
    python benchmarks/overhead_vs_raytune.py                # full comparison, several minutes
    python benchmarks/overhead_vs_raytune.py --epochs 10 --epoch-s 0.1 --ray-reuse-actors  # one-second trials
    python benchmarks/overhead_vs_raytune.py --skip-ray     # kdsweep only, seconds
    python benchmarks/overhead_vs_raytune.py --trials 50 --repeat 3
    python benchmarks/overhead_vs_raytune.py --ray-reuse-actors  # Ray with long-lived actors
    python benchmarks/overhead_vs_raytune.py --kdsweep-ray  # adds kdsweep's own Ray backend
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.backends import make_backend
from kdsweep.orchestrator.config import load_sweep
from kdsweep.orchestrator.rundir import RunDir
from kdsweep.orchestrator.schema import TERMINAL_EVENTS
from kdsweep.orchestrator.worker import results_store
from kdsweep.trainers.base import TrialContext
from kdsweep.trainers.synthetic import SyntheticSettings, SyntheticTrainer

REDUCTION_FACTOR = 2
MAX_CONCURRENT = 2
N_STARTUP = 12
SEED = 0
METRIC = "val_acc"
WIDTHS = [16, 32, 64, 128]


@dataclasses.dataclass(frozen=True)
class Work:
    """The sweep both sides run: how many trials, epochs each at most, seconds per epoch."""

    trials: int
    epochs: int
    epoch_s: float


def kdsweep_overrides(work: Work) -> list[str]:
    """``--set`` overrides turning ``synthetic.toml`` into the benchmark sweep."""
    return [
        f"num_trials={work.trials}",
        f"asha.max_epochs={work.epochs}",
        f"asha.reduction_factor={REDUCTION_FACTOR}",
        "asha.min_epochs=1",
        f"settings.sleep_s={work.epoch_s}",
        "settings.noise_std=0.01",
        f"backend.max_concurrent={MAX_CONCURRENT}",
        # Ray's searcher gets no hand-picked point either, so both start from the same budget.
        "points_to_evaluate=[]",
    ]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One timed sweep: its wall time and how its trials ended."""

    wall_s: float
    full: int  # trials that trained to the last epoch
    early: int  # trials ASHA stopped before it
    failed: int
    epochs: int  # epochs trained, all trials together


def _from_run(wall_s: float, run: Path) -> Measurement:
    """A kdsweep measurement from its run's results (counted after the clock stopped): the
    last row of a trial says how it ended, its report rows how many epochs it trained."""
    last: dict[str, str] = {}
    epochs = 0
    for row in results_store(run).rows():
        last[row["trial_id"]] = row["event"]
        epochs += row["event"] == "report"
    events = Counter(e for e in last.values() if e in TERMINAL_EVENTS)
    return Measurement(wall_s, events.get("completed", 0), events.get("stopped", 0), events.get("failed", 0), epochs)


def time_kdsweep_driver(work: Work, tmp: Path, backend: str = "local") -> Measurement:
    # Imported here: the local backend spawns its workers, which re-import this script, and
    # the driver module pulls in the searcher (hyperopt, scipy), a second of start-up that a
    # worker never needs and that `kdsweep launch` does not make its workers pay either.
    from kdsweep.orchestrator.driver import Driver

    cfg = load_sweep("synthetic", [*kdsweep_overrides(work), f"backend.kind={backend}"])
    t0 = time.perf_counter()
    run = RunDir.create(tmp / f"kdsweep-{backend}", cfg)
    Driver(cfg, run, make_backend(cfg)).run_sweep()
    wall = time.perf_counter() - t0
    if backend == "ray":
        # kdsweep's Ray backend starts the local instance itself (inside the clock, as Ray
        # Tune's ray.init is) and leaves it up for a driver that may resume; stop it here.
        import ray

        ray.shutdown()
    return _from_run(wall, run.path)


def time_kdsweep_cli(work: Work, tmp: Path) -> Measurement:
    out = tmp / "kdsweep-cli"
    cmd = [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "synthetic", "--out", str(out), "--no-live"]
    for item in kdsweep_overrides(work):
        cmd += ["--set", item]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"kdsweep CLI exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return _from_run(wall, out)


def _config_seed(config: dict[str, Any]) -> int:
    """A trial seed that is a pure function of its configuration, as kdsweep's is of its id."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(f"{SEED}:{canonical}".encode()).digest()[:4], "little")


def synthetic_trainable(config: dict[str, Any], epochs: int, epoch_s: float) -> None:
    """Ray Tune function trainable: the same trainer and epoch loop as a kdsweep worker runs."""
    from ray import tune

    trial_dir = Path(tune.get_context().get_trial_dir())
    ctx = TrialContext(
        trial_id=tune.get_context().get_trial_id(),
        seed=_config_seed(config),
        attempt=0,
        run_dir=trial_dir,
        cache_dir=trial_dir,
        device="cpu",
        data=None,
        budget_epochs=epochs,
    )
    trainer = SyntheticTrainer(config, SyntheticSettings(sleep_s=epoch_s, noise_std=0.01), ctx)
    for epoch in range(1, epochs + 1):
        metrics = trainer.train_epoch(epoch)
        metrics.update(trainer.evaluate())
        tune.report(metrics)


def time_ray(work: Work, tmp: Path, reuse_actors: bool) -> Measurement:
    # Imported here, not at module level, for the same reason as Driver above.
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.hyperopt import HyperOptSearch

    space = {
        "lr": tune.loguniform(1e-4, 1.0),
        "momentum": tune.uniform(0.0, 0.99),
        "width": tune.choice(WIDTHS),
        # synthetic.toml's null parameter (no effect on the curve): the same space on both sides.
        "decoy": tune.uniform(0.0, 1.0),
    }
    searcher = ConcurrencyLimiter(
        HyperOptSearch(metric=METRIC, mode="max", n_initial_points=N_STARTUP, random_state_seed=SEED),
        max_concurrent=MAX_CONCURRENT,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration", metric=METRIC, mode="max",
        max_t=work.epochs, grace_period=1, reduction_factor=REDUCTION_FACTOR,
    )  # fmt: skip
    t0 = time.perf_counter()
    ray.init(num_cpus=MAX_CONCURRENT, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_parameters(synthetic_trainable, epochs=work.epochs, epoch_s=work.epoch_s),
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=work.trials, reuse_actors=reuse_actors
            ),
            run_config=tune.RunConfig(name="overhead", storage_path=str(tmp / "ray"), verbose=0),
        )
        grid = tuner.fit()
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    full = early = epochs = 0
    for i in range(len(grid)):
        result = grid[i]
        if result.error is not None or result.metrics is None:
            continue  # counted in grid.num_errors
        epochs += int(result.metrics["training_iteration"])
        if int(result.metrics["training_iteration"]) >= work.epochs:
            full += 1
        else:
            early += 1
    if grid.errors:
        # Failed trials do less work and would flatter Ray's time: say why they failed.
        print(f"Ray Tune: {grid.num_errors} trials failed; first error:\n{grid.errors[0]}", file=sys.stderr)
    return Measurement(wall, full, early, grid.num_errors, epochs)


def _line(label: str, m: Measurement, full: str, early: str, work: Work) -> str:
    failed = f" failed {m.failed}" if m.failed else ""
    line = f"{label:<31}{m.wall_s:7.1f} s   {full} {m.full} {early} {m.early}{failed}, {m.epochs} epochs"
    if work.epoch_s > 0:
        ideal = m.epochs * work.epoch_s / MAX_CONCURRENT
        line += f"; ideal {ideal:.1f} s, overhead {m.wall_s / ideal - 1:+.1%}"
    return line


def _median(ms: list[Measurement]) -> Measurement:
    # The trial counts shown with a median are those of the run whose time is the median
    # (the upper one for even K), so counts and time always belong to one real run.
    ordered = sorted(ms, key=lambda m: m.wall_s)
    mid = ordered[len(ordered) // 2]
    return dataclasses.replace(mid, wall_s=statistics.median(m.wall_s for m in ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per sweep (default 200)")
    parser.add_argument("--skip-ray", action="store_true", help="measure kdsweep only")
    parser.add_argument("--repeat", type=int, default=1, help="run each side this many times; report medians")
    parser.add_argument("--kdsweep-ray", action="store_true", help="also time kdsweep with --backend ray (its own Ray backend, no Ray Tune)")
    parser.add_argument("--ray-reuse-actors", action="store_true", help="Ray Tune keeps trial processes (reuse_actors=True)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs per trial at most (default 16)")
    parser.add_argument("--epoch-s", type=float, default=0.0, help="seconds each epoch sleeps (default 0: zero-cost trials)")
    args = parser.parse_args()
    work = Work(args.trials, args.epochs, args.epoch_s)

    driver_runs: list[Measurement] = []
    cli_runs: list[Measurement] = []
    ray_runs: list[Measurement] = []
    kd_ray_runs: list[Measurement] = []
    for k in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="kdsweep-overhead-") as d:
            tmp = Path(d)
            driver_runs.append(time_kdsweep_driver(work, tmp))
            print(_line(f"[{k + 1}] kdsweep (driver)", driver_runs[-1], "completed", "stopped", work), flush=True)
            cli_runs.append(time_kdsweep_cli(work, tmp))
            print(_line(f"[{k + 1}] kdsweep (CLI)", cli_runs[-1], "completed", "stopped", work), flush=True)
            if args.kdsweep_ray:
                kd_ray_runs.append(time_kdsweep_driver(work, tmp, "ray"))
                print(_line(f"[{k + 1}] kdsweep (driver, Ray)", kd_ray_runs[-1], "completed", "stopped", work), flush=True)
            if not args.skip_ray:
                ray_runs.append(time_ray(work, tmp, args.ray_reuse_actors))
                print(_line(f"[{k + 1}] Ray Tune", ray_runs[-1], "full", "early-stopped", work), flush=True)

    what = "median of " + str(args.repeat) if args.repeat > 1 else "one run"
    print(f"\n{args.trials} trials, epochs 1..{args.epochs} of {args.epoch_s} s, η = {REDUCTION_FACTOR}, {MAX_CONCURRENT} in flight ({what})")
    driver, cli = _median(driver_runs), _median(cli_runs)
    print(_line("kdsweep (driver, in-process)", driver, "completed", "stopped", work))
    print(_line("kdsweep (CLI end to end)", cli, "completed", "stopped", work))
    if kd_ray_runs:
        print(_line("kdsweep (driver, --backend ray)", _median(kd_ray_runs), "completed", "stopped", work))
    if ray_runs:
        ray_m = _median(ray_runs)
        label = "Ray Tune (reuse_actors)" if args.ray_reuse_actors else "Ray Tune"
        print(_line(label, ray_m, "full", "early-stopped", work))
        print(f"{'ratio Ray/kdsweep (driver)':<31}{ray_m.wall_s / driver.wall_s:7.1f}x")
        print(f"{'ratio Ray/kdsweep (CLI)':<31}{ray_m.wall_s / cli.wall_s:7.1f}x")
        if kd_ray_runs:
            print(f"{'ratio Ray Tune/kdsweep on Ray':<31}{ray_m.wall_s / _median(kd_ray_runs).wall_s:7.1f}x")


if __name__ == "__main__":
    main()
