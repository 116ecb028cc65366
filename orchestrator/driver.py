"""The sweep loop: keep ``max_concurrent`` attempts in flight, collect how they end, retry.

Everything the driver knows is rebuilt from the run directory when it starts, so a fresh
run and ``--resume`` are the same code path: trial records say what was proposed, the store
says what happened. Trials that were proposed but had not ended are submitted again with the
same id and parameters (resuming from their checkpoints); the searcher is replayed from the
records and results, so it is never asked twice for the same slot of the budget.

What runs is decided by a job source (``orchestrator/policies.py``), chosen once from the
run: the sweep under its scheduler (``orchestrator/schedulers``), or ``kdsweep retrain``'s
final stage with its plan. The source turns each trial record into the attempt's work order
and supplies jobs other than new proposals (the scheduler's next paused trial, a planned
run); this loop has no branch on the policy. Workers ask the scheduler at each rung
milestone whether a trial goes on; the source asks it which paused trial runs next.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kdsweep.orchestrator.backends import Backend, Finished
from kdsweep.orchestrator.clock import REAL_CLOCK, Clock
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.policies import Proposer, in_space, job_source
from kdsweep.orchestrator.ranking import rank_key
from kdsweep.orchestrator.rundir import RunDir, TrialRecord, trial_id_of, trial_order
from kdsweep.orchestrator.schema import TERMINAL_EVENTS, Event, row_key
from kdsweep.orchestrator.search_options import TellStatus
from kdsweep.orchestrator import store_maintenance
from kdsweep.orchestrator.store import Store
from kdsweep.orchestrator.worker import TrialSpec, driver_row, results_store
from kdsweep.trainers.base import trainer_spec


@dataclasses.dataclass
class TrialState:
    """The driver's view of one trial: its record and the last thing the store said."""

    record: TrialRecord
    event: str | None = None  # last event in the store, None before the first report
    epoch: int = 0
    value: float | None = None
    running: bool = False
    #: The trainer's constraint values from the last row (``TrainerSpec.constraints``),
    #: told to the searcher with the trial's end; empty when the objective sets no limit.
    constraints: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the live view shows; also the driver's final summary."""

    counts: dict[str, int]
    num_trials: int
    elapsed_s: float
    best_trial: str | None
    best_value: float | None
    best_params: dict[str, Any]
    metric: str
    #: The latest warnings of kdsweep's loggers during the sweep, oldest first (a backend's:
    #: a node lost and the trials SLURM requeued); the log has them all.
    notices: tuple[str, ...] = ()


#: How many of the latest warnings the live view shows.
NOTICES_SHOWN = 3


class _Notices(logging.Handler):
    """Keeps the latest warnings of kdsweep's loggers while a sweep runs, for the live view.
    They reach the log (stderr) through the usual handlers too: this one only remembers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.latest: deque[str] = deque(maxlen=NOTICES_SHOWN)

    def emit(self, record: logging.LogRecord) -> None:
        self.latest.append(record.getMessage())


#: When the driver compacts the results during a sweep: once the attempts that ended since
#: the last compaction appended about this many rows (one small file each), or once this
#: many real seconds passed and one ended (long trials report for hours before they end).
#: A compaction merges only what is new (``store_maintenance.compact``), so this bounds the files every
#: read lists and a joining worker opens without rewriting the run each time. Real time,
#: not the driver's clock: files cost real time, in a simulated run too.
COMPACT_EVERY_ROWS = 200
COMPACT_EVERY_S = 60.0

#: Consecutive proposals the trainer may reject before the driver gives up: a space whose
#: proposals are almost all untrainable is a mistake in the sweep file, not bad luck.
MAX_CONSECUTIVE_REJECTIONS = 200


#: How an attempt's error (a traceback as text, from any backend) says the disk is full.
#: Its group 1 is the file named after the message (``[Errno 28] ...: '/path'``), if any.
_DISK_FULL = re.compile(rf"\[Errno {errno.ENOSPC}\][^\n]*?(?:: '([^'\n]+)')?$", re.MULTILINE)


class RejectedSpaceError(RuntimeError):
    """The searcher kept proposing configurations the trainer cannot train."""


def _told(
    event: str | None, value: float | None, constraints: Mapping[str, float]
) -> tuple[float | None, TellStatus, Mapping[str, float]]:
    """What the searcher is told of a trial that ended with ``event`` (its last value
    ``value``, its ``constraints`` values): "diverged" for a diverged trial (its last numbers
    are no result; ``search.Searcher`` says how each algorithm learns from it),
    "infeasible" for a proposal the worker screened out over a limit (a constraint > 0, no
    value), a failure for a failed one or one without a finite value, else the value — also
    for a proposal the worker screened out with a measured value (a student slower than
    t_max has J = 0, which tells the searcher where the latency boundary lies). The
    constraint values go with every tell. The one rule of a live tell and of a resume's
    replay, so a replayed searcher knows what the original knew."""
    if event == Event.DIVERGED.value:
        return None, "diverged", constraints
    finite = value is not None and math.isfinite(value)
    if event == Event.REJECTED.value and not finite and any(c > 0 for c in constraints.values()):
        return None, "infeasible", constraints
    if event == Event.FAILED.value or value is None or not finite:
        return None, "fail", constraints
    return value, "ok", constraints


class _BackgroundCompaction:
    """Merges the run's result fragments in a background thread, one compaction at a time:
    a report or a freshly started worker then opens a few files instead of one per report
    (thousands, at several ms each on a busy file system), and the driver hands out jobs
    meanwhile (a compaction of a few hundred fragments takes a fraction of a second, a whole
    trial of a cheap trainer not much more). It has its own Store instance, since instances
    are not thread-safe; compactions of a run are serialised by the store's lock. An error in
    the thread (a full disk) is raised in the driver by the next :meth:`check`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start a compaction (``store_maintenance.compact``: what is new since the last one), unless
        one is running."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._compact, name="kdsweep-compaction", daemon=True)
            self._thread.start()

    def _compact(self) -> None:
        try:
            store_maintenance.compact(self.store)
        except BaseException as exc:  # noqa: BLE001 - raised in the driver's thread instead
            self._error = exc

    def check(self) -> None:
        """Raise the error of a compaction that failed since the last check."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def finish(self) -> None:
        """Wait for a running compaction, then compact what is left, in this thread."""
        if self._thread is not None:
            self._thread.join()
        self.check()
        store_maintenance.compact(self.store)


class Driver:
    """Runs a sweep in ``run`` on ``backend`` until its budget is spent.

    ``clock`` is injectable (the simulator uses a virtual one), and so is ``proposer``, where
    new trials' parameters come from (default: the sweep's searcher; a replay proposes a
    recorded run's own configurations); ``on_update`` is
    called with a :class:`Snapshot` after every change, at most every ``update_s`` seconds.
    With ``plan`` (final-stage records, from ``kdsweep retrain``) it runs those instead of
    searching; records of the plan already in the run directory resume where they stopped.
    """

    def __init__(
        self,
        cfg: SweepConfig,
        run: RunDir,
        backend: Backend,
        *,
        plan: Sequence[TrialRecord] | None = None,
        on_update: Callable[[Snapshot], None] | None = None,
        clock: Clock = REAL_CLOCK,
        poll_s: float = 0.5,
        proposer: Proposer | None = None,
    ) -> None:
        self.cfg, self.run, self.backend = cfg, run, backend
        # The kind of run (the sweep under its scheduler, or the final stage), in one object:
        # it also owns what the run proposes (the searcher; nothing for the final stage).
        self.source = job_source(cfg, run.path, plan, proposer)
        self.stage = self.source.stage.value
        self.trainer = trainer_spec(cfg.trainer)
        self.check_params = self.trainer.check_params
        # The limits the objective sets on trials (e.g. objective.max_latency_s): each end's
        # constraint values are read from its row and told to the searcher (``_told``).
        self.constraint_names = self.trainer.constraint_names(cfg.objective)
        self.on_update = on_update
        self.clock = clock
        self.poll_s = poll_s
        self.store = results_store(run.path)
        self._compaction = _BackgroundCompaction(Store(run.path, self.store.schema))
        # A fixed point outside the search space (a research baseline often is: the seed's
        # b = 0.05 under a 0.1-1.0 range) is a reference: it is trained and reported like any
        # trial, but never told to the searcher, whose model covers only the space.
        self.references = [dict(p) for p in cfg.points_to_evaluate if not in_space(cfg, p)]
        self.searcher: Proposer = self.source.proposer
        self.unsearched: set[str] = set()  # trial ids of references
        self.trials: dict[str, TrialState] = {}
        self.queue: deque[TrialSpec] = deque()
        # Trials found unfinished at start: a backend whose attempts outlive the driver (SLURM
        # jobs) may still be running them, and adopts them instead of submitting duplicates.
        self.resumed: set[str] = set()
        # The next new trial, proposed while every slot was busy (see ``_prepare``).
        self.prepared: TrialSpec | None = None
        # Counters kept up to date so that no driver event scans every trial: attempts in
        # flight, trials that count against num_trials (all but rejected ones), the next
        # trial index, and rejections since the last trial the trainer accepted.
        self.n_running = 0
        self.n_counted = 0
        self.next_index = 0
        self.rejected_in_a_row = 0
        self.last_rejection = ""
        self._notices = _Notices()
        self._rebuild()

    # -- state from the run directory --------------------------------------------------------

    def _rebuild(self) -> None:
        """Load trial records and their last store events; replay the searcher; queue every
        trial that had not ended (its attempt resumes from its checkpoint)."""
        last: dict[str, dict[str, Any]] = {}
        # Records first: one that cannot be read stops the driver before it changed anything.
        records = self.run.read_trials(self.stage)
        # The driver owns the run: appends a killed writer claimed but left unpublished are
        # published, and unusable files found under results/ go to quarantine/ (each was
        # warned about once), so plain readers of the run work again.
        store_maintenance.recover(self.store)
        self.store.refresh()
        store_maintenance.quarantine(self.store)
        for row in self.store.rows():
            last[row["trial_id"]] = row
        metric = self.cfg.asha.metric
        for tid, record in records.items():
            state = TrialState(record)
            latest = last.get(tid)
            if latest is not None:
                state.event, state.epoch = latest["event"], int(latest["epoch"])
                v = latest.get(metric)
                state.value = None if v is None else float(v)
                state.constraints = self._constraints(latest)
            self.trials[tid] = state
            self.next_index = max(self.next_index, trial_order(tid)[0] + 1)
            self.n_counted += state.event != Event.REJECTED.value
            # A paused trial whose record says "train further" was promoted by a driver that
            # died before the promotion's attempt reported: it resumes like any other.
            promoted = self.source.order(record).until_epoch > state.epoch
            ended = state.event in TERMINAL_EVENTS or (state.event == Event.PAUSED.value and not promoted)
            self._replay(state, ended)
            if not ended:
                self.queue.append(self._spec(record))
                self.resumed.add(tid)


    def _replay(self, state: TrialState, ended: bool) -> None:
        """Tell the searcher what a recorded trial proposed and how it ended, as when it ran."""
        record = state.record
        tid = record.trial_id
        if record.origin == "fixed" and not in_space(self.cfg, record.params):
            self.unsearched.add(tid)
            if dict(record.params) in self.references:
                self.references.remove(dict(record.params))
        elif ended:
            self.searcher.replay(tid, record.params, *_told(state.event, state.value, state.constraints))
        else:
            self.searcher.replay(tid, record.params, None, "ok")

    def _constraints(self, row: Mapping[str, Any]) -> dict[str, float]:
        """The trainer's constraint values of a trial whose last row is ``row``."""
        return self.trainer.constraints(row, self.cfg.objective) if self.constraint_names else {}

    def _spec(self, record: TrialRecord) -> TrialSpec:
        return TrialSpec.of(self.run.path, record, self.source.order(record))

    # -- the loop ------------------------------------------------------------------------------

    def run_sweep(self) -> Snapshot:
        """Run until every trial has ended and no promotion is possible; return the summary.
        On KeyboardInterrupt every attempt is stopped and the run stays resumable."""
        self.started = self.clock.seconds()
        self._last_update = -math.inf
        self._rows_since_compaction = 0
        # Compaction paces file-system work, which takes real time even when the sweep's
        # clock is virtual: it reads the real clock, never self.clock.
        self._compacted_at = REAL_CLOCK.seconds()
        logging.getLogger("kdsweep").addHandler(self._notices)
        try:
            while True:
                while self._running() < self.backend.slots:
                    spec = self._next_job()
                    if spec is None:
                        break
                    self.trials[spec.trial_id].running = True
                    self.n_running += 1
                    self._launch(spec)
                self._update()
                if self._running() == 0:
                    break
                self._prepare()
                for finished in self.backend.wait(self.poll_s):
                    self._rows_since_compaction += self._collect(finished)
                self._compaction.check()
                if self._rows_since_compaction >= COMPACT_EVERY_ROWS or (
                    self._rows_since_compaction and REAL_CLOCK.seconds() - self._compacted_at >= COMPACT_EVERY_S
                ):
                    self._rows_since_compaction = 0
                    self._compacted_at = REAL_CLOCK.seconds()
                    self._compaction.start()
        finally:
            self.backend.close()
            logging.getLogger("kdsweep").removeHandler(self._notices)
        self._compaction.finish()
        self._update(force=True)
        return self.snapshot()

    def _launch(self, spec: TrialSpec) -> None:
        if spec.trial_id in self.resumed:
            self.resumed.discard(spec.trial_id)
            if self.backend.adopt(spec):
                return
        self.backend.submit(spec)

    def _running(self) -> int:
        return self.n_running

    def _next_job(self) -> TrialSpec | None:
        """The next attempt to run: a queued (resumed or retried) one, else the job source's
        own (a promotion, a planned run), else a new proposal; None when nothing is left."""
        if self.queue:
            return self.queue.popleft()
        record = self.source.next_record(self.trials, self.store)
        if record is not None:
            self.run.write_trial(record)
            state = self.trials.setdefault(record.trial_id, TrialState(record))
            state.record = record
            return self._spec(record)
        if self.prepared is not None:
            spec, self.prepared = self.prepared, None
            return spec
        return self._new_trial()

    def _prepare(self) -> None:
        """Propose the next new trial while the workers are busy, not when one of them has
        just become idle: a TPE proposal costs milliseconds, a whole trial of a cheap
        trainer not much more, so asking on the critical path would idle workers. The
        proposal misses at most the results that arrive during the wait."""
        if self.prepared is None and not self.queue:
            self.prepared = self._new_trial()

    def _new_trial(self) -> TrialSpec | None:
        """The next proposal the trainer can train, or None when the budget is spent.

        A proposal the trainer rejects (``check_params`` here, or its training's ``screen``
        in the worker) is recorded as a ``rejected`` trial with its reason, told to the
        searcher so it learns to avoid the region (a failure; a screened-out one as
        ``_told`` says: its J, or infeasible with its constraint values), and does not count against
        ``num_trials``. After ``MAX_CONSECUTIVE_REJECTIONS`` in a row: RejectedSpaceError.
        """
        while True:
            if not self.source.proposals_left(self.n_counted):
                return None
            if self.rejected_in_a_row >= MAX_CONSECUTIVE_REJECTIONS:
                raise RejectedSpaceError(
                    f"the trainer rejected the last {MAX_CONSECUTIVE_REJECTIONS} proposals (latest: {self.last_rejection}); "
                    "narrow the search space in the sweep file so that most configurations are trainable"
                )
            tid = trial_id_of(self.next_index)
            self.next_index += 1
            self.n_counted += 1
            if self.references:
                params, origin = self.references.pop(0), "fixed"
                self.unsearched.add(tid)
            else:
                params = self.searcher.ask(tid)
                origin = "fixed" if any(dict(p) == params for p in self.cfg.points_to_evaluate) else self.cfg.searcher
            record = self.source.new_record(tid, params, origin)
            self.run.write_trial(record)
            state = self.trials[tid] = TrialState(record)
            reason = self.check_params(params, self.cfg.settings)
            if reason is None:
                return self._spec(record)
            self._record_end(state, self._spec(record), Event.REJECTED, 0, reason)
            self._rejected(reason)
            if tid not in self.unsearched:
                self.searcher.tell(tid, None, "fail")

    def _rejected(self, reason: str) -> None:
        """Count a rejection (it does not count against ``num_trials``)."""
        self.n_counted -= 1
        self.rejected_in_a_row += 1
        self.last_rejection = reason

    def _collect(self, finished: Finished) -> int:
        """Take in an ended attempt; return about how many rows it appended (at most one
        per epoch it trained, and its end)."""
        state = self.trials[finished.spec.trial_id]
        state.running = False
        self.n_running -= 1
        tid = state.record.trial_id
        if finished.outcome is not None:
            out = finished.outcome
            rows = max(out.epoch - state.epoch, 0) + 1
            state.event, state.epoch, state.value = out.event, out.epoch, out.value
            if out.event == Event.REJECTED.value:  # screened out by the worker (Training.screen)
                self._rejected(f"{tid} screened out before its first epoch")
            else:
                self.rejected_in_a_row = 0
            if tid not in self.unsearched:
                if self.constraint_names:  # read as a resume's replay reads them: the last row
                    written = self.store.trial_rows(tid)
                    state.constraints = self._constraints(written[-1]) if written else {}
                self.searcher.tell(tid, *_told(out.event, out.value, state.constraints))
            return rows
        # The last disk-full line: a chained traceback names the file only in the error
        # raised last (atomic._naming re-raises the write's own error with it).
        full = next(reversed(list(_DISK_FULL.finditer(finished.error or ""))), None)
        if full is not None:
            # Not the trial's fault: retrying would burn its retries and record it as failed.
            # Stop the sweep; it is resumable once there is room (the attempt is not counted).
            # The file the attempt was writing, where its error names one (atomic._naming):
            # the full file system may be another than the run's (a cache, a data root).
            raise OSError(errno.ENOSPC, "No space left on device (in a trial attempt)", full.group(1) or str(self.run.path))
        record = dataclasses.replace(state.record, attempt=state.record.attempt + 1)
        state.record = record
        self.run.write_trial(record)
        if record.attempt <= self.cfg.backend.max_retries:
            self.queue.appendleft(self._spec(record))
            return 1
        epoch = max((int(r["epoch"]) for r in self.store.trial_rows(tid)), default=0)
        self._record_end(state, finished.spec, Event.FAILED, epoch, (finished.error or "unknown error").strip())
        if tid not in self.unsearched:
            self.searcher.tell(tid, None, "fail")
        return 1

    def _record_end(self, state: TrialState, spec: TrialSpec, event: Event, epoch: int, error: str) -> None:
        """Append the driver's terminal row for a trial (``failed``, ``rejected``; ``spec`` is
        its last attempt) unless a terminal row of it is recorded already (a killed driver's
        orphaned attempt may have finished it): the store keeps one terminal event per trial,
        and so does the state."""
        row = driver_row(self.cfg, spec, event, epoch, error, self.clock.now())
        if self.store.append([row], key=row_key(state.record.trial_id, event.value, epoch)) is None:
            rows = self.store.trial_rows(state.record.trial_id)
            last = next(r for r in reversed(rows) if r["event"] in TERMINAL_EVENTS)
            state.event, state.epoch = last["event"], int(last["epoch"])
            return
        state.event, state.epoch = event.value, epoch

    # -- progress --------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        counts: Counter[str] = Counter()
        for t in self.trials.values():
            if t.running:
                counts["running"] += 1
            else:  # not yet started, or resumable (last event a report): both wait for a slot
                counts["queued" if t.event in (None, Event.REPORT.value) else t.event] += 1
        # The report's rule (orchestrator/ranking.py), over the trials whose end is known.
        valued = [t for t in self.trials.values() if t.value is not None and not math.isnan(t.value) and t.event != Event.DIVERGED.value]
        best = min(valued, key=lambda t: rank_key(t.record.trial_id, t.epoch, t.value, self.cfg.asha.mode), default=None)
        return Snapshot(
            counts=dict(counts),
            num_trials=self.source.budget(self.trials),
            elapsed_s=self.clock.seconds() - self.started,
            best_trial=best.record.trial_id if best else None,
            best_value=best.value if best else None,
            best_params=dict(best.record.params) if best else {},
            metric=self.cfg.asha.metric,
            notices=tuple(self._notices.latest),
        )

    def _update(self, force: bool = False) -> None:
        if self.on_update is None:
            return
        now = self.clock.seconds()
        if force or now - self._last_update >= 0.25:
            self._last_update = now
            self.on_update(self.snapshot())
