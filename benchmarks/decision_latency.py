"""A worker's ASHA decision against a large store: first read, then per-report cost.

What is measured
    A run whose store holds 100 000 rows (``--rows``): 10 000 trials × 10 reports, rungs at
    epochs 1, 3, 9 (η = 3), compacted into one file as the driver leaves it. Then, in a fresh
    process, as a worker joining the run:

    * first read: opening the store and reading rung 0's values (what the first decision
      needs), wall time and the growth of the process's resident memory (after a first read
      of a 10-row store, so that the libraries' one-time start-up is not counted);
    * a decision, 300 times: append one report row (a durable, keyed append: the fragment,
      its claim and the directory fsynced), read the rung back, apply ASHA's rule — p50/p90.

Run: ``python benchmarks/decision_latency.py [--rows 100000] [--dir DIR]``. One line per
figure. The issue's aim: first read <= 0.5 s and <= 50 MB, decision p50 <= 5 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from kdsweep.orchestrator.config import AshaConfig, Objective
from kdsweep.orchestrator.schedulers import scheduler_of
from kdsweep.orchestrator.schema import NOT_AT_RUNG, SCHEMA_VERSION, kdsweep_version, results_schema, row_key
from kdsweep.orchestrator import store_maintenance
from kdsweep.orchestrator.store import Store

SCHEMA = results_schema(["val_acc"], {"lr": pa.float64()})
LADDER = (1, 3, 9)


def _row(trial: str, epoch: int, value: float) -> dict:
    rung = LADDER.index(epoch) if epoch in LADDER else NOT_AT_RUNG
    return {
        "sweep": "bench", "trial_id": trial, "event": "report", "epoch": epoch, "rung": rung,
        "attempt": 0, "origin": "random", "stage": "search", "val_acc": value, "param.lr": 0.01,
        "reported_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "schema_version": SCHEMA_VERSION,
        "kdsweep_version": kdsweep_version(), "config_hash": "bench",
    }  # fmt: skip


def build(run: Path, rows: int) -> None:
    store = Store(run, SCHEMA)
    batch = []
    for i in range(rows // 10):
        batch += [_row(f"t{i:07d}", e, (i * 7919 % 1000) / 1000 * e / 10) for e in range(1, 11)]
        if len(batch) >= 10_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    store_maintenance.compact(store)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(run: Path) -> None:
    # A worker has read a store before (it runs trials): the libraries' one-time start-up on
    # the first Parquet read (lazy imports, allocator arenas; about 50 MB, the same for 1 000
    # rows as for 100 000) is paid on a tiny store first, so the figure is what the rows cost.
    Store(run.parent / "warm-up", SCHEMA).rung_values(0, "val_acc")
    before = _rss_mb()
    t0 = time.perf_counter()
    store = Store(run, SCHEMA)
    store.rung_values(0, "val_acc")
    first = time.perf_counter() - t0
    print(f"first read: {first:.3f} s, +{_rss_mb() - before:.0f} MB resident, {store.refresh() + len(store.rows())} rows")
    policy = scheduler_of(AshaConfig(metric="val_acc", objectives=(Objective("val_acc", "max"),), min_epochs=1, max_epochs=9), seed=0)
    times = []
    for k in range(300):
        trial = f"w{k:05d}"
        t0 = time.perf_counter()
        store.append([_row(trial, 1, 0.5)], key=row_key(trial, "report", 1))
        # As the worker decides: the sweep's scheduler reads the rung back and applies ASHA
        # (one objective is a 1-tuple of objectives).
        policy.on_result(store, trial, 0, (0.5,))
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=10)
    print(f"decision (append + the scheduler's rung read and ASHA), 300 reports: p50 {statistics.median(times) * 1000:.1f} ms, p90 {q[8] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--as-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker is not None:
        worker(args.as_worker)
        return
    run = (args.dir or Path(tempfile.mkdtemp(prefix="kdsweep-bench-"))) / "run"
    t0 = time.perf_counter()
    build(run, args.rows)
    build(run.parent / "warm-up", 10)
    print(f"store of {args.rows} rows built in {time.perf_counter() - t0:.1f} s at {run}")
    subprocess.run([sys.executable, __file__, "--as-worker", str(run)], check=True, env={**os.environ})


if __name__ == "__main__":
    main()
