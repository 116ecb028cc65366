"""The simulator at seed 004's scale: how long ``kdsweep simulate`` takes on this machine.

What is simulated
    Seed 004's knowledge-transfer-graph search as a sweep shape: 1 500 trials of random
    search, 30 workers, ASHA (stop variant) with η = 2 and rungs 1, 2, 4, …, 128 up to 200
    epochs, over ``search_spaces/synthetic.toml``'s space with the synthetic trainer's
    closed-form curves; each trial's epoch takes 60 virtual seconds times a log-normal factor
    (σ = 0.5) drawn from its seed, so trials of different sizes overlap as on a cluster.

How
    ``python -m kdsweep.orchestrator.cli simulate synthetic --workers 30 ...`` in a
    subprocess, ``--repeat`` times, into a fresh run directory each (``--out-root``, default
    a temporary directory). Prints the real seconds of each run and their median, with what
    the simulated sweep cost and found (virtual hours, GPU-hours, epochs ASHA saved).

Run: ``python benchmarks/simulate_seed004.py [--repeat 3] [--out-root DIR]``. The issue's aim
is at most 30 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

OVERRIDES = [
    "num_trials=1500", 'searcher="random"', "asha.reduction_factor=2", "asha.min_epochs=1",
    "asha.max_epochs=200", "settings.epoch_s=60", "settings.epoch_s_spread=0.5",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out-root", type=Path, default=None)
    args = parser.parse_args()
    root = args.out_root or Path(tempfile.mkdtemp(prefix="kdsweep-sim-"))
    reals = []
    for i in range(args.repeat):
        sets = [a for o in OVERRIDES for a in ("--set", o)]
        cmd = [sys.executable, "-m", "kdsweep.orchestrator.cli", "simulate", "synthetic", "--workers", "30", "--out", str(root / f"run{i}"), "--format", "json", *sets]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        reals.append(result["real_s"])
        print(
            f"run {i}: {result['real_s']:.1f} s real for {result['num_trials']} trials on {result['workers']} workers; "
            f"simulated sweep {result['wall_s'] / 3600:.2f} h, {result['gpu_hours']:.1f} GPU-hours, "
            f"{result['epochs_trained']} epochs trained of {result['epochs_without_stopping']} (ASHA saved {result['epochs_saved']}); "
            f"best {result['best_trial']} {result['best_value']:.4f} after {result['best_found_at_s'] / 3600:.2f} h"
        )
    print(f"median real time: {statistics.median(reals):.1f} s over {len(reals)} run(s) (aim: <= 30 s)")


if __name__ == "__main__":
    main()
