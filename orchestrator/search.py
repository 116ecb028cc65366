"""Hyperopt search behind an ask/tell interface: where the driver gets trial parameters.

hyperopt only offers ``fmin``, which owns the loop and calls the objective itself. A sweep
driver instead hands proposals to backends and learns results later, out of order, possibly
in another process after a restart. ``Searcher`` therefore drives hyperopt's algorithms the way
``fmin`` does internally (``FMinIter.run``): it keeps one ``Domain`` and one ``Trials``, asks the
algorithm for a document with ``algo(new_ids, domain, trials, seed)``, and records results by
editing the trial documents in place.

Invariants the rest of kdsweep relies on:

* Every trial document's ``misc.vals`` is the encoding of the parameters the driver was given
  (choice → index, everything else → float), whether the trial was searched, a fixed point or
  replayed from the store. The hyperopt state is thus a function of (params, told value) per
  trial, so a searcher rebuilt by ``replay`` sees exactly what the original one saw.
* Proposals are plain Python scalars of the parameter's declared type (``ParamSpec.arrow_type``),
  inside the declared bounds, so they go into the results schema without casts.
* hyperopt never sees a NaN or infinite loss: such values are recorded as failures.

A ``Searcher`` is not thread-safe; the driver calls it from its one loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
from hyperopt import hp, rand, tpe
from hyperopt.base import (
    JOB_STATE_DONE,
    JOB_STATE_RUNNING,
    STATUS_FAIL,
    STATUS_NEW,
    STATUS_OK,
    Domain,
    Trials,
)
from hyperopt.pyll import scope

from kdsweep.orchestrator.space import Codec, ParamSpec, missing_and_unknown

Algorithm = Literal["tpe", "random"]
Mode = Literal["max", "min"]
TellStatus = Literal["ok", "fail"]

def _hyperopt_expr(spec: ParamSpec) -> Any:
    if spec.kind == "choice":
        return hp.choice(spec.name, list(Codec.of(spec).options))
    low, high = spec._bounds()
    if spec.kind == "uniform":
        return hp.uniform(spec.name, low, high)
    if spec.kind == "loguniform":
        return hp.loguniform(spec.name, math.log(low), math.log(high))
    if spec.kind == "int":
        # hp.uniformint rounds u in [low, high), giving the end points half the mass; widening by
        # half a step makes every integer equally likely. hyperopt samples the lower bound
        # inclusively and np.round(low - 0.5) may round down, so start one ulp above it.
        return scope.int(
            hp.quniform(spec.name, math.nextafter(low - 0.5, math.inf), high + 0.5, 1)
        )
    # quniform, the only kind left.
    return hp.quniform(spec.name, low, high, spec._step())


def hyperopt_space(space: Sequence[ParamSpec]) -> dict[str, Any]:
    """The hyperopt search space of ``space``: ``{name: hp expression}``.

    ``hyperopt.space_eval(hyperopt_space(space), {name: misc.vals[name][0]})`` gives the same
    params as the Searcher hands out for that trial.
    """
    return {spec.name: _hyperopt_expr(spec) for spec in space}


class Searcher:
    """Ask/tell over hyperopt's TPE or random search.

    ``ask`` first returns the ``points_to_evaluate`` in order (normalised to the declared types:
    an int given for a float parameter comes back as a float), then searched proposals. TPE
    starts modelling once ``n_startup_trials`` trials have been told a finite value; until then
    proposals are random. (hyperopt's own counter includes pending trials, which in a parallel
    sweep would hand TPE a model built from nothing but unfinished, infinite-loss trials.)
    Pending and failed trials stay visible to TPE with an infinite loss, as in hyperopt's
    asynchronous mode, which steers it away from points already being evaluated.

    Determinism: every searched proposal (and every replayed non-fixed trial) draws one
    algorithm seed from ``numpy.random.default_rng(seed)``. The same seed and the same sequence
    of calls therefore give the same proposals, and a searcher rebuilt by replaying a run's
    trials in proposal order continues the original seed stream: its next proposal equals the
    one the original searcher would have made with the same results told.
    """

    def __init__(
        self,
        space: Sequence[ParamSpec],
        algorithm: Algorithm,
        seed: int,
        mode: Mode,
        points_to_evaluate: Sequence[Mapping[str, Any]] = (),
        n_startup_trials: int = 10,
    ) -> None:
        if not space:
            raise ValueError("the search space must have at least one parameter")
        names = [spec.name for spec in space]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate parameter names in the search space: {duplicates}")
        if algorithm not in get_args(Algorithm):
            raise ValueError(f"algorithm must be one of {get_args(Algorithm)}, got {algorithm!r}")
        if mode not in get_args(Mode):
            raise ValueError(f"mode must be one of {get_args(Mode)}, got {mode!r}")
        if n_startup_trials < 1:
            # TPE needs at least one told value to split good from bad.
            raise ValueError(f"n_startup_trials must be >= 1, got {n_startup_trials!r}")
        self._codecs = tuple(Codec.of(spec) for spec in space)
        self._algorithm = algorithm
        self._mode = mode
        self._n_startup_trials = n_startup_trials
        self._points = [self._normalise_params(p) for p in points_to_evaluate]
        self._consumed = [False] * len(self._points)
        self._rng = np.random.default_rng(seed)
        # The objective is never evaluated through hyperopt, so the domain has no function; it
        # is built once because vectorising the space costs more than a random proposal.
        self._domain = Domain(None, hyperopt_space(space))
        self._trials = Trials()
        # trial_id → its document inside self._trials, edited in place by tell.
        self._docs: dict[str, dict[str, Any]] = {}

    @property
    def trials(self) -> Trials:
        """hyperopt's record of every trial (losses are minimised), for inspection only."""
        return self._trials

    def ask(self, trial_id: str) -> dict[str, Any]:
        """The parameters for a new trial ``trial_id`` (ValueError if the id is taken).

        The next unconsumed fixed point if any, else a proposal of the algorithm. The trial is
        pending until told.
        """
        self._check_new(trial_id)
        (tid,) = self._trials.new_trial_ids(1)
        point = self._next_point()
        if point is not None:
            self._consumed[point] = True
            params = dict(self._points[point])
        else:
            params = self._propose(tid)
        self._insert(trial_id, tid, params)
        return params

    def tell(self, trial_id: str, value: float | None, status: TellStatus = "ok") -> None:
        """Record ``trial_id``'s objective value; a later tell replaces an earlier one.

        ``status="ok"`` needs a value; a NaN or infinite one is recorded as a failure.
        ``status="fail"`` records a failure whatever ``value`` is. KeyError for an unknown id.
        """
        if trial_id not in self._docs:
            raise KeyError(f"unknown trial {trial_id!r}")
        self._record(trial_id, self._result(value, status))

    def replay(
        self,
        trial_id: str,
        params: Mapping[str, Any],
        value: float | None,
        status: TellStatus = "ok",
    ) -> None:
        """Re-insert a trial proposed by an earlier driver process, from the results store.

        ``value=None`` with ``status="ok"`` leaves the trial pending; otherwise it is told as
        by ``tell``. ``params`` must be a valid point of the space (ValueError otherwise). A
        trial whose params equal an unconsumed fixed point consumes the earliest such point, so
        it is not proposed again; replaying trials in their original order also keeps the
        seed stream aligned with the original run (see the class docstring).
        """
        self._check_new(trial_id)
        normalised = self._normalise_params(params)
        result = None if value is None and status == "ok" else self._result(value, status)
        point = next(
            (
                i
                for i, p in enumerate(self._points)
                if not self._consumed[i] and p == normalised
            ),
            None,
        )
        if point is not None:
            self._consumed[point] = True
        else:
            # The original ask of this trial drew a seed; draw it again to stay in step.
            self._next_seed()
        (tid,) = self._trials.new_trial_ids(1)
        self._insert(trial_id, tid, normalised)
        if result is not None:
            self._record(trial_id, result)

    def pending(self) -> list[str]:
        """Ids of trials asked or replayed but not told, in the order they were created."""
        return [t for t, doc in self._docs.items() if doc["state"] != JOB_STATE_DONE]

    def n_told(self) -> int:
        """How many trials have been told (ok or failed) at least once."""
        return sum(1 for doc in self._docs.values() if doc["state"] == JOB_STATE_DONE)

    def _n_ok(self) -> int:
        return sum(1 for doc in self._docs.values() if doc["result"]["status"] == STATUS_OK)

    def _check_new(self, trial_id: str) -> None:
        if trial_id in self._docs:
            raise ValueError(f"trial {trial_id!r} already exists")

    def _next_point(self) -> int | None:
        return next((i for i, used in enumerate(self._consumed) if not used), None)

    def _next_seed(self) -> int:
        # Same range as fmin draws for its algorithms.
        return int(self._rng.integers(2**31 - 1))

    def _normalise_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        names = [c.spec.name for c in self._codecs]
        missing, extra = missing_and_unknown(params, names)
        if missing or extra:
            raise ValueError(
                f"params must set exactly the space's parameters {names};"
                f" missing {missing}, unknown {extra}"
            )
        return {c.spec.name: c.normalise(params[c.spec.name]) for c in self._codecs}

    def _propose(self, tid: int) -> dict[str, Any]:
        seed = self._next_seed()
        if self._algorithm == "random" or self._n_ok() < self._n_startup_trials:
            docs = rand.suggest([tid], self._domain, self._trials, seed)
        else:
            # Our startup phase is over (counted in told values), so TPE's own is disabled.
            docs = tpe.suggest(
                [tid], self._domain, self._trials, seed, n_startup_jobs=0, verbose=False
            )
        vals = docs[0]["misc"]["vals"]
        return {c.spec.name: c.decode(vals[c.spec.name][0]) for c in self._codecs}

    def _insert(self, trial_id: str, tid: int, params: Mapping[str, Any]) -> None:
        """Add a pending trial document with hyperopt id ``tid`` for normalised ``params``.

        The document is built from ``params`` rather than taken from the algorithm, so that
        ``misc.vals`` is always the encoding of what the driver was given (module invariant).
        """
        misc = {
            "tid": tid,
            "cmd": self._domain.cmd,
            "workdir": None,
            "idxs": {c.spec.name: [tid] for c in self._codecs},
            "vals": {c.spec.name: [c.encode(params[c.spec.name])] for c in self._codecs},
        }
        (doc,) = self._trials.new_trial_docs([tid], [None], [{"status": STATUS_NEW}], [misc])
        doc["state"] = JOB_STATE_RUNNING
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        self._docs[trial_id] = self._trials.trials[-1]

    def _record(self, trial_id: str, result: dict[str, Any]) -> None:
        # In place: the same dict sits in trials.trials, which the algorithms read.
        doc = self._docs[trial_id]
        doc["result"] = result
        doc["state"] = JOB_STATE_DONE

    def _result(self, value: float | None, status: TellStatus) -> dict[str, Any]:
        """hyperopt's result dict for a tell (ValueError for a bad status or a missing value)."""
        if status not in get_args(TellStatus):
            raise ValueError(f"status must be one of {get_args(TellStatus)}, got {status!r}")
        if status == "fail":
            return {"status": STATUS_FAIL}
        if value is None:
            raise ValueError("status 'ok' needs a value; tell status='fail' for a failed trial")
        if not math.isfinite(value):
            # hyperopt must never see NaN (its sorts break) nor ±inf (a "perfect" loss).
            return {"status": STATUS_FAIL}
        return {"status": STATUS_OK, "loss": -float(value) if self._mode == "max" else float(value)}
