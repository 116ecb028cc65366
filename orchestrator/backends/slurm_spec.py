"""The SLURM backend's registration (``backend.kind = "slurm"``), its ``[backend.slurm]``
table and checks, apart from ``slurm.py``, which imports submitit: reading a sweep file
never does."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kdsweep.orchestrator.backends import BackendSpec
from kdsweep.orchestrator.plugins import Issue, import_target

if TYPE_CHECKING:
    from kdsweep.orchestrator.config import BackendConfig, SweepConfig


@dataclasses.dataclass(frozen=True)
class SlurmConfig:
    """``[backend.slurm]``: what a trial job asks SLURM for, beyond the per-trial resources."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: GRES string, e.g. "gpu:a100:1"; default derives it from ``gpus_per_trial`` ("gpu:N", or
    #: "shard:K" for a fraction below one: ``slurm.gpu_gres``).
    gres: str | None = None
    #: How many jobs of one array may run at once (SLURM's ``%N``); 0: no limit.
    array_parallelism: int = 0
    #: Shell lines run in the job before the trial (``module load ...``, ``source venv``).
    setup: tuple[str, ...] = ()
    #: Extra ``#SBATCH`` options, e.g. {exclude = "node[1-3]"}.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Seconds before the time limit at which SLURM signals the job to checkpoint and requeue.
    signal_delay_s: int = 90
    #: Seconds between the driver's ``squeue`` calls, which notice a job that ended without a
    #: result (killed, out of memory, node failure). Results themselves are files, seen at once.
    squeue_interval_s: float = 15.0


class Slurm(BackendSpec):
    """``slurm``: one SLURM job per attempt, asking for ``[backend]`` and ``[backend.slurm]``;
    checked at load time, then against the live cluster before a launch writes anything."""

    backend: ClassVar[str] = "kdsweep.orchestrator.backends.slurm:SlurmBackend"
    Options: ClassVar[type | None] = SlurmConfig
    #: ``"module:function"`` of the preflight against the live cluster.
    checker: ClassVar[str] = "kdsweep.orchestrator.backends.slurm:preflight"

    @classmethod
    def check(cls, kind: str, options: SlurmConfig, backend: BackendConfig) -> list[Issue]:
        issues: list[Issue] = []
        if options.array_parallelism < 0:
            issues.append((f"backend.{kind}.array_parallelism", options.array_parallelism, "an integer >= 0 (0: no limit)"))
        if options.squeue_interval_s <= 0:
            issues.append((f"backend.{kind}.squeue_interval_s", options.squeue_interval_s, "a number > 0"))
        limit_s = backend.timeout_min * 60
        if backend.kind == kind and not 0 <= options.signal_delay_s < limit_s:
            # The signal would come at the job's start: it would checkpoint and requeue forever.
            issues.append((f"backend.{kind}.signal_delay_s", options.signal_delay_s, f"an integer >= 0 and below backend.timeout_min in seconds ({limit_s:g})"))
        return issues

    @classmethod
    def preflight(cls, cfg: SweepConfig, run_dir: Path) -> str:
        """``sbatch --test-only`` of one trial job's script, which it returns (``slurm.preflight``)."""
        # Named, as `backend` is, and imported only now: slurm.py imports submitit, which
        # reading a sweep file must not (and it imports this module for slurm_options).
        script: str = import_target(cls.checker)(cfg, run_dir)
        return script


def slurm_options(cfg: SweepConfig) -> SlurmConfig:
    """The sweep's ``[backend.slurm]`` table (its defaults when the file has none)."""
    options: SlurmConfig = cfg.backend.options["slurm"]
    return options
