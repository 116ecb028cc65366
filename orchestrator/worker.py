"""``run_trial(spec)``: one attempt of one trial, the same function on every backend.

The worker restores the trial's checkpoint if it has one, trains epoch by epoch, and at each
report point evaluates and appends a row to the store. At a rung milestone it appends, and —
in the ``stop`` variant — reads that rung back from the store and applies ASHA's rule itself
(no round trip to the driver, so a slow or restarted driver never stalls training); a trial
that goes on is then checkpointed. Every row is keyed, so an attempt that trains again
epochs an earlier one reported (it died before checkpointing them) never appends them twice.

A backend only decides *where* this runs. Everything the worker needs is in the run
directory (frozen config, checkpoints, store) plus the small :class:`TrialSpec`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import math
import os
import socket
import sys
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kdsweep.orchestrator import asha
from kdsweep.orchestrator.checkpoint import load_checkpoint, save_checkpoint
from kdsweep.orchestrator.layout import checkpoint_path
from kdsweep.orchestrator.clock import REAL_CLOCK, Clock
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.policies import WorkOrder
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.schedulers import Decision, scheduler_of
from kdsweep.orchestrator.schema import (
    NOT_AT_RUNG,
    PARAM_PREFIX,
    SCHEMA_VERSION,
    TERMINAL_EVENTS,
    Event,
    Stage,
    kdsweep_version,
    pack_correct,
    results_schema,
    row_key,
)
from kdsweep.orchestrator.store import Store
from kdsweep.trainers.base import StopTrial, TrainerFactory, TrialContext, trainer_spec


#: Environment variable through which a backend names the node its worker process runs on
#: (the Ray backend sets the Ray node id); recorded in the ``node`` column.
NODE_ENV = "KDSWEEP_NODE"


class MissingMetricError(RuntimeError):
    """A trainer's ``evaluate()`` left out a metric the sweep ranks trials by."""


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """What a backend ships to a worker: which trial and attempt, and its work order."""

    run_dir: str
    trial_id: str
    params: Mapping[str, Any]
    origin: str
    #: What this attempt does (how far, which milestones, the stop rule, the end event), as
    #: the driver's job source decided it (``orchestrator/policies.py``).
    order: WorkOrder
    attempt: int = 0
    #: The trial record's target epoch (None: ``asha.max_epochs``); with ``attempt`` it names
    #: the attempt (a SLURM job record's key).
    until_epoch: int | None = None
    #: "search", or "final" for ``kdsweep retrain`` (the rows' ``stage`` column).
    stage: str = Stage.SEARCH.value

    @classmethod
    def of(cls, run_dir: str | os.PathLike[str], record: TrialRecord, order: WorkOrder) -> TrialSpec:
        """The next attempt of ``record`` under ``order``."""
        return cls(str(run_dir), record.trial_id, dict(record.params), record.origin, order, record.attempt, record.until_epoch, record.stage)


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """How an attempt ended when it did not raise: completed, stopped or paused."""

    trial_id: str
    event: str
    epoch: int
    value: float
    wall_s: float


@functools.lru_cache(maxsize=8)
def _run_context(run_dir: str) -> tuple[SweepConfig, Store]:
    """Config and store of a run, kept per process: a long-lived worker process runs
    many trials of one sweep, and the store's incremental read cache must survive between
    them (re-reading every fragment per trial would make reads quadratic)."""
    cfg = RunDir(run_dir).load_config()
    spec = trainer_spec(cfg.trainer)
    # Imported now, before any trial asks which device it runs on: whether this process
    # uses torch at all is known from here on (see trial_device).
    spec.training_class()
    store = Store(run_dir, results_schema(spec.metric_names(cfg.settings), cfg.param_types()))
    return cfg, store


def trial_seed(sweep_seed: int, trial_id: str) -> int:
    """A trial's own seed: stable across attempts, distinct across trials and sweeps."""
    digest = hashlib.sha256(f"{sweep_seed}:{trial_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def trial_device(cfg: SweepConfig) -> str:
    """The device a trial computes on (``backend.device``; "auto" means CUDA if visible)."""
    if cfg.backend.device != "auto":
        return cfg.backend.device
    return _visible_device()


def _visible_device() -> str:
    """"cuda" if this process's trainer uses torch and torch sees a GPU, else "cpu". A
    trainer that does not import torch (its training module is imported before any trial
    asks) computes on the CPU whatever the machine has, and must not pay torch's import."""
    torch = sys.modules.get("torch")
    return "cpu" if torch is None else _cuda_device(torch)


@functools.cache
def _cuda_device(torch: Any) -> str:
    """Asked once per process: the answer does not change, and asking costs milliseconds."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _limit_threads(cpus: int) -> None:
    """Keep torch's intra-op threads to the trial's CPU share: several trials on one machine
    each defaulting to every core oversubscribe it and all run slower. Nothing to limit in a
    process that does not use torch."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)


def run_trial(spec: TrialSpec) -> TrialOutcome:
    """Run one attempt of a trial to its end (completed / stopped / paused) and return how it
    ended. Exceptions from the trainer propagate: the backend reports them to the driver,
    which retries from the last checkpoint or records the failure."""
    steps = attempt_steps(spec)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            outcome: TrialOutcome = end.value
            return outcome


def attempt_steps(
    spec: TrialSpec, clock: Clock = REAL_CLOCK, make_trainer: TrainerFactory | None = None
) -> Generator[int, None, TrialOutcome]:
    """One attempt as a generator: each ``next`` trains one epoch and yields its number
    (after first recording what the previous epoch's end produced: evaluation, report, ASHA
    decision); the generator returns the outcome. :func:`run_trial` runs it straight through;
    the simulator interleaves many, advancing a virtual ``clock`` by each epoch's duration
    between two steps, and may build the trainer itself (``make_trainer``; default: the
    sweep's registered trainer class)."""
    cfg, store = _run_context(spec.run_dir)
    ended = recorded_end(cfg, store, spec)
    if ended is not None:
        # This attempt already ended (a SLURM job requeued after its trial wrote its last
        # row, a resubmission racing an orphan): training it again would append a second end.
        return _ended(ended)
    return _Attempt(cfg, store, spec, clock, make_trainer or trainer_spec(cfg.trainer).build).steps()


def _ended(outcome: TrialOutcome) -> Generator[int, None, TrialOutcome]:
    """An attempt with nothing left to train: it returns ``outcome`` at the first ``next``."""
    yield from ()
    return outcome


def recorded_end(cfg: SweepConfig, store: Store, spec: TrialSpec) -> TrialOutcome | None:
    """How ``spec``'s trial ended according to the store (a terminal row, or a pause at or
    after this attempt's target epoch), or None while it has not ended for this attempt."""
    until = spec.order.until_epoch
    for row in reversed(store.trial_rows(spec.trial_id)):
        if row["event"] in TERMINAL_EVENTS or (row["event"] == Event.PAUSED.value and int(row["epoch"]) >= until):
            value = row.get(cfg.asha.metric)
            wall = row.get("wall_s")
            return TrialOutcome(
                spec.trial_id, row["event"], int(row["epoch"]),
                math.nan if value is None else float(value), 0.0 if wall is None else float(wall),
            )  # fmt: skip
    return None


class _Attempt:
    def __init__(
        self, cfg: SweepConfig, store: Store, spec: TrialSpec, clock: Clock, make_trainer: TrainerFactory
    ) -> None:
        self.cfg, self.store, self.spec, self.clock = cfg, store, spec, clock
        self.order = spec.order
        # Asked at every rung milestone below the budget whether the trial goes on.
        self.scheduler = scheduler_of(cfg.asha, cfg.seed)
        self.device = trial_device(cfg)
        _limit_threads(cfg.backend.cpus_per_trial)
        run = RunDir(spec.run_dir)
        ctx = TrialContext(
            trial_id=spec.trial_id,
            seed=trial_seed(cfg.seed, spec.trial_id),
            attempt=spec.attempt,
            run_dir=run.path,
            cache_dir=run.cache,
            device=self.device,
            data=cfg.data,
            budget_epochs=spec.order.budget_epochs,
            objective=cfg.objective,
            stage=spec.stage,
        )
        self.trainer = make_trainer(spec.params, cfg.settings, ctx)
        self.ckpt = checkpoint_path(spec.run_dir, spec.trial_id)
        self.host = socket.gethostname()
        self.node = os.environ.get(NODE_ENV)
        self.wall_before = 0.0  # training seconds of earlier attempts, from the checkpoint
        self.started = clock.seconds()
        self.metrics: dict[str, float] = {}
        self.budget = ctx.budget_epochs
        # Which validation examples the last evaluation got right (the trainer's optional
        # ``val_correct``), or None for a trainer without examples.
        self.val_correct: npt.NDArray[np.bool_] | None = None

    def steps(self) -> Generator[int, None, TrialOutcome]:
        try:
            return (yield from self._train())
        except StopTrial as stop:
            return self._stop_early(str(stop))

    def _stop_early(self, reason: str) -> TrialOutcome:
        """The trainer ended its trial (:class:`StopTrial`): record ``stopped`` at the last
        reported epoch, with that report's metrics and ``reason``."""
        reports = [r for r in self.store.trial_rows(self.spec.trial_id) if r["event"] == Event.REPORT.value]
        last = max(reports, key=lambda r: int(r["epoch"]), default=None)
        if last is None:
            self.metrics = {}
            return self._finish(Event.STOPPED, 0, NOT_AT_RUNG, error=reason)
        names = trainer_spec(self.cfg.trainer).metric_names(self.cfg.settings)
        self.metrics = {k: float(last[k]) for k in names if last.get(k) is not None}
        return self._finish(Event.STOPPED, int(last["epoch"]), int(last["rung"]), error=reason)

    def _train(self) -> Generator[int, None, TrialOutcome]:
        order = self.order
        until = order.until_epoch
        start = self._restore()
        # Epochs this trial already reported (an earlier attempt, or a driver that was killed):
        # they are trained again from the last checkpoint but not appended twice, and their
        # rung decisions were already taken (the trial is alive, so they were "continue").
        reported = {
            int(r["epoch"]) for r in self.store.trial_rows(self.spec.trial_id) if r["event"] == Event.REPORT.value
        }
        if start == 0 and not reported:
            # A fresh trial (never on a resume, whose measurements may differ by noise).
            screening = self.trainer.screen()
            if screening is not None:
                self.metrics = dict(screening.metrics)
                return self._finish(Event.REJECTED, 0, NOT_AT_RUNG, error=screening.reason)
        for epoch in range(start + 1, until + 1):
            self.metrics = dict(self.trainer.train_epoch(epoch))
            yield epoch
            rung = self._rung(epoch)
            diverged = self._diverged(epoch, "train_epoch")
            if diverged is not None:
                return diverged
            if rung == NOT_AT_RUNG and epoch != until and epoch % self.cfg.asha.eval_every_epochs:
                continue
            self._evaluate(epoch, until)
            diverged = self._diverged(epoch, "evaluate")
            if diverged is not None:
                return diverged
            if epoch not in reported:
                stopped = self._report(epoch, rung)
                if stopped is not None:
                    return stopped
            # After the report and its decision: a stopped trial never trains again, so its
            # checkpoint would be written only to be deleted. A kill between the report and
            # the checkpoint loses no row: the next attempt trains again from the previous
            # checkpoint and does not append the recorded epochs a second time.
            if rung != NOT_AT_RUNG or epoch == until or order.checkpoint_every_report:
                self._checkpoint(epoch)
        return self._finish(Event(order.end), until, self._rung(until))

    def _diverged(self, epoch: int, where: str) -> TrialOutcome | None:
        """End the trial as ``diverged`` at ``epoch`` when a value the trainer reported is NaN
        or infinite (the first one, in the order reported, is named), else None.

        A diverged model's numbers look like results and are not: all-NaN logits make
        ``argmax`` pick class 0, so val_acc becomes that class's share (finite, rankable).
        Training it further, retrying it or telling its accuracy to the searcher would
        spend the budget on noise, so the first non-finite value ends it. The row keeps the
        values as reported (NaN included) and is no rung's: its rung values before this
        epoch stay what ASHA saw; the report leaves the trial out of every statistic."""
        bad = next(((k, v) for k, v in self.metrics.items() if not math.isfinite(float(v))), None)
        if bad is None:
            return None
        name, value = bad
        if where == "train_epoch":
            self.val_correct = None  # the row's metrics come from no evaluation: no val_n
        reason = f"non-finite {name} = {float(value)!r} at epoch {epoch} (from {where}())"
        return self._finish(Event.DIVERGED, epoch, NOT_AT_RUNG, error=reason)

    def _rung(self, epoch: int) -> int:
        return asha.rung_index(epoch, self.order.milestones)

    def _evaluate(self, epoch: int, until: int) -> None:
        """Validation metrics into ``self.metrics``; after a final run's last epoch, the test
        split's too (evaluated once, on the model that the run ends with)."""
        evaluated = self.trainer.evaluate()
        missing = [m for m in self.cfg.asha.metrics if m not in evaluated]
        if missing:
            # A NaN in their place would never be stopped and never be an error: say so now.
            raise MissingMetricError(
                f"trainer {self.cfg.trainer!r}: evaluate() returned no {', '.join(map(repr, missing))} "
                f"(the sweep's asha objective); it returned {sorted(evaluated)}"
            )
        self.metrics.update(evaluated)
        correct = self.trainer.val_correct
        self.val_correct = None if correct is None else np.asarray(correct, dtype=bool)
        if self.order.test_at_end and epoch == until:
            self.metrics.update(self.trainer.test())

    def _restore(self) -> int:
        state = load_checkpoint(self.ckpt)
        if state is None:
            return 0
        self.trainer.load_state_dict(state["trainer"])
        self.wall_before = float(state["wall_s"])
        return int(state["epoch"])

    def _report(self, epoch: int, rung: int) -> TrialOutcome | None:
        """Append the report row; at a rung, ask the scheduler whether the trial goes on.
        Returns the outcome when the trial is stopped, or has ended in another process's hands.

        A report that another process recorded first (an attempt of a driver that was killed
        without its workers) is not written again; that process took the rung decision."""
        decides = rung != NOT_AT_RUNG and epoch < self.order.budget_epochs
        # One objective or several, the same question: the point is a tuple over asha.metrics.
        point = tuple(float(self.metrics.get(m, math.nan)) for m in self.cfg.asha.metrics)
        extra = self.scheduler.rung_columns(self.store, self.spec.trial_id, rung, point) if decides else {}
        if not self._append(Event.REPORT, epoch, rung, extra=extra):
            return self._recorded_end()
        if decides and self.scheduler.on_result(self.store, self.spec.trial_id, rung, point) is Decision.STOP:
            return self._finish(Event.STOPPED, epoch, rung)
        return None

    def _value(self) -> float:
        value = self.metrics.get(self.cfg.asha.metric, math.nan)
        return float(value)

    def _checkpoint(self, epoch: int) -> None:
        state = {"epoch": epoch, "wall_s": self._wall(), "trainer": self.trainer.state_dict()}
        save_checkpoint(self.ckpt, state)

    def _wall(self) -> float:
        return self.wall_before + (self.clock.seconds() - self.started)

    def _append(self, event: Event, epoch: int, rung: int, error: str | None = None, extra: Mapping[str, float] | None = None) -> bool:
        """Record one row, with the scheduler's ``extra`` columns; False when that row (same
        trial, event, epoch) was recorded by another process already (see ``row_key``)."""
        key = row_key(self.spec.trial_id, event.value, epoch)
        return self.store.append([{**self._row(event, epoch, rung, error), **(extra or {})}], key=key) is not None

    def _recorded_end(self) -> TrialOutcome | None:
        return recorded_end(self.cfg, self.store, self.spec)

    def _row(self, event: Event, epoch: int, rung: int, error: str | None = None) -> dict[str, Any]:
        return {
            **base_row(self.cfg, self.spec, event, epoch, rung, self.clock.now()),
            **{k: float(v) for k, v in self.metrics.items()},
            **self._validation_columns(event, epoch, rung),
            "error": error,
            "wall_s": self._wall(),
            "host": self.host,
            "node": self.node,
            "device": self.device,
        }

    def _validation_columns(self, event: Event, epoch: int, rung: int) -> dict[str, Any]:
        """``val_n`` on every row whose metrics come from an evaluation; ``val_correct`` only
        on reports at a rung milestone or at the end of the budget, where trials are compared
        (a bit per example there keeps a trial's record to a few hundred bytes per rung)."""
        if self.val_correct is None:
            return {}
        columns: dict[str, Any] = {"val_n": len(self.val_correct)}
        if event is Event.REPORT and (rung != NOT_AT_RUNG or epoch == self.budget):
            columns["val_correct"] = pack_correct(self.val_correct)
        return columns

    def _finish(self, event: Event, epoch: int, rung: int, error: str | None = None) -> TrialOutcome:
        if not self._append(event, epoch, rung, error):
            # Another process ended this trial first: its row is the outcome.
            recorded = self._recorded_end()
            if recorded is not None:
                return recorded
        if event in (Event.STOPPED, Event.DIVERGED):
            # A stopped or diverged trial never trains again: its checkpoint is only disk space.
            self.ckpt.unlink(missing_ok=True)
        return TrialOutcome(self.spec.trial_id, event.value, epoch, self._value(), self._wall())


def base_row(cfg: SweepConfig, spec: TrialSpec, event: Event, epoch: int, rung: int, at: dt.datetime) -> dict[str, Any]:
    """The columns every row of a trial carries (identity, parameters, provenance); ``at``
    is the row's ``reported_at``."""
    return {
        "sweep": cfg.name,
        "trial_id": spec.trial_id,
        "event": event.value,
        "epoch": epoch,
        "rung": rung,
        "attempt": spec.attempt,
        "origin": spec.origin,
        "stage": spec.stage,
        **{PARAM_PREFIX + k: v for k, v in spec.params.items()},
        "reported_at": at,
        "schema_version": SCHEMA_VERSION,
        "kdsweep_version": kdsweep_version(),
        "config_hash": cfg.config_hash,
    }


def driver_row(cfg: SweepConfig, spec: TrialSpec, event: Event, epoch: int, error: str, at: dt.datetime) -> dict[str, Any]:
    """A row the driver itself appends: ``failed`` when a trial has used up its retries,
    ``rejected`` when the trainer refused a proposal; ``error`` says why."""
    return {**base_row(cfg, spec, event, epoch, NOT_AT_RUNG, at), "error": error, "host": socket.gethostname()}


def results_store(run_dir: str | os.PathLike[str]) -> Store:
    """The store of a run, with its schema (the same instance a worker process uses)."""
    return _run_context(str(Path(run_dir)))[1]
