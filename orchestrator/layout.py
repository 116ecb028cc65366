"""The run directory's layout: every name under ``RUN_DIR``, in one place.

::

    RUN_DIR/
      sweep.toml          frozen, normalised copy of the sweep (what every worker loads)
      run.json            config hash, creation time, kdsweep version
      warm_start.json     the earlier runs' results the searcher starts from (``launch
                          --warm-start``; warm_start.py), fixed when the run is created;
                          absent for a cold start
      results/            the Parquet dataset (orchestrator/store.py): the source of truth
        .keys/<trial>/<event>   one claim (symbolic link) per keyed row
        .compact.lock     held (flock) while compacting
      trials/<id>.json    one record per trial: params, origin, attempt, target epoch
      scheduler.json      what the sweep's scheduler learned from the order results came in
                          (PASHA's budget); absent for policies that learn nothing
      final/<id>.json     records of ``kdsweep retrain``'s runs (ids <source trial>.r<repeat>)
      checkpoints/        <trial_id>.pt at rungs a trial goes on from, and at an attempt's end
      cache/              shared by trials of the sweep (teachers, the objective reference)
        analyses.json     the report's statistics, under the digest of what they read (analyses.py)
      quarantine/         files moved out of results/ because no reader can use them
      slurm/              submitit's job folders and logs; jobs/<job id>.json per sbatch,
                          jobs/<job id>.cancelled per job a driver cancelled
      report.html         the self-contained HTML report (``launch --html``, the demo)
      .driver.lock        who drives (pid, host); the lock is a flock on RUN_DIR itself

Modules that own what is inside a path (the store, checkpoints, the SLURM backend) take its
name from here; ``rundir.RunDir`` gives the paths of one run.
"""

from __future__ import annotations

import os
from pathlib import Path

FROZEN = "sweep.toml"
META = "run.json"
WARM_START = "warm_start.json"
RESULTS = "results"
#: Under ``results/``: how a fragment's name starts (one append: ``part-<time>-<host>-<pid>-
#: <uuid>.parquet``) and a compacted file's (``compact-<time>-<uuid>.parquet``); a name
#: being written is hidden behind a leading ".". The time is for people, never for order.
FRAGMENT = "part-"
COMPACTED = "compact-"
#: Under ``results/``: how every fragment's name ends.
FRAGMENT_SUFFIX = ".parquet"
#: Under ``results/``.
KEYS = ".keys"
#: Under ``results/``.
COMPACT_LOCK = ".compact.lock"
TRIALS = "trials"
SCHEDULER_STATE = "scheduler.json"
FINAL = "final"
CHECKPOINTS = "checkpoints"
CACHE = "cache"
#: Under ``cache/``.
ANALYSES = "analyses.json"
QUARANTINE = "quarantine"
SLURM = "slurm"
#: Under ``slurm/``: ``<job id>.json``, one record per ``sbatch``, and ``<job id>.cancelled``
#: for each job a driver cancelled (never adopted again, whatever squeue still says of it).
SLURM_JOBS = "jobs"
CANCELLED_SUFFIX = ".cancelled"
REPORT_HTML = "report.html"
DRIVER_LOCK = ".driver.lock"


def checkpoint_path(run_dir: str | os.PathLike[str], trial_id: str) -> Path:
    """Where trial ``trial_id``'s checkpoint lives."""
    return Path(run_dir) / CHECKPOINTS / f"{trial_id}.pt"
