"""Searchers behind one ask/tell interface: where the driver gets trial parameters.

Four algorithms, named by a sweep file's ``searcher`` (options in ``search_options``):

* ``tpe`` and ``random``: hyperopt's Tree-structured Parzen Estimator and random search;
* ``gp``: Optuna's ``GPSampler``, Gaussian-process Bayesian optimisation (Matérn-5/2 kernel,
  log expected improvement as the acquisition; qLogEI over the pending trials while some are
  running), after ``n_startup_trials`` random proposals: seed 002's GP-EI;
* ``ga``: Optuna's ``NSGAIISampler`` with one objective, a generational genetic algorithm
  (uniform crossover with probability 0.9, each parameter mutated with probability 1/n by
  resampling it, binary tournaments among the parents, elitist survival of the best
  ``population_size``): seed 002's GA. ``GenerationalNSGAII`` says how generations are counted.

A sweep driver hands proposals to backends and learns results later, out of order, possibly
in another process after a restart; neither hyperopt's ``fmin`` nor ``study.optimize`` fits
that, since both own the loop. ``Searcher`` keeps the parts every algorithm shares (fixed
points, the seed stream, trial ids, the sign of the objective, failures) and hands the rest to
one ``Algorithm`` chosen by name from ``ALGORITHMS``:

* ``HyperoptAlgorithm`` drives hyperopt the way ``fmin`` does internally (``FMinIter.run``): it
  keeps one ``Domain`` and one ``Trials``, asks the algorithm for a document with
  ``algo(new_ids, domain, trials, seed)``, and records results by editing the documents.
* ``OptunaAlgorithm`` asks an Optuna sampler through a study's ``ask``, but keeps no study: each
  proposal builds an in-memory study from its own record of the trials (parameters; pending,
  told or failed; value) and asks a sampler built for that proposal's seed. Optuna's samplers
  keep state that depends on *when* results arrived (NSGA-II fixes a trial's generation at its
  ask from how many results were in, and caches each generation's parents; GPSampler starts
  each kernel fit from the previous one), and a run records only what was proposed and how it
  ended. Rebuilt, a proposal is a function of (trials, seed), so a replayed searcher makes the
  same one; and a later tell can replace an earlier one, which an Optuna study forbids. The
  rebuild costs O(trials) per proposal. Measured (2026-11-29, a 2-core CPU shared with other
  work, 13 seven-way choices as in the VGG topology space): a ``ga`` proposal at 300 told
  trials 0.2-0.3 s, most of it the rebuild; a ``gp`` proposal at 150 told trials 9-35 s,
  nearly all of it Optuna's search of the acquisition over the categorical parameters. The
  driver proposes while its workers train (``Driver._prepare``), so this overlaps training.

Invariants the rest of kdsweep relies on:

* An algorithm's record of a trial is the encoding of the parameters the driver was given
  (choice → index, everything else → number), whether the trial was searched, a fixed point
  or replayed from the store. Its state is thus a function of (params, told value) per trial,
  in proposal order, so a searcher rebuilt by ``replay`` sees exactly what the original saw.
* Proposals are plain Python scalars of the parameter's declared type (``ParamSpec.arrow_type``),
  inside the declared bounds, so they go into the results schema without casts.
* No algorithm sees a NaN or infinite value: such values are recorded as failures. hyperopt
  keeps failed and pending trials in view with an infinite loss; Optuna's samplers model
  completed trials only (GPSampler also conditions on the pending ones).

A ``Searcher`` is not thread-safe; the driver calls it from its one loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, get_args

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
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler
from optuna.storages import InMemoryStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from kdsweep.orchestrator.search_options import resolve_options
from kdsweep.orchestrator.space import Codec, ParamSpec, missing_and_unknown

Mode = Literal["max", "min"]
TellStatus = Literal["ok", "fail"]


class _QuietStudyCreation(logging.Filter):
    """Drops Optuna's INFO line for each in-memory study created: ``OptunaAlgorithm`` creates
    one per proposal, which would print one line per trial in the driver's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("A new study created in memory")


# On the storage module's own logger, so nothing else Optuna says is hidden.
logging.getLogger("optuna.storages._in_memory").addFilter(_QuietStudyCreation())


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


def optuna_distribution(codec: Codec) -> BaseDistribution:
    """The Optuna distribution of a parameter, over the values ``codec.encode`` gives.

    A choice becomes a categorical over its indices: Optuna treats categoricals as unordered
    whatever their values (GPSampler by a Hamming distance in its kernel, NSGA-II by uniform
    crossover and resampling), so indices lose nothing and keep one encoding for all algorithms.
    """
    spec = codec.spec
    if spec.kind == "choice":
        return CategoricalDistribution(tuple(range(len(codec.options))))
    low, high = spec._bounds()
    if spec.kind == "int":
        return IntDistribution(int(low), int(high))
    if spec.kind == "loguniform":
        return FloatDistribution(low, high, log=True)
    if spec.kind == "quniform":
        return FloatDistribution(low, high, step=spec._step())
    return FloatDistribution(low, high)


class Algorithm(Protocol):
    """One search algorithm's record of the trials, and its proposals.

    Values are losses: the searcher flips their sign for ``mode = "max"``, so algorithms always
    minimise. Handles are consecutive from 0, in the order trials were added.
    """

    def propose(self, seed: int) -> dict[str, Any]:
        """Normalised parameters for the next trial, from the trials so far and ``seed``; the
        searcher then adds them with ``add`` (a proposal alone records nothing)."""
        ...

    def add(self, params: Mapping[str, Any]) -> int:
        """Record a pending trial with normalised ``params``; its handle."""
        ...

    def record(self, handle: int, loss: float | None) -> None:
        """Record trial ``handle``'s finite loss, or its failure (None), replacing any earlier."""
        ...


class HyperoptAlgorithm:
    """hyperopt's random search (``n_startup_trials=None``) or TPE after ``n_startup_trials``
    trials have been told a finite value (random proposals until then).

    hyperopt's own startup counter includes pending trials, which in a parallel sweep would
    hand TPE a model built from nothing but unfinished, infinite-loss trials; so the count here
    is of told values and TPE's own is disabled. Pending and failed trials stay visible to TPE
    with an infinite loss, as in hyperopt's asynchronous mode, which steers it away from points
    already being evaluated.
    """

    def __init__(self, codecs: Sequence[Codec], n_startup_trials: int | None) -> None:
        self._codecs = tuple(codecs)
        self._n_startup_trials = n_startup_trials
        # The objective is never evaluated through hyperopt, so the domain has no function; it
        # is built once because vectorising the space costs more than a random proposal.
        self._domain = Domain(None, hyperopt_space([c.spec for c in codecs]))
        #: hyperopt's record of every trial (losses are minimised), for inspection only.
        self.trials = Trials()
        # Each trial's document inside self.trials, by handle, edited in place by record.
        self._docs: list[dict[str, Any]] = []
        # How many of them hold a finite loss: kept by record, so a proposal is not a scan.
        self._n_ok = 0

    def propose(self, seed: int) -> dict[str, Any]:
        # The id ``add`` will give the trial (hyperopt numbers its trials 0, 1, ...); it only
        # labels the document, the proposal does not depend on it.
        tid = len(self._docs)
        if self._n_startup_trials is None or self._n_ok < self._n_startup_trials:
            docs = rand.suggest([tid], self._domain, self.trials, seed)
        else:
            docs = tpe.suggest(
                [tid], self._domain, self.trials, seed, n_startup_jobs=0, verbose=False
            )
        vals = docs[0]["misc"]["vals"]
        return {c.spec.name: c.decode(vals[c.spec.name][0]) for c in self._codecs}

    def add(self, params: Mapping[str, Any]) -> int:
        """The document is built from ``params`` rather than taken from the algorithm, so that
        ``misc.vals`` is always the encoding of what the driver was given (module invariant)."""
        (tid,) = self.trials.new_trial_ids(1)
        misc = {
            "tid": tid,
            "cmd": self._domain.cmd,
            "workdir": None,
            "idxs": {c.spec.name: [tid] for c in self._codecs},
            "vals": {c.spec.name: [c.encode(params[c.spec.name])] for c in self._codecs},
        }
        (doc,) = self.trials.new_trial_docs([tid], [None], [{"status": STATUS_NEW}], [misc])
        doc["state"] = JOB_STATE_RUNNING
        self.trials.insert_trial_docs([doc])
        self.trials.refresh()
        self._docs.append(self.trials.trials[-1])
        return len(self._docs) - 1

    def record(self, handle: int, loss: float | None) -> None:
        # In place: the same dict sits in trials.trials, which the algorithms read.
        doc = self._docs[handle]
        self._n_ok += (loss is not None) - (doc["result"]["status"] == STATUS_OK)
        doc["result"] = {"status": STATUS_FAIL} if loss is None else {"status": STATUS_OK, "loss": loss}
        doc["state"] = JOB_STATE_DONE


class OptunaAlgorithm:
    """An Optuna sampler, built by ``sampler(seed)`` for each proposal, asked through an
    in-memory study rebuilt from the trials recorded here (see the module docstring)."""

    def __init__(self, codecs: Sequence[Codec], sampler: Callable[[int], BaseSampler]) -> None:
        self._codecs = tuple(codecs)
        self._sampler = sampler
        self._distributions = {c.spec.name: optuna_distribution(c) for c in codecs}
        # By handle: the encoded parameters, the state (RUNNING, COMPLETE or FAIL), the loss.
        self._params: list[dict[str, Any]] = []
        self._results: list[tuple[TrialState, float | None]] = []

    def propose(self, seed: int) -> dict[str, Any]:
        storage = InMemoryStorage()
        name = "kdsweep"
        storage.create_new_study([StudyDirection.MINIMIZE], name)
        study = Study(study_name=name, storage=storage, sampler=self._sampler(seed))
        study.add_trials(self.frozen_trials())
        trial = study.ask(self._distributions)
        return {c.spec.name: c.decode(trial.params[c.spec.name]) for c in self._codecs}

    def frozen_trials(self) -> list[FrozenTrial]:
        """The trials as the sampler sees them, in handle order (trial number = handle):
        RUNNING while pending, COMPLETE with the loss, or FAIL."""
        return [
            create_trial(state=state, value=loss, params=params, distributions=self._distributions)
            for params, (state, loss) in zip(self._params, self._results)
        ]

    def add(self, params: Mapping[str, Any]) -> int:
        self._params.append({c.spec.name: c.encode(params[c.spec.name]) for c in self._codecs})
        self._results.append((TrialState.RUNNING, None))
        return len(self._params) - 1

    def record(self, handle: int, loss: float | None) -> None:
        self._results[handle] = (TrialState.FAIL, None) if loss is None else (TrialState.COMPLETE, loss)


class GenerationalNSGAII(NSGAIISampler):
    """NSGA-II in which trial number n belongs to generation n // ``population_size``.

    Optuna's NSGA-II gives a trial the newest generation at its ask, or the next one once
    ``population_size`` trials of the newest have completed: in an asynchronous sweep that
    depends on timing, which no run records, so a resumed searcher could not know which
    generation each trial was in. Counting by proposal order makes generations a function of
    the trial list: generation g is proposals g·P .. g·P + P − 1, its parents are NSGA-II's
    elite over the earlier generations' completed trials (for one objective, the best P), and
    a child is bred from those that had completed when it was asked (all of them in a
    sequential sweep, which is then the textbook generational GA). Generation 0, fixed points
    included, is random, and so is any child asked before two parents have completed (the
    crossover needs two; Optuna's NSGA-II never starts a generation that early). Failed and
    pending trials belong to no population.
    """

    #: Parents of a child under the default (uniform) crossover.
    PARENTS = 2

    def __init__(self, population_size: int, seed: int) -> None:
        super().__init__(population_size=population_size, seed=seed)
        self._generation_size = population_size

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        parents = self.get_parent_population(study, self.get_trial_generation(study, trial))
        if len(parents) < self.PARENTS:
            return {}  # every parameter is then sampled at random (sample_independent)
        return super().sample_relative(study, trial, search_space)

    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        return trial.number // self._generation_size

    def get_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [t for t in complete if t.number // self._generation_size == generation]


def _tpe(codecs: Sequence[Codec], options: Mapping[str, int]) -> Algorithm:
    return HyperoptAlgorithm(codecs, options["n_startup_trials"])


def _random(codecs: Sequence[Codec], options: Mapping[str, int]) -> Algorithm:
    return HyperoptAlgorithm(codecs, None)


def _gp(codecs: Sequence[Codec], options: Mapping[str, int]) -> Algorithm:
    def sampler(seed: int) -> BaseSampler:
        # A parameter with one value has nothing to model: sampling it independently is right,
        # and Optuna's warning about it would repeat at every proposal.
        return GPSampler(seed=seed, n_startup_trials=options["n_startup_trials"], warn_independent_sampling=False)

    return OptunaAlgorithm(codecs, sampler)


def _ga(codecs: Sequence[Codec], options: Mapping[str, int]) -> Algorithm:
    def sampler(seed: int) -> BaseSampler:
        return GenerationalNSGAII(options["population_size"], seed)

    return OptunaAlgorithm(codecs, sampler)


#: searcher name → its algorithm, from the space's codecs and the resolved options.
ALGORITHMS: dict[str, Callable[[Sequence[Codec], Mapping[str, int]], Algorithm]] = {
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
    "ga": _ga,
}


class Searcher:
    """Ask/tell over the searcher ``algorithm`` with its ``options`` (``search_options``).

    ``ask`` first returns the ``points_to_evaluate`` in order (normalised to the declared types:
    an int given for a float parameter comes back as a float), then searched proposals.
    Options default as ``search_options.SEARCHER_OPTIONS`` says; one the algorithm does not
    take, or a bad value, is a ValueError naming it.

    Determinism: every searched proposal (and every replayed non-fixed trial) draws one
    algorithm seed from ``numpy.random.default_rng(seed)``. The same seed and the same sequence
    of calls therefore give the same proposals, and a searcher rebuilt by replaying a run's
    trials in proposal order continues the original seed stream: its next proposal equals the
    one the original searcher would have made with the same results told.
    """

    def __init__(
        self,
        space: Sequence[ParamSpec],
        algorithm: str,
        seed: int,
        mode: Mode,
        points_to_evaluate: Sequence[Mapping[str, Any]] = (),
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not space:
            raise ValueError("the search space must have at least one parameter")
        names = [spec.name for spec in space]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate parameter names in the search space: {duplicates}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {tuple(ALGORITHMS)}, got {algorithm!r}")
        if mode not in get_args(Mode):
            raise ValueError(f"mode must be one of {get_args(Mode)}, got {mode!r}")
        resolved, problems = resolve_options(algorithm, options or {})
        if problems:
            raise ValueError("; ".join(f"{field} = {value!r}: {allowed}" for field, value, allowed in problems))
        self._codecs = tuple(Codec.of(spec) for spec in space)
        self._mode = mode
        self._points = [self._normalise_params(p) for p in points_to_evaluate]
        self._consumed = [False] * len(self._points)
        self._rng = np.random.default_rng(seed)
        self.algorithm: Algorithm = ALGORITHMS[algorithm](self._codecs, resolved)
        # trial_id → the algorithm's handle, and whether the trial has been told.
        self._handles: dict[str, int] = {}
        self._told: dict[str, bool] = {}

    def ask(self, trial_id: str) -> dict[str, Any]:
        """The parameters for a new trial ``trial_id`` (ValueError if the id is taken).

        The next unconsumed fixed point if any, else a proposal of the algorithm. The trial is
        pending until told.
        """
        self._check_new(trial_id)
        point = self._next_point()
        if point is not None:
            self._consumed[point] = True
            params = dict(self._points[point])
        else:
            params = self.algorithm.propose(self._next_seed())
        self._add(trial_id, params)
        return params

    def tell(self, trial_id: str, value: float | None, status: TellStatus = "ok") -> None:
        """Record ``trial_id``'s objective value; a later tell replaces an earlier one.

        ``status="ok"`` needs a value; a NaN or infinite one is recorded as a failure.
        ``status="fail"`` records a failure whatever ``value`` is. KeyError for an unknown id.
        """
        if trial_id not in self._handles:
            raise KeyError(f"unknown trial {trial_id!r}")
        self._record(trial_id, self._loss(value, status))

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
        pending = value is None and status == "ok"
        loss = None if pending else self._loss(value, status)
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
        self._add(trial_id, normalised)
        if not pending:
            self._record(trial_id, loss)

    def pending(self) -> list[str]:
        """Ids of trials asked or replayed but not told, in the order they were created."""
        return [t for t, told in self._told.items() if not told]

    def n_told(self) -> int:
        """How many trials have been told (ok or failed) at least once."""
        return sum(self._told.values())

    def _check_new(self, trial_id: str) -> None:
        if trial_id in self._handles:
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

    def _add(self, trial_id: str, params: Mapping[str, Any]) -> None:
        self._handles[trial_id] = self.algorithm.add(params)
        self._told[trial_id] = False

    def _record(self, trial_id: str, loss: float | None) -> None:
        self.algorithm.record(self._handles[trial_id], loss)
        self._told[trial_id] = True

    def _loss(self, value: float | None, status: TellStatus) -> float | None:
        """The loss to minimise for a tell, None for a failure (ValueError for a bad status
        or a missing value)."""
        if status not in get_args(TellStatus):
            raise ValueError(f"status must be one of {get_args(TellStatus)}, got {status!r}")
        if status == "fail":
            return None
        if value is None:
            raise ValueError("status 'ok' needs a value; tell status='fail' for a failed trial")
        if not math.isfinite(value):
            # No algorithm may see NaN (hyperopt's sorts break) nor ±inf (a "perfect" loss).
            return None
        return -float(value) if self._mode == "max" else float(value)
