"""SLURM backend: every trial attempt is one SLURM job, submitted through submitit.

Submission. :meth:`SlurmBackend.submit` only queues a spec; the next :meth:`~SlurmBackend.wait`
sends everything queued as one job array (submitit's ``map_array``: one ``sbatch``, at most
``array_parallelism`` tasks running), so the burst of trials a driver starts together costs
the controller one request. A job runs ``python -m submitit.core._submit RUN_DIR/slurm``,
which unpickles :class:`TrialJob` and calls ``run_trial(spec)``, the function every backend
runs. What a job asks for comes from ``[backend]`` and ``[backend.slurm]``
(:func:`executor_parameters`); the driver keeps at most ``max_concurrent`` jobs queued or
running.

Ending. A job's result is submitit's result pickle next to its logs in ``RUN_DIR/slurm/``:
the trial's outcome, or the traceback of its exception. A job that ends without one (killed,
out of memory, node failure, cancelled by someone else) is noticed through ``squeue``, not
``sacct``, which needs slurmdbd and fails without it; its error names the SLURM state, the
job's log file and the log's last lines.

Preemption and time limits. Jobs are submitted with ``--requeue`` and
``--signal=USR2@signal_delay_s``. On SIGUSR2 submitit calls ``TrialJob.checkpoint``, which
requeues the job with the same spec; a job killed outright (``scontrol requeue``, preemption
in REQUEUE mode, a node failure) is restarted by SLURM the same way. Nothing more is needed:
the trial's state is its last rung checkpoint plus its rows in the store, and ``run_trial``
resumes from those without repeating or losing a row.

Driver restarts. Jobs do not depend on the driver: it can die and be relaunched with
``--resume``. Every ``sbatch`` is recorded in ``RUN_DIR/slurm/jobs/<job id>.json``
(atomically, as soon as ``sbatch`` returns), and :meth:`~SlurmBackend.adopt` re-attaches a
resumed trial attempt to its job, still running or ended with a result, instead of
submitting a duplicate. :meth:`~SlurmBackend.close`
(normal end, Ctrl-C) cancels the jobs still running; a driver that is killed leaves them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError, pickle_load
from submitit.helpers import Checkpointable, clean_env

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.backends import Finished
from kdsweep.orchestrator.backends.slurm_spec import slurm_options
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig
from kdsweep.orchestrator.atomic import real_dir, write_atomic
from kdsweep.orchestrator.worker import NODE_ENV, TrialOutcome, TrialSpec, run_trial

logger = logging.getLogger("kdsweep.slurm")

#: SLURM job states after which a job never runs again. Anything else, including states a
#: newer SLURM may add, counts as still going: judging a live job dead would run the trial
#: twice, judging a dead one alive only delays its retry until SLURM forgets the job.
ENDED_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "REVOKED", "TIMEOUT"}
)

# Events with which the worker itself ends an attempt (``failed`` is the driver's).

#: (Trial id, attempt, until_epoch): one attempt, the unit that is submitted once.
AttemptKey = tuple[str, int, int | None]


def attempt_key(spec: TrialSpec) -> AttemptKey:
    """The attempt ``spec`` is, as job records name it."""
    return (spec.trial_id, spec.attempt, spec.until_epoch)


class TrialJob(Checkpointable):
    """What a trial job runs: ``run_trial(spec)``.

    ``checkpoint`` (submitit calls it on SLURM's signal) is inherited: it requeues the job
    with the same spec, which resumes from the trial's last rung checkpoint.
    """

    def __call__(self, spec: TrialSpec) -> TrialOutcome:
        # The results' node column: SLURM's name for the node, which the host name does not
        # tell where several nodes share a machine (or a node is renamed in slurm.conf).
        if "SLURMD_NODENAME" in os.environ:
            os.environ[NODE_ENV] = os.environ["SLURMD_NODENAME"]
        # A job requeued after its trial wrote its last row gets that row back: run_trial
        # never trains an attempt the store says has ended.
        return run_trial(spec)


# -- what a job asks SLURM for --------------------------------------------------------------------


def gpu_gres(cfg: SweepConfig) -> str | None:
    """The GRES a trial job asks for its GPUs: ``backend.slurm.gres`` when set; none without
    GPUs; ``gpu:N`` for N whole GPUs (a fraction above one rounds up: a share of several
    devices is no SLURM resource); for a fraction f below one, ``shard:K`` with K = ⌈f · S⌉ of
    the S shards each GPU of the partition has (``gres.conf`` ``Name=shard``), never less
    than asked. ConfigError naming ``backend.slurm.gres`` when the partition's nodes have no
    shards (or ``sinfo`` cannot say)."""
    b, s = cfg.backend, slurm_options(cfg)
    if s.gres is not None:
        return s.gres
    if b.gpus_per_trial <= 0:
        return None
    if b.gpus_per_trial >= 1:
        return f"gpu:{math.ceil(b.gpus_per_trial)}"
    per_gpu = shards_per_gpu(_partition_gres(s.partition))
    if per_gpu == 0:
        where = f"partition {s.partition}" if s.partition else "the default partition"
        allowed = (
            f"a whole number of GPUs, or backend.slurm.gres set to what a fraction should ask for: the nodes of {where} "
            "have no GPU shards (gres.conf Name=shard, GresTypes=gpu,shard in slurm.conf) to share a GPU through"
        )
        raise ConfigError([ConfigIssue(cfg.source, "backend.gpus_per_trial", b.gpus_per_trial, allowed)])
    return f"shard:{math.ceil(b.gpus_per_trial * per_gpu - 1e-9)}"


def shards_per_gpu(gres_lines: list[str]) -> int:
    """Shards per GPU on the nodes whose GRES (as ``sinfo -o %G`` prints them, e.g.
    ``gpu:a100:2(S:0-1),shard:8``) are ``gres_lines``: the fewest among nodes that have both,
    so a job fits on any of them; 0 when none has shards."""
    found = []
    for line in gres_lines:
        counts = {"gpu": 0, "shard": 0}
        for item in line.split(","):
            name, *rest = re.sub(r"\(.*?\)", "", item.strip()).split(":")
            if name in counts and rest and rest[-1].isdigit():
                counts[name] += int(rest[-1])
        if counts["gpu"] and counts["shard"]:
            found.append(counts["shard"] // counts["gpu"])
    return min(found, default=0)


def _partition_gres(partition: str | None) -> list[str]:
    """The GRES of each node of ``partition`` (the default one, marked ``*`` by sinfo, when
    None), from sinfo; [] when sinfo cannot say."""
    command = ["sinfo", "--noheader", "--Node", "--format=%P|%G"]
    try:
        with clean_env():
            out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return [gres for name, gres in rows if (name.endswith("*") if partition is None else name.rstrip("*") == partition)]



def executor_parameters(cfg: SweepConfig) -> dict[str, Any]:
    """Arguments of submitit's ``SlurmExecutor.update_parameters`` for a trial job of ``cfg``.

    GPUs (:func:`gpu_gres`): whole devices as ``gpu:N``; a fraction below one as that share
    of a device's SLURM shards (``shard:K``), so several trials share one GPU as SLURM
    counts it; ``backend.slurm.gres`` asks for anything else (``gpu:a100:1``). Asks the
    cluster (``sinfo``) only for a fraction.
    """
    b, s = cfg.backend, slurm_options(cfg)
    params: dict[str, Any] = {
        "job_name": f"kdsweep-{cfg.name}",
        "time": max(1, math.ceil(b.timeout_min)),  # whole minutes, as sbatch --time reads it
        "cpus_per_task": b.cpus_per_trial,
        "mem": f"{math.ceil(b.mem_gb * 1024)}M",
        "signal_delay_s": s.signal_delay_s,
        # 0 means no limit; an array never holds more than max_concurrent tasks anyway.
        "array_parallelism": s.array_parallelism or b.max_concurrent,
        "setup": list(s.setup),
        # --requeue: SLURM restarts a job hit by a node failure or preemption instead of
        # failing it, and submitit's checkpoint-and-requeue works on clusters whose
        # default (JobRequeue=0) would refuse it.
        "additional_parameters": {"requeue": True, **s.extra},
    }
    gres = gpu_gres(cfg)
    optional = {"partition": s.partition, "account": s.account, "qos": s.qos, "constraint": s.constraint, "gres": gres}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


class Executor(submitit.SlurmExecutor):
    """submitit's SLURM executor, plus the batch script it submits for one job."""

    def script(self) -> str:
        """The sbatch script of a single (non-array) job, as submitit writes it."""
        return self._make_submission_file_text(self._submitit_command_str, "script")


def make_executor(cfg: SweepConfig, folder: Path) -> Executor:
    """An executor for ``cfg``'s trial jobs, keeping pickles and logs in ``folder``."""
    executor = Executor(folder)
    executor.update_parameters(**executor_parameters(cfg))
    return executor


def slurm_folder(run_dir: str | Path) -> Path:
    """Where submitit keeps a run's job pickles and logs (absolute: jobs need not share the
    driver's working directory)."""
    return Path(run_dir).resolve() / layout.SLURM


def preflight(cfg: SweepConfig, run_dir: str | Path) -> str:
    """The sbatch script of one trial job, once slurmctld has said it would accept it.

    ``sbatch --test-only`` checks the script against the live cluster (partition, time limit,
    resources, unknown options) and submits nothing. Raises :class:`ConfigError` naming the
    sweep field responsible and quoting SLURM's own message, or when SLURM's commands are not
    installed here. Creates nothing.
    """
    missing = [c for c in ("sbatch", "srun", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        allowed = f"a machine with SLURM's commands on PATH (missing: {', '.join(missing)}), e.g. a login node"
        raise ConfigError([ConfigIssue(cfg.source, "backend.kind", "slurm", allowed)])
    script = make_executor(cfg, slurm_folder(run_dir)).script()
    with tempfile.NamedTemporaryFile("w", prefix="kdsweep-", suffix=".sbatch") as fh:
        fh.write(script)
        fh.flush()
        try:
            with clean_env():
                proc = subprocess.run(["sbatch", "--test-only", fh.name], capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise ConfigError([ConfigIssue(cfg.source, "backend.kind", "slurm", "a cluster whose controller answers 'sbatch --test-only' within 120 s")]) from None
    if proc.returncode != 0:
        message = " / ".join(line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip())
        field, value = _blame(cfg, message)
        raise ConfigError([ConfigIssue(cfg.source, field, value, f"a value this cluster accepts; sbatch --test-only said: {message}")])
    return script


# Patterns in sbatch's refusals → the sbatch option they are about. Account comes before
# partition ("Invalid account or account/partition combination"), and "time" only as an
# option or a limit ("Socket timed out" is about the controller, not --time).
_MESSAGE_OPTIONS = (
    (re.compile(r"\baccount\b"), "account"),
    (re.compile(r"\bpartition\b"), "partition"),
    (re.compile(r"--time\b|\btime limit\b"), "time"),
    (re.compile(r"\bqos\b"), "qos"),
    (re.compile(r"\bfeature\b"), "constraint"),
    (re.compile(r"\bgres\b"), "gres"),
)


def _blame(cfg: SweepConfig, message: str) -> tuple[str, Any]:
    """The sweep field (and its value) an sbatch refusal is most likely about."""
    b, s = cfg.backend, slurm_options(cfg)
    extra = {k.replace("_", "-"): k for k in s.extra}
    unknown = re.search(r"unrecognized option '--([\w-]+)", message)
    if unknown is not None and unknown.group(1) in extra:
        key = extra[unknown.group(1)]
        return f"backend.slurm.extra.{key}", s.extra[key]
    fields: dict[str, tuple[str, Any]] = {
        "account": ("backend.slurm.account", s.account),
        "partition": ("backend.slurm.partition", s.partition),
        "time": ("backend.timeout_min", b.timeout_min),
        "qos": ("backend.slurm.qos", s.qos),
        "constraint": ("backend.slurm.constraint", s.constraint),
        "gres": ("backend.slurm.gres", s.gres) if s.gres is not None else ("backend.gpus_per_trial", b.gpus_per_trial),
    }
    lowered = message.lower()
    for pattern, option in _MESSAGE_OPTIONS:
        if pattern.search(lowered):
            if option in extra:  # an extra option overrides the one kdsweep derives
                return f"backend.slurm.extra.{extra[option]}", s.extra[extra[option]]
            return fields[option]
    if "node configuration" in lowered:  # more CPUs, memory or GPUs than any node has
        return "backend", {"cpus_per_trial": b.cpus_per_trial, "mem_gb": b.mem_gb, "gpus_per_trial": b.gpus_per_trial}
    return "backend.slurm", dataclasses.asdict(s)


# -- the backend ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    """A submitted (or adopted) attempt and its SLURM job."""

    spec: TrialSpec
    job: submitit.Job[Any]
    #: Monotonic time of submission; squeue output older than this may not list the job yet.
    since: float
    #: When squeue first showed the job ended while its result file was not there.
    ended_at: float | None = None


class SlurmBackend:
    """Runs each attempt as a SLURM job; at most ``slots`` jobs queued or running at once."""

    #: Seconds a result file may lag behind squeue's "ended" (a shared filesystem can show a
    #: file late) before the job counts as having died without one.
    result_grace_s: float = 10.0
    #: Seconds between looks for result files while ``wait`` blocks.
    result_poll_s: float = 0.5
    #: Consecutive failed ``sbatch`` calls (controller down, submit limits) after which the
    #: queued attempts are reported as failed; between tries the backend backs off.
    max_submit_failures: int = 5

    @classmethod
    def from_config(cls, cfg: SweepConfig) -> SlurmBackend:
        return cls(cfg)

    def __init__(self, cfg: SweepConfig, slots: int | None = None) -> None:
        self.cfg = cfg
        self.slots = cfg.backend.max_concurrent if slots is None else slots
        self.squeue_interval_s = slurm_options(cfg).squeue_interval_s
        self._queued: list[TrialSpec] = []
        self._jobs: dict[str, _Job] = {}  # by trial id
        self._executors: dict[Path, Executor] = {}
        self._records: dict[Path, dict[AttemptKey, str]] = {}
        self._states: dict[str, str] = {}  # job id → SLURM state, from the last squeue
        self._nodes: dict[str, str] = {}  # job id → the node it was running on at the last squeue
        self._states_at = -math.inf  # monotonic time just before that squeue ran
        self._submit_failures = 0
        self._next_submit_at = -math.inf

    # -- Backend --------------------------------------------------------------------------------

    def submit(self, spec: TrialSpec) -> None:
        """Queue an attempt; it goes to SLURM, in one array with the others queued, at the next
        ``wait``."""
        self._check_slot()
        self._queued.append(spec)

    def adopt(self, spec: TrialSpec) -> bool:
        """Re-attach to this attempt's job if an earlier driver submitted it (per the job
        records) and it is still queued or running, or left a result: it is then tracked as
        if submitted here. False, and the driver submits the attempt, if it was never
        submitted or its job ended without a result (cancelled by that driver's Ctrl-C,
        killed): like a local worker that died with its driver, that costs no retry."""
        self._check_slot()
        job_id = self._recorded(spec.run_dir).get(attempt_key(spec))
        if job_id is None or _cancelled_mark(spec.run_dir, job_id).exists():
            # A job a driver cancelled may still show as COMPLETING for KillWait seconds (or
            # longer on a loaded controller): its mark, not squeue's timing, says it is over.
            return False
        job: submitit.Job[Any] = submitit.SlurmJob(folder=slurm_folder(spec.run_dir), job_id=job_id)
        if time.monotonic() - self._states_at >= self.squeue_interval_s:
            self._refresh_states()
        state = self._states.get(job_id)
        answered = self._states_at > -math.inf  # without any squeue answer, keep the job: never run it twice
        if answered and (state is None or state in ENDED_STATES) and not job.paths.result_pickle.exists():
            return False
        self._jobs[spec.trial_id] = _Job(spec, job, since=-math.inf)
        return True

    def wait(self, timeout_s: float) -> list[Finished]:
        deadline = time.monotonic() + timeout_s
        while True:
            done = self._flush()
            done += self._collect()
            now = time.monotonic()
            if done or now >= deadline or not (self._jobs or self._queued):
                return done
            time.sleep(min(self.result_poll_s, deadline - now))

    def cancel(self, trial_id: str) -> None:
        self._queued = [s for s in self._queued if s.trial_id != trial_id]
        entry = self._jobs.pop(trial_id, None)
        if entry is not None:
            self._cancel([entry])

    def close(self) -> None:
        """Cancel the jobs still queued or running (the run stays resumable). Idempotent."""
        self._queued.clear()
        entries = list(self._jobs.values())
        self._jobs.clear()
        if entries:
            self._cancel(entries)

    def _cancel(self, entries: list[_Job]) -> None:
        """``scancel`` the jobs of ``entries``, then mark each cancelled in its run's job
        records, so that no later driver adopts it (:meth:`adopt`). A driver killed between
        the two leaves the job unmarked: squeue's state then decides, as it did before."""
        self._scancel([entry.job.job_id for entry in entries])
        for entry in entries:
            write_atomic(_cancelled_mark(entry.spec.run_dir, entry.job.job_id), b"")

    def busy(self) -> int:
        """Attempts queued here or submitted and not yet reported."""
        return len(self._queued) + len(self._jobs)

    # -- submission -------------------------------------------------------------------------------

    def _check_slot(self) -> None:
        if self.busy() >= self.slots:
            raise RuntimeError(f"all {self.slots} SLURM slots are busy; the driver must wait first")

    def _executor(self, run_dir: str) -> Executor:
        folder = slurm_folder(run_dir)
        if folder not in self._executors:
            self._executors[folder] = make_executor(self.cfg, folder)
        return self._executors[folder]

    def _flush(self) -> list[Finished]:
        """Submit the queued attempts, one array per run directory. Failed submissions stay
        queued with a backoff; after ``max_submit_failures`` in a row they are reported."""
        if not self._queued or time.monotonic() < self._next_submit_at:
            return []
        queued, self._queued = self._queued, []
        by_run: dict[str, list[TrialSpec]] = {}
        for spec in queued:
            by_run.setdefault(spec.run_dir, []).append(spec)
        gave_up: list[Finished] = []
        for run_dir, specs in by_run.items():
            # The job reads the run directory by an absolute path: its working directory is
            # wherever SLURM starts it.
            payloads = [dataclasses.replace(s, run_dir=str(Path(s.run_dir).resolve())) for s in specs]
            try:
                with clean_env():  # a driver running as a job must not leak its SLURM_* settings
                    jobs = self._executor(run_dir).map_array(TrialJob(), payloads)
            except (FailedJobError, FailedSubmissionError, OSError) as exc:
                self._submit_failures += 1
                if self._submit_failures >= self.max_submit_failures:
                    error = f"sbatch failed {self._submit_failures} times in a row; last error: {exc}"
                    gave_up += [Finished(s, None, error) for s in specs]
                    continue
                backoff_s = min(60.0, 2.0**self._submit_failures)
                logger.warning("sbatch failed (%s); trying again in %.0f s", str(exc).strip(), backoff_s)
                self._next_submit_at = time.monotonic() + backoff_s
                self._queued.extend(specs)
                continue
            self._submit_failures = 0
            now = time.monotonic()
            self._record(run_dir, specs, jobs)
            for spec, job in zip(specs, jobs):
                self._jobs[spec.trial_id] = _Job(spec, job, since=now)
        return gave_up

    def _record(self, run_dir: str, specs: list[TrialSpec], jobs: list[submitit.Job[Any]]) -> None:
        """Write which job runs which attempt: one file per sbatch, never rewritten."""
        array_id = jobs[0].job_id.split("_")[0]
        doc = {
            "job_id": array_id,
            "submitted_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "attempts": [
                {"trial_id": s.trial_id, "attempt": s.attempt, "until_epoch": s.until_epoch, "job_id": j.job_id}
                for s, j in zip(specs, jobs)
            ],
        }
        folder = slurm_folder(run_dir) / layout.SLURM_JOBS
        for directory in (folder.parent, folder):
            real_dir(directory)
        write_atomic(folder / f"{array_id}.json", json.dumps(doc, indent=1).encode())
        self._recorded(run_dir).update({attempt_key(s): j.job_id for s, j in zip(specs, jobs)})

    def _recorded(self, run_dir: str) -> dict[AttemptKey, str]:
        folder = slurm_folder(run_dir)
        if folder not in self._records:
            self._records[folder] = {key: sub[-1]["job_id"] for key, sub in job_records(run_dir).items()}
        return self._records[folder]

    # -- how jobs end -------------------------------------------------------------------------------

    def _collect(self) -> list[Finished]:
        if self._jobs and time.monotonic() - self._states_at >= self.squeue_interval_s:
            self._refresh_states()
        done: list[Finished] = []
        for trial_id, entry in list(self._jobs.items()):
            finished = self._finished(entry)
            if finished is not None:
                del self._jobs[trial_id]
                done.append(finished)
        return done

    def _finished(self, entry: _Job) -> Finished | None:
        paths = entry.job.paths
        if paths.result_pickle.exists():
            return self._result(entry)
        if self._states_at <= entry.since:
            return None  # no squeue since it was submitted: it may not be listed yet
        state = self._states.get(entry.job.job_id)
        if state is not None and state not in ENDED_STATES:
            entry.ended_at = None
            return None
        now = time.monotonic()
        if entry.ended_at is None:
            entry.ended_at = now
        if now - entry.ended_at < self.result_grace_s:
            return None
        how = f"ended {state}" if state is not None else "is no longer known to SLURM"
        error = (
            f"SLURM job {entry.job.job_id} {how} without a result (killed, out of memory, node failure "
            f"or cancelled outside kdsweep); log: {paths.stderr}"
        )
        tail = _tail(paths.stderr)
        return Finished(entry.spec, None, f"{error}\n{tail}" if tail else error)

    def _result(self, entry: _Job) -> Finished:
        paths = entry.job.paths
        where = f"SLURM job {entry.job.job_id}; log: {paths.stderr}"
        try:
            kind, payload = pickle_load(paths.result_pickle)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
            return Finished(entry.spec, None, f"unreadable result {paths.result_pickle}: {exc!r}\n{where}")
        if kind == "success" and isinstance(payload, TrialOutcome):
            return Finished(entry.spec, payload)
        return Finished(entry.spec, None, f"{str(payload).rstrip()}\n{where}")

    def _refresh_states(self) -> None:
        """One squeue for every job of this user, array tasks one per line."""
        started = time.monotonic()
        command = ["squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%T|%N"]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            # Keep the old snapshot and its time: no job is judged on what squeue did not say.
            logger.warning("squeue failed (%s); job states not refreshed", exc)
            return
        states: dict[str, str] = {}
        nodes: dict[str, str] = {}
        for line in out.splitlines():
            job_id, state, node = (part.strip() for part in (line.split("|") + ["", ""])[:3])
            states[job_id] = state
            if state == "RUNNING" and node:
                nodes[job_id] = node
        self._say_requeued(states, nodes)
        self._states, self._states_at, self._nodes = states, started, nodes

    def _say_requeued(self, states: dict[str, str], nodes: dict[str, str]) -> None:
        """Log (a warning: the driver's log and live view) each node that this backend's
        running jobs were taken from since the last squeue — a job that ran there and is
        now queued again, or runs elsewhere: SLURM requeued it (node down or drained,
        preemption, ``scontrol requeue``) — with the node's state and reason and the trials
        requeued; they resume from their last checkpoint when SLURM starts them again."""
        trial_of = {entry.job.job_id: trial for trial, entry in self._jobs.items()}
        moved: dict[str, list[str]] = {}
        for job_id, node in self._nodes.items():
            state = states.get(job_id)
            if job_id in trial_of and state is not None and state not in ENDED_STATES and nodes.get(job_id) != node:
                moved.setdefault(node, []).append(f"{trial_of[job_id]} (job {job_id})")
        for node, jobs in sorted(moved.items()):
            try:
                info = subprocess.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%T|%E"], capture_output=True, text=True, timeout=60, check=False).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                info = ""
            state, _, reason = info.partition("|")
            why = f"{state}: {reason}" if reason and reason != "none" else (state or "state unknown")
            logger.warning("node %s lost its jobs (%s); requeued by SLURM, resuming from their checkpoints: %s", node, why, ", ".join(jobs))

    @staticmethod
    def _scancel(job_ids: list[str]) -> None:
        proc = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:  # typically: the job ended meanwhile
            logger.warning("scancel %s: %s", " ".join(job_ids), proc.stderr.strip())


def _cancelled_mark(run_dir: str | Path, job_id: str) -> Path:
    """Where a driver marks job ``job_id`` of ``run_dir`` as cancelled by it."""
    return slurm_folder(run_dir) / layout.SLURM_JOBS / f"{job_id}{layout.CANCELLED_SUFFIX}"


def job_records(run_dir: str | Path) -> dict[AttemptKey, list[dict[str, Any]]]:
    """Every submission recorded in ``RUN_DIR/slurm/jobs/``, per attempt, oldest first (more
    than one entry per attempt means it was submitted more than once). Unreadable record
    files are skipped with a warning."""
    out: dict[AttemptKey, list[dict[str, Any]]] = {}
    docs = []
    for path in (slurm_folder(run_dir) / layout.SLURM_JOBS).glob("*.json"):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            logger.warning("skipping unreadable job record %s: %s", path, exc)
    for doc in sorted(docs, key=lambda d: (d["submitted_at"], int(d["job_id"]))):
        for a in doc["attempts"]:
            key = (a["trial_id"], a["attempt"], a["until_epoch"])
            out.setdefault(key, []).append({**a, "submitted_at": doc["submitted_at"]})
    return out


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
