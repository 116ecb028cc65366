"""Ray backend: trial attempts run on a pool of Ray actors, one attempt at a time each.

Ray is only the execution engine: the driver still proposes, decides, retries and stores;
nothing of Ray Tune is used. Each actor is a long-lived worker process holding
``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction such as 0.25 packs four
trials onto one GPU; Ray sets ``CUDA_VISIBLE_DEVICES``) and runs the same ``run_trial`` as
every backend, attempt after attempt, so imports and the store's read cache are paid once.

Actors rather than tasks: the two cost the same on a zero-cost sweep (200 trials, measured),
but a worker process that Ray reuses across GPU *tasks* keeps the CUDA context of its first
one while Ray hands it other devices, which is why Ray does not reuse GPU task workers by
default; an actor keeps its devices for life.

An attempt is handed to an actor only once that actor has started. An actor that cannot be
placed (its node is gone and no other node has room) then just waits, holding nothing,
while queued attempts go to the actors that run — no attempt is stuck behind it.

Failures: an exception in the trainer comes back as its traceback; a worker process, actor or
node that dies comes back as the Ray error that says so (the actor is discarded and replaced),
and the driver retries from the last checkpoint. Ray's own retries are off so that
``backend.max_retries`` is the only count. A driver that loses its cluster (the GCS stops
answering) raises :class:`RayConnectionLost` telling the user how to resume, instead of being
terminated by Ray without a word a minute later.

Every node must have kdsweep installed (the same version) and see the run directory at the
same path (shared storage): workers read the frozen config and write results and
checkpoints there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import traceback
from collections import deque
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from kdsweep.orchestrator.backends import Finished
from kdsweep.orchestrator.backends.ray_spec import ray_options
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.worker import NODE_ENV, TrialOutcome, TrialSpec, run_trial

# Ray terminates a driver whose GCS has not answered for this many seconds (Ray's default;
# the RAY_gcs_rpc_server_reconnect_timeout_s environment variable changes it).
_RAY_GCS_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
_RAY_GCS_RECONNECT_DEFAULT_S = 60.0
# Seconds between two probes of the GCS while nothing looks wrong.
_PROBE_EVERY_S = 1.0


class RayConnectionLost(ConnectionError):
    """The driver lost its Ray cluster; the run directory holds everything needed to resume."""


class _TrialRunner:
    """The actor: one worker process on one node that runs attempts one after the other."""

    def __init__(self, cwd: str) -> None:
        # Relative paths in a sweep file (datasets, caches) mean what they meant to the driver
        # when the driver's directory exists on this node (shared storage).
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.node = ray.get_runtime_context().get_node_id()
        # The worker records it: several nodes of one machine share a host name.
        os.environ[NODE_ENV] = self.node

    def node_id(self) -> str:
        """Answers once the actor has started (the backend's readiness probe)."""
        return self.node

    def run(self, spec: TrialSpec) -> tuple[bool, TrialOutcome | str]:
        """``(True, outcome)``, or ``(False, traceback)`` when the attempt raised: the
        traceback is the trainer's, not wrapped in Ray's task error."""
        try:
            return True, run_trial(spec)
        except BaseException:  # noqa: BLE001 - every failure must reach the driver
            return False, traceback.format_exc()


_Runner: Any = ray.remote(_TrialRunner)


@dataclasses.dataclass
class _Member:
    """One actor of the pool and the attempt it runs, if any."""

    handle: Any
    #: The readiness probe until the actor has started, then None.
    starting: Any
    spec: TrialSpec | None = None
    ref: Any = None
    since: float = 0.0


def _ray_gcs_reconnect_s() -> float:
    try:
        return float(os.environ.get(_RAY_GCS_RECONNECT_ENV, _RAY_GCS_RECONNECT_DEFAULT_S))
    except ValueError:
        return _RAY_GCS_RECONNECT_DEFAULT_S


class RayBackend:
    """Runs attempts on up to ``slots`` Ray actors of ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs each; ``timeout_s`` bounds one attempt.

    Connects this process to Ray unless it already is: ``address`` None (or "local") starts a
    local Ray instance with every core of this machine, "auto" or "host:port" joins a running
    cluster.
    ``close`` ends the connection only if this backend made it (or it was lost).
    """

    def __init__(
        self,
        slots: int,
        *,
        cpus_per_trial: int = 1,
        gpus_per_trial: float = 0.0,
        timeout_s: float = float("inf"),
        address: str | None = None,
    ) -> None:
        self.slots = slots
        self.timeout_s = timeout_s
        self._owns_connection = _connect(address)
        env_vars = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
        options: dict[str, Any] = {
            "num_cpus": cpus_per_trial,
            "num_gpus": gpus_per_trial,
            # kdsweep's retry accounting (backend.max_retries) is the only one.
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        self._runner = _Runner.options(**options)
        self._cwd = os.getcwd()
        self._members: list[_Member] = []
        self._queue: deque[TrialSpec] = deque()  # submitted, waiting for a started actor
        # Failures seen while the GCS did not answer: if the cluster is gone they are not the
        # trials' fault and must not use up their retries; reported once the GCS answers.
        self._held: list[Finished] = []
        self._gcs = ray.get_runtime_context().gcs_address
        # Declare the cluster lost well before Ray would terminate this process for it, and
        # late enough for a fault-tolerant GCS to come back.
        self._lost_after_s = _ray_gcs_reconnect_s() / 2
        self._down_since: float | None = None
        self._probed_at = -float("inf")
        self._run_dir: str | None = None
        self._lost = False
        self._closed = False

    @classmethod
    def from_config(cls, cfg: SweepConfig) -> RayBackend:
        b = cfg.backend
        return cls(
            b.max_concurrent, cpus_per_trial=b.cpus_per_trial, gpus_per_trial=b.gpus_per_trial,
            timeout_s=b.timeout_min * 60, address=ray_options(cfg).address,
        )  # fmt: skip

    # -- the Backend protocol ---------------------------------------------------------------

    def adopt(self, spec: TrialSpec) -> bool:
        """Trial actors belong to their driver and end with it: nothing to re-attach to."""
        return False

    def submit(self, spec: TrialSpec) -> None:
        """Queue an attempt; it starts as soon as an actor is free (created if needed)."""
        if self._closed:
            raise RuntimeError("this Ray backend is closed")
        if self.busy() >= self.slots:
            raise RuntimeError(f"all {self.slots} Ray slots are busy; the driver must wait first")
        # Workers run elsewhere, in another directory: they need the absolute path.
        self._run_dir = os.path.abspath(spec.run_dir)
        self._queue.append(spec)
        self._dispatch()

    def busy(self) -> int:
        """Attempts submitted and not yet reported."""
        running = sum(1 for m in self._members if m.spec is not None)
        return running + len(self._queue) + len(self._held)

    def wait(self, timeout_s: float) -> list[Finished]:
        if self.busy() == 0:
            return []
        watched = {m.ref: m for m in self._members if m.ref is not None}
        watched.update({m.starting: m for m in self._members if m.starting is not None})
        limit = timeout_s
        running = [m for m in self._members if m.spec is not None]
        if running:
            deadline = min(m.since for m in running) + self.timeout_s
            limit = max(0.0, min(timeout_s, deadline - time.monotonic()))
        if watched:
            refs = list(watched)
            ready, _ = ray.wait(refs, num_returns=1, timeout=limit)
            if ready:  # collect everything else that has ended too
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        else:  # only held failures: wait for the GCS to answer or to be declared lost
            time.sleep(min(limit, _PROBE_EVERY_S))
            ready = []
        done: list[Finished] = []
        lost: list[Finished] = []  # ended by Ray, not by the trainer
        for ref in ready:
            member = watched[ref]
            if ref is member.starting:
                self._started(member, lost)
            else:
                self._ended(member, done, lost)
        now = time.monotonic()
        for member in list(self._members):
            if member.spec is not None and now - member.since > self.timeout_s:
                done.append(Finished(member.spec, None, f"timed out after {self.timeout_s / 60:.1f} min (backend.timeout_min)"))
                self._discard(member)
        self._held += lost
        if self._connected(force=bool(self._held)):
            done += self._held
            self._held = []
        self._dispatch()
        return done

    def cancel(self, trial_id: str) -> None:
        self._queue = deque(s for s in self._queue if s.trial_id != trial_id)
        self._held = [f for f in self._held if f.spec.trial_id != trial_id]
        for member in list(self._members):
            if member.spec is not None and member.spec.trial_id == trial_id:
                # Killing the actor is the only way to stop a running actor call.
                self._discard(member)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._lost:
            for member in self._members:
                ray.kill(member.handle, no_restart=True)
        self._members.clear()
        self._queue.clear()
        self._held.clear()
        # A lost connection is ended too: Ray would otherwise terminate this process later.
        if self._owns_connection or self._lost:
            ray.shutdown()

    # -- the pool ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued attempts to started idle actors; start actors for the rest."""
        for member in self._members:
            if not self._queue:
                return
            if member.starting is None and member.spec is None:
                spec = self._queue.popleft()
                shipped = dataclasses.replace(spec, run_dir=os.path.abspath(spec.run_dir))
                member.spec, member.ref, member.since = spec, member.handle.run.remote(shipped), time.monotonic()
        starting = sum(1 for m in self._members if m.starting is not None)
        while len(self._members) < self.slots and starting < len(self._queue):
            handle = self._runner.remote(self._cwd)
            self._members.append(_Member(handle, handle.node_id.remote()))
            starting += 1

    def _started(self, member: _Member, lost: list[Finished]) -> None:
        try:
            ray.get(member.starting)
        except RayError as exc:
            # The actor could not start (its node died, or kdsweep does not import there).
            # The attempt first in line pays with one of its retries, so a cluster that can
            # never start a worker ends the sweep with failures instead of hanging it.
            self._discard(member)
            if self._queue:
                spec = self._queue.popleft()
                lost.append(Finished(spec, None, f"a Ray worker for {spec.trial_id} could not start: {_describe(exc)}"))
            return
        member.starting = None

    def _ended(self, member: _Member, done: list[Finished], lost: list[Finished]) -> None:
        spec = member.spec
        if spec is None:
            return
        try:
            ok, payload = ray.get(member.ref)
        except RayTaskError as exc:  # the result could not travel back
            done.append(Finished(spec, None, _describe(exc)))
            self._discard(member)
            return
        except RayError as exc:
            message = f"the Ray worker running {spec.trial_id} was lost: {_describe(exc)}"
            lost.append(Finished(spec, None, message))
            self._discard(member)
            return
        member.spec, member.ref = None, None
        done.append(Finished(spec, payload, None) if ok else Finished(spec, None, payload))

    def _discard(self, member: _Member) -> None:
        """Remove an actor from the pool and make sure it is gone: one whose call failed may
        still be running the attempt, which its retry would then duplicate."""
        self._members.remove(member)
        ray.kill(member.handle, no_restart=True)

    # -- the connection ---------------------------------------------------------------------

    def _connected(self, force: bool) -> bool:
        """Whether the GCS answers (probed at most every second unless ``force``). Raises
        :class:`RayConnectionLost` once it has not answered for ``_lost_after_s``."""
        now = time.monotonic()
        if not force and now - self._probed_at < _PROBE_EVERY_S:
            return self._down_since is None
        self._probed_at = now
        if _answers(self._gcs):
            self._down_since = None
            return True
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= self._lost_after_s:
            self._lost = True
            run_dir = self._run_dir or "RUN_DIR"
            raise RayConnectionLost(
                f"lost the connection to the Ray cluster (its GCS at {self._gcs} has not answered for "
                f"{now - self._down_since:.0f} s); the attempts running there are gone. Everything "
                f"recorded is kept in {run_dir}. Once the cluster is back, or with another one, continue "
                f"with: kdsweep launch --resume {run_dir}  (add --set backend.ray.address=HOST:PORT if "
                f"its address changed)"
            )
        return False


def _connect(address: str | None) -> bool:
    """Connect this process to Ray unless it already is; True when this call connected."""
    if ray.is_initialized():
        return False
    # Ray's INFO lines ("Started a local Ray instance") would break the live view.
    quiet = logging.WARNING
    if address is None or address == "local":
        # "local" (Ray's word; a way to resume on this machine a run launched on a cluster,
        # as --set cannot unset the address): a new instance even when RAY_ADDRESS or a
        # `ray start` of this machine names another. Every core this process may use.
        ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, logging_level=quiet)
        return True
    hint = "start one with `ray start --head`, or leave the address unset to start a local one"
    # Ray retries an address where nothing listens for minutes; a refused connection is final.
    if address != "auto" and not _answers(address):
        raise ConnectionError(f"backend.ray.address = {address!r}: no Ray cluster answers there; {hint}")
    try:
        ray.init(address=address, logging_level=quiet)
    except ConnectionError as exc:
        raise ConnectionError(f"backend.ray.address = {address!r}: no Ray cluster could be joined there ({exc}); {hint}") from exc
    return True


def _answers(address: str) -> bool:
    """Whether something accepts TCP connections at ``host:port`` within a second."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
    except (OSError, ValueError):
        return False
    return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()
