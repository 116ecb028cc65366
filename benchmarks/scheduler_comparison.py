"""Which early-stopping policy for my sweep? ASHA stop, promote, Hyperband brackets, PASHA and
the curve-aware stop and promote (``extrapolate``) on the simulator, side by side on the same
proposals.

What is compared
    Each policy runs ``kdsweep simulate`` on the same work: random search (its proposals do
    not depend on results, so every policy sees the very same configurations in the same
    order) on the same workers. For each: epochs trained (GPU-hours), the sweep's virtual wall
    time until its final choice is known (the end of the sweep: a paused trial may still be
    promoted until then), and **regret**: how far the configuration the policy chose (its
    leader) is from the best configuration of a no-stopping run of the same proposals, both
    measured by their value at ``max_epochs`` without early stopping.

Scenarios
    ``synthetic``: seed 004's scale (``simulate_seed004.py``: 1 500 trials, 30 workers, η = 2,
    epochs 1..200). A no-stopping run is not simulated (300 000 epochs): the synthetic
    trainer's curves are closed-form, so each configuration's value at ``max_epochs`` is
    its own trainer's evaluation there (the same noise draw a full run records).

    ``replay RUN``: a recorded run in which every trial trained to ``max_epochs`` (``asha.
    min_epochs = max_epochs``: no stopping), e.g. the digits loss-weights sweep this script
    records with ``--record-digits DIR``; each policy is ``kdsweep simulate --replay RUN``, and
    the no-stopping values are the recorded ones.

Run: ``python benchmarks/scheduler_comparison.py [--scenario synthetic] [--replay RUN]
[--record-digits DIR] [--trials N] [--workers W] [--policies NAME ...]``. Prints one row per
policy and a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulate_seed004 import OVERRIDES as SEED004  # noqa: E402

from kdsweep.orchestrator.rundir import RunDir  # noqa: E402
from kdsweep.orchestrator.simulate import synthetic_full_values  # noqa: E402

#: Policy name -> its ``--set`` overrides.
POLICIES: Mapping[str, Sequence[str]] = {
    "ASHA stop": ['asha.variant="stop"'],
    "ASHA promote": ['asha.variant="promote"'],
    "stop, 3 brackets": ['asha.variant="stop"', "asha.brackets=3"],
    "promote, 3 brackets": ['asha.variant="promote"', "asha.brackets=3"],
    "PASHA": ['asha.variant="pasha"'],
    "stop, extrapolate": ['asha.variant="stop"', "asha.extrapolate=true"],
    "promote, extrapolate": ['asha.variant="promote"', "asha.extrapolate=true"],
}

#: The digits loss-weights sweep recorded with full curves (``--record-digits``): the demo's
#: (ResNet-18 at width 0.25 distilled from a cached teacher on the embedded digits), random
#: search, every trial trained to epoch 9.
DIGITS = ["num_trials=30", 'searcher="random"', "asha.min_epochs=9", "asha.max_epochs=9", "backend.max_concurrent=2"]


def _kdsweep(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "kdsweep.orchestrator.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kdsweep {' '.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout) if args[0] == "simulate" else {}
    return result


def _sets(overrides: Sequence[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def recorded_full_values(run: Path) -> dict[str, float]:
    """Each trial's recorded value at ``max_epochs`` (a run without early stopping)."""
    cfg = RunDir(run).load_config()
    rows = ds.dataset(run / "results").to_table(columns=["trial_id", "event", "epoch", cfg.asha.metric]).to_pylist()
    return {r["trial_id"]: float(r[cfg.asha.metric]) for r in rows if r["event"] == "report" and r["epoch"] == cfg.asha.max_epochs}


def compare(base: Sequence[str], full_values: Any, out: Path, policies: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Run each of ``policies`` with ``base`` arguments (``simulate`` after the subcommand)
    into ``out``; return one result row per policy."""
    rows = []
    for name, overrides in policies.items():
        run = out / name.replace(" ", "_").replace(",", "")
        result = _kdsweep("simulate", *base, "--out", str(run), "--format", "json", *_sets(overrides))
        full = full_values(run)
        sign = 1.0 if RunDir(run).load_config().asha.mode == "max" else -1.0
        best = max(full.values(), key=lambda v: sign * v)
        chosen = result["best_trial"]
        rows.append({
            "policy": name, "epochs": result["epochs_trained"], "of": result["epochs_without_stopping"],
            "gpu_hours": result["gpu_hours"], "wall_h": result["wall_s"] / 3600, "chosen": chosen,
            "regret": sign * (best - full[chosen]), "real_s": result["real_s"],
        })  # fmt: skip
        r = rows[-1]
        print(f"{name:20s} epochs {r['epochs']:7d} of {r['of']} ({100 * r['epochs'] / r['of']:.1f}%), {r['gpu_hours']:.1f} GPU-h, "
              f"wall {r['wall_h']:.2f} h, chose {chosen}, regret {r['regret']:.4f}  [{r['real_s']:.0f} s real]", flush=True)  # fmt: skip
    return rows


def table(title: str, rows: Sequence[Mapping[str, Any]]) -> str:
    base = next((r for r in rows if r["policy"] == "ASHA promote"), rows[0])
    lines = [f"**{title}**", "", f"| policy | epochs trained | vs. {base['policy']} | wall time | regret (val_acc) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['epochs']:,} ({100 * r['epochs'] / r['of']:.1f}%) | {r['epochs'] / base['epochs']:.2f}× | {r['wall_h']:.2f} h | {r['regret']:.4f} |")
    return "\n".join(lines)


#: η of every replayed policy (see main).
REPLAY_ETA = 2


def record_digits(out: Path) -> Path:
    """Train the digits loss-weights sweep with full curves (no stopping) into ``out``."""
    cmd = [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "demo", "--out", str(out), "--no-live", *_sets(DIGITS)]
    subprocess.run(cmd, check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["synthetic", "none"], default="synthetic")
    parser.add_argument("--replay", type=Path, default=None, help="a recorded run without early stopping to replay")
    parser.add_argument("--record-digits", type=Path, default=None, help="record the digits loss-weights sweep here first, then replay it")
    parser.add_argument("--trials", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=30)
    parser.add_argument("--out-root", type=Path, default=None)
    parser.add_argument("--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES), metavar="POLICY", help=f"a subset of: {', '.join(POLICIES)}")
    args = parser.parse_args()
    policies = {name: POLICIES[name] for name in args.policies}
    root = args.out_root or Path(tempfile.mkdtemp(prefix="kdsweep-schedulers-"))
    tables = []
    if args.scenario == "synthetic":
        print(f"synthetic, seed 004's scale: {args.trials} trials, {args.workers} workers, {' '.join(SEED004)}")
        base = ["synthetic", "--workers", str(args.workers), *_sets([*SEED004, f"num_trials={args.trials}"])]
        rows = compare(base, synthetic_full_values, root / "synthetic", policies)
        tables.append(table(f"Synthetic trainer, {args.trials} trials × {args.workers} workers, epochs 1..200, η = 2", rows))
    replay = record_digits(args.record_digits) if args.record_digits else args.replay
    if replay is not None:
        cfg = RunDir(replay).load_config()
        print(f"replay of {replay}: {cfg.num_trials} trials, epochs 1..{cfg.asha.max_epochs}")
        # η = 2: PASHA needs three rungs below max_epochs, and 1..9 at η = 3 has two (1, 3).
        base = ["--replay", str(replay), "--set", "asha.min_epochs=1", "--set", f"asha.reduction_factor={REPLAY_ETA}"]
        rows = compare(base, lambda _run: recorded_full_values(replay), root / "replay", policies)
        tables.append(table(f"Replay of {replay.name}: {cfg.num_trials} trials, epochs 1..{cfg.asha.max_epochs}, η = {REPLAY_ETA}", rows))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
