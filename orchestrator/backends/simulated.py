"""Simulated backend: attempts run in this process on a virtual clock.

Each attempt is the worker's own generator (``worker.attempt_steps``): the very code that
trains, reports, checkpoints and takes ASHA decisions on a real backend, against the real
Parquet store. Between two steps the backend moves the virtual clock by the epoch's
duration (``epoch_seconds(spec, epoch)``), interleaving up to ``slots`` attempts in the
order their epochs would end on a cluster. Waiting costs nothing: :meth:`wait` jumps the
clock to the next event and returns as soon as an attempt ends (``timeout_s`` is not
needed to bound real time). Events at the same virtual instant run in submission order,
so a simulation is a pure function of the sweep, its seed and the durations.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import traceback
from collections.abc import Callable, Generator

from kdsweep.orchestrator.backends import Finished
from kdsweep.orchestrator.clock import VirtualClock
from kdsweep.orchestrator.worker import TrialOutcome, TrialSpec, attempt_steps
from kdsweep.trainers.base import TrainerFactory


@dataclasses.dataclass
class _Running:
    spec: TrialSpec
    steps: Generator[int, None, TrialOutcome]
    started: float
    #: Virtual seconds of the epochs this attempt trained (its share of the busy time).
    busy_s: float = 0.0


class SimulatedBackend:
    """Runs attempts on ``clock``; ``epoch_seconds(spec, epoch)`` is how long an epoch takes;
    ``timeout_s`` bounds one attempt in virtual seconds, as ``backend.timeout_min`` does;
    ``make_trainer`` builds each attempt's trainer (default: the sweep's trainer class)."""

    def __init__(
        self,
        slots: int,
        clock: VirtualClock,
        epoch_seconds: Callable[[TrialSpec, int], float],
        timeout_s: float = float("inf"),
        make_trainer: TrainerFactory | None = None,
    ) -> None:
        self.slots = slots
        self.vclock = clock
        self.epoch_seconds = epoch_seconds
        self.timeout_s = timeout_s
        self.make_trainer = make_trainer
        self._running: dict[str, _Running] = {}
        # (virtual time, sequence, trial id, attempt object id): the next step of an attempt.
        self._events: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        #: Virtual seconds all attempts spent training (for GPU-hours).
        self.busy_s = 0.0
        #: Epochs all attempts trained.
        self.epochs = 0

    def submit(self, spec: TrialSpec) -> None:
        if len(self._running) >= self.slots:
            raise RuntimeError(f"all {self.slots} simulated slots are busy; the driver must wait first")
        run = _Running(spec, attempt_steps(spec, self.vclock.clock, self.make_trainer), self.vclock.t)
        self._running[spec.trial_id] = run
        self._push(self.vclock.t, run)

    def adopt(self, spec: TrialSpec) -> bool:
        """Nothing outlives a simulated driver: every resumed trial is submitted afresh."""
        return False

    def busy(self) -> int:
        return len(self._running)

    def _push(self, t: float, run: _Running) -> None:
        heapq.heappush(self._events, (t, next(self._seq), run.spec.trial_id, id(run)))

    def wait(self, timeout_s: float) -> list[Finished]:
        """Advance the clock event by event until an attempt ends (or none is left)."""
        done: list[Finished] = []
        while self._events and not done:
            t, _, trial_id, token = heapq.heappop(self._events)
            run = self._running.get(trial_id)
            if run is None or id(run) != token:
                continue  # cancelled
            self.vclock.advance_to(t)
            if t - run.started >= self.timeout_s:
                done.append(self._end(run, None, f"timed out after {self.timeout_s / 60:.1f} min (backend.timeout_min)"))
                continue
            try:
                epoch = next(run.steps)
            except StopIteration as end:
                done.append(self._end(run, end.value, None))
                continue
            except Exception:  # noqa: BLE001 - as a worker process reports any failure
                done.append(self._end(run, None, traceback.format_exc()))
                continue
            seconds = self.epoch_seconds(run.spec, epoch)
            run.busy_s += seconds
            self.busy_s += seconds
            self.epochs += 1
            # An epoch that would run past the attempt's time limit ends it at the limit.
            self._push(min(t + seconds, run.started + self.timeout_s), run)
        return done

    def _end(self, run: _Running, outcome: TrialOutcome | None, error: str | None) -> Finished:
        del self._running[run.spec.trial_id]
        run.steps.close()
        return Finished(run.spec, outcome, error)

    def cancel(self, trial_id: str) -> None:
        run = self._running.pop(trial_id, None)
        if run is not None:
            run.steps.close()

    def close(self) -> None:
        for trial_id in list(self._running):
            self.cancel(trial_id)
