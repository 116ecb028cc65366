"""Local backend: a fixed set of long-lived worker processes on this machine.

One process per slot runs attempt after attempt (no process per trial, let alone per
report): imports, the frozen config and the store's read cache are paid for once. A worker
that dies (segfault, OOM kill, ``os._exit``) is noticed through its process sentinel, its
attempt is reported as failed with the exit code, and the slot gets a fresh process.

Workers die with the driver, however it ends (SIGKILL included): each holds the read end of
a pipe whose only write end lives in the driver, and a watchdog thread that sees it close
kills its process at once. (A parent-death signal would not do: workers are children of the
forkserver, not of the driver.) Should a worker outlive its driver all the same, the store
records each of its rows at most once (``Store.append(key=...)``), so a resumed driver racing
it repeats nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from kdsweep.orchestrator.backends import Finished
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.worker import TrialSpec, run_trial
from kdsweep.trainers.base import trainer_spec

def _die_with_driver(alive: Connection) -> None:
    """Kill this process as soon as the driver's end of ``alive`` closes (the driver ended,
    or closed this slot). SIGKILL, not an exception: the trial's main thread may be deep in
    a C call and must not get to append another row."""

    def watch() -> None:
        try:
            alive.recv()  # the driver never sends: this returns only by raising at EOF
        except (EOFError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="kdsweep-driver-watchdog", daemon=True).start()


def _serve(conn: Connection, alive: Connection) -> None:
    """Worker process main loop: receive a spec, run it, send back the outcome or the error."""
    _die_with_driver(alive)
    # Ctrl-C goes to the whole process group; the driver decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        try:
            conn.send(("ok", run_trial(spec)))
        except BaseException:  # noqa: BLE001 - every failure must reach the driver
            conn.send(("error", traceback.format_exc()))


class _Slot:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        # Only this process holds the write end (forkserver children do not inherit it).
        alive_r, self.alive = ctx.Pipe(duplex=False)
        self.proc: BaseProcess = ctx.Process(target=_serve, args=(child, alive_r), daemon=True)
        self.proc.start()
        child.close()
        alive_r.close()
        self.spec: TrialSpec | None = None
        self.since = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()
        self.alive.close()


class LocalBackend:
    """Runs attempts in ``slots`` worker processes; ``timeout_s`` bounds one attempt."""

    def __init__(self, slots: int, timeout_s: float = float("inf"), preload: Sequence[str] = ()) -> None:
        self.slots = slots
        self.timeout_s = timeout_s
        # forkserver, not fork: the driver has threads (live view) whose locks fork would copy.
        # The server imports the worker stack and ``preload`` (the trainer's training module:
        # torch, for the distillation trainers) once; each worker (and every replacement of a
        # crashed one) is then a cheap fork of it instead of a fresh interpreter paying
        # seconds of imports. A torch-free trainer's workers never import torch.
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["kdsweep.orchestrator.worker", *preload])
        self._workers: list[_Slot | None] = [None] * slots

    @classmethod
    def from_config(cls, cfg: SweepConfig) -> LocalBackend:
        preload = [trainer_spec(cfg.trainer).training_module()]
        return cls(cfg.backend.max_concurrent, timeout_s=cfg.backend.timeout_min * 60, preload=preload)

    def adopt(self, spec: TrialSpec) -> bool:
        """Local workers die with their driver: nothing to re-attach to."""
        return False

    def submit(self, spec: TrialSpec) -> None:
        for i, slot in enumerate(self._workers):
            if slot is not None and slot.spec is not None:
                # Busy, even if its process has died since the last wait: that death is its
                # attempt's end, which only wait reports. (Replacing the slot here lost the
                # attempt, and the driver waited for it forever.)
                continue
            if slot is None or not slot.proc.is_alive():
                if slot is not None:
                    slot.kill()
                slot = self._workers[i] = _Slot(self._ctx)
            slot.spec = spec
            slot.since = time.monotonic()
            slot.conn.send(spec)
            return
        raise RuntimeError(f"all {self.slots} local slots are busy; the driver must wait first")

    def busy(self) -> int:
        return sum(1 for s in self._workers if s is not None and s.spec is not None)

    def wait(self, timeout_s: float) -> list[Finished]:
        busy = [s for s in self._workers if s is not None and s.spec is not None]
        if not busy:
            return []
        deadline = min(s.since + self.timeout_s for s in busy)
        limit = max(0.0, min(timeout_s, deadline - time.monotonic()))
        handles: list[Any] = [s.conn for s in busy] + [s.proc.sentinel for s in busy]
        ready = set(wait(handles, timeout=limit))
        done: list[Finished] = []
        now = time.monotonic()
        for i, slot in enumerate(self._workers):
            if slot is None or slot.spec is None:
                continue
            spec = slot.spec
            if slot.conn in ready:
                try:
                    kind, payload = slot.conn.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                if kind == "ok":
                    done.append(Finished(spec, payload))
                    slot.spec = None
                    continue
                if kind == "error":
                    done.append(Finished(spec, None, payload))
                    slot.spec = None
                    continue
            if slot.conn in ready or slot.proc.sentinel in ready:
                slot.proc.join(timeout=5)
                code = slot.proc.exitcode
                done.append(Finished(spec, None, f"worker process died (exit code {code}) while running {spec.trial_id}"))
                slot.kill()
                self._workers[i] = None
            elif now - slot.since > self.timeout_s:
                done.append(Finished(spec, None, f"timed out after {self.timeout_s / 60:.1f} min (backend.timeout_min)"))
                slot.kill()
                self._workers[i] = None
        return done

    def cancel(self, trial_id: str) -> None:
        for i, slot in enumerate(self._workers):
            if slot is not None and slot.spec is not None and slot.spec.trial_id == trial_id:
                slot.kill()
                self._workers[i] = None

    def close(self) -> None:
        # Idle workers hold no state (results and checkpoints are on disk), and busy ones are
        # being abandoned: killing is safe, and joining a clean exit costs seconds per worker.
        for i, slot in enumerate(self._workers):
            if slot is not None:
                slot.kill()
                self._workers[i] = None
