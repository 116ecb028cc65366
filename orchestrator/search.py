"""Searchers behind one ask/tell interface: where the driver gets trial parameters.

Four algorithms, named by a sweep file's ``searcher`` (options in ``search_options``):

* ``tpe`` and ``random``: hyperopt's Tree-structured Parzen Estimator and random search;
* ``gp``: Optuna's ``GPSampler``, Gaussian-process Bayesian optimisation (Matérn-5/2 kernel,
  log expected improvement as the acquisition; qLogEI over the pending trials while some are
  running), after ``n_startup_trials`` random proposals: seed 002's GP-EI. A choice of numbers
  reaches it ordered, as the rank of each value (``optuna_distribution``), so its kernel sees
  that 32 filters lie between 16 and 64; trials told with constraint values (a trainer's
  limits, ``TrainerSpec.constraints``) make it model each limit with a GP of its own and
  weigh EI by the probability of feasibility (constrained log-EI, Gardner et al. 2014);
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
  nearly all of it Optuna's search of the acquisition over the categorical parameters. With
  the widths ordered (2026-12-07, same space, a load average of 4 on the 2 cores): 0.8-7 s
  per proposal at 150 told trials, categorical at the same time 1.3-18 s. The
  driver proposes while its workers train (``Driver._prepare``), so this overlaps training.

Invariants the rest of kdsweep relies on:

* An algorithm's record of a trial is the encoding of the parameters the driver was given
  (choice → index, for ``gp`` a numeric choice → its value's rank in numeric order;
  everything else → number), whether the trial was searched, a fixed point, replayed from
  the store or an earlier run's result taken as an observation (``observe``: a warm start,
  recorded before any trial). Its state is thus a function of (params, what was told:
  status, value, constraint values) per trial, observations first, then trials in proposal
  order, so a searcher rebuilt from the same observations by ``replay`` sees exactly what
  the original saw. What an Optuna study is given for a trial that has no
  value of its own (diverged, infeasible: the worst loss told so far) is computed from that
  record at each proposal, never stored, so it is the same after a replay.
* Proposals are plain Python scalars of the parameter's declared type (``ParamSpec.arrow_type``),
  inside the declared bounds, so they go into the results schema without casts.
* No algorithm sees a NaN or infinite value: such values are recorded as failures. hyperopt
  keeps failed and pending trials in view with an infinite loss; Optuna's samplers model
  completed trials only (GPSampler also conditions on the pending ones), so a trial that says
  something about its region without a value — diverged, or (``gp``) over a limit — enters
  their study as a completed one (``Searcher.tell`` says with which loss and why).

A ``Searcher`` is not thread-safe; the driver calls it from its one loop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
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

from kdsweep.orchestrator.search_options import TellStatus, resolve_options, space_problems
from kdsweep.orchestrator.space import Codec, ParamSpec, missing_and_unknown

Mode = Literal["max", "min"]


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


def is_numeric_choice(codec: Codec) -> bool:
    """Whether ``codec``'s parameter is a choice of numbers (ints and/or floats, not bools)."""
    return codec.spec.kind == "choice" and codec.ptype in (int, float)


def optuna_distribution(codec: Codec, ordered_choices: bool = False) -> BaseDistribution:
    """The Optuna distribution of a parameter, over the values ``OptunaParam`` hands Optuna.

    A choice becomes a categorical over its indices: Optuna treats categoricals as unordered
    whatever their values (GPSampler by a Hamming distance in its kernel, NSGA-II by uniform
    crossover and resampling), so indices lose nothing. With ``ordered_choices`` (searcher
    ``gp``) a numeric choice instead becomes ``IntDistribution(0, n - 1)`` over each value's
    rank in numeric order (``OptunaParam``): the GP's Matérn kernel then sees that 32 filters
    lie between 16 and 64, as seed 002's BO did, where the Hamming distance makes every pair
    of distinct widths equally far apart.

    Why ranks rather than the values: the GP normalises an int parameter to [0, 1] linearly,
    so for equally spaced values ranks and values give the same kernel distances, and for
    values written as a geometric ladder (the seed's filter counts 0, 16, 32, …, 512) ranks
    put neighbours equally far apart — the log scale on which width acts on latency, size and
    accuracy — where the raw values would squeeze 0..128 into the bottom quarter of the
    range (and a log scale cannot hold the 0 that removes a layer). The ladder a sweep file
    writes is the spacing its author considers meaningful; ranks follow it whatever it is,
    and values listed unsorted still get ranks in numeric order.
    """
    spec = codec.spec
    if spec.kind == "choice":
        if ordered_choices and is_numeric_choice(codec):
            return IntDistribution(0, len(codec.options) - 1)
        return CategoricalDistribution(tuple(range(len(codec.options))))
    low, high = spec._bounds()
    if spec.kind == "int":
        return IntDistribution(int(low), int(high))
    if spec.kind == "loguniform":
        return FloatDistribution(low, high, log=True)
    if spec.kind == "quniform":
        return FloatDistribution(low, high, step=spec._step())
    return FloatDistribution(low, high)


@dataclasses.dataclass(frozen=True)
class OptunaParam:
    """One parameter as an Optuna sampler sees it: its distribution (``optuna_distribution``)
    and the maps between the parameter's normalised values and that distribution's values.

    Those are ``codec.encode``/``decode`` (choice → index, else the number) except for a
    numeric choice under ``ordered_choices``, which maps to its value's rank in numeric
    order; ``order[r]`` is the index of the option of rank r.
    """

    codec: Codec
    distribution: BaseDistribution
    order: tuple[int, ...] | None = None

    @classmethod
    def of(cls, codec: Codec, ordered_choices: bool) -> OptunaParam:
        distribution = optuna_distribution(codec, ordered_choices)
        if not (ordered_choices and is_numeric_choice(codec)):
            return cls(codec, distribution)
        # Options are distinct numbers (ParamSpec validation), so the order is strict.
        return cls(codec, distribution, tuple(sorted(range(len(codec.options)), key=codec.options.__getitem__)))

    @property
    def name(self) -> str:
        return self.codec.spec.name

    def encode(self, value: Any) -> int | float:
        """A normalised value as the distribution's value (a plain int or float)."""
        index = self.codec.encode(value)
        return index if self.order is None else self.order.index(int(index))

    def decode(self, raw: Any) -> Any:
        """A value Optuna proposed as the parameter's normalised value."""
        return self.codec.decode(raw if self.order is None else self.order[int(raw)])


@dataclasses.dataclass(frozen=True)
class Told:
    """How a trial ended, as its algorithm records it (``Searcher`` builds it from a tell).

    ``status`` is ``"ok"`` (``loss`` holds its finite loss), ``"fail"``, ``"diverged"`` or
    ``"infeasible"`` (``loss`` None); ``constraints`` maps each constraint's name to its value
    (> 0: violated), empty when the trial was told none. What each algorithm makes of each
    status is in ``Searcher.tell``.
    """

    status: TellStatus
    loss: float | None = None
    constraints: Mapping[str, float] = dataclasses.field(default_factory=dict)


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

    def record(self, handle: int, told: Told) -> None:
        """Record how trial ``handle`` ended, replacing any earlier record."""
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

    def record(self, handle: int, told: Told) -> None:
        """A finite loss is STATUS_OK with it; every other status (failed, diverged,
        infeasible) is STATUS_FAIL, which TPE reads as an infinite loss (``Searcher.tell``).
        Constraint values are not used: hyperopt has no constraint model."""
        # In place: the same dict sits in trials.trials, which the algorithms read.
        doc = self._docs[handle]
        ok = told.status == "ok" and told.loss is not None
        self._n_ok += ok - (doc["result"]["status"] == STATUS_OK)
        doc["result"] = {"status": STATUS_OK, "loss": told.loss} if ok else {"status": STATUS_FAIL}
        doc["state"] = JOB_STATE_DONE


class OptunaAlgorithm:
    """An Optuna sampler, built by ``sampler(seed)`` for each proposal, asked through an
    in-memory study rebuilt from the trials recorded here (see the module docstring).

    ``ordered_choices``: numeric choices reach the sampler as ranks (``OptunaParam``).
    ``constraints``: trials carry their constraint values into the study, and a trial told
    ``infeasible`` enters it as a completed one (see ``frozen_trials``); without it such a
    trial is a failure.
    """

    def __init__(
        self,
        codecs: Sequence[Codec],
        sampler: Callable[[int], BaseSampler],
        *,
        ordered_choices: bool = False,
        constraints: bool = False,
    ) -> None:
        self._params_of = tuple(OptunaParam.of(c, ordered_choices) for c in codecs)
        self._sampler = sampler
        self._constraints = constraints
        self._distributions = {p.name: p.distribution for p in self._params_of}
        # By handle: the parameters as the distributions' values, and how the trial ended
        # (None while pending).
        self._params: list[dict[str, Any]] = []
        self._told: list[Told | None] = []

    def propose(self, seed: int) -> dict[str, Any]:
        storage = InMemoryStorage()
        name = "kdsweep"
        storage.create_new_study([StudyDirection.MINIMIZE], name)
        study = Study(study_name=name, storage=storage, sampler=self._sampler(seed))
        study.add_trials(self.frozen_trials())
        trial = study.ask(self._distributions)
        return {p.name: p.decode(trial.params[p.name]) for p in self._params_of}

    def frozen_trials(self) -> list[FrozenTrial]:
        """The trials as the sampler sees them, in handle order (trial number = handle),
        computed from the record at each proposal (so a replayed record gives the same):

        * pending: RUNNING;
        * ok: COMPLETE with its loss; failed: FAIL (Optuna's samplers ignore it);
        * diverged: COMPLETE with the worst loss among the trials told ok, FAIL while there
          is none — a FAIL would be ignored, and the sampler would propose the region again;
        * infeasible, with ``constraints``: COMPLETE with its constraint values and the worst
          loss among the ok trials (FAIL while there is none; ``Searcher.tell`` says why that
          loss); without ``constraints``: FAIL.

        With ``constraints``, once any trial has been told a constraint value every COMPLETE
        trial carries one value per constraint name (GPSampler needs as many for each): a
        value a trial was not told is filled in as feasible, with the median of that
        constraint's known feasible values (0.0, the limit, when there is none) — a trial
        told ok or diverged was trained, and in kdsweep a trainer refuses an over-limit one
        before it trains. GPSampler reads a trial's constraints from its system attrs (the
        ``constraints:<name>`` keys ``create_trial(constraints=...)`` sets, in one name order
        for all trials); ``constraints_func`` only computes them after a trial run in the
        study, which these added trials never are, and is deprecated since Optuna 5.0.
        """
        told = [t for t in self._told if t is not None]
        worst = max((t.loss for t in told if t.status == "ok" and t.loss is not None), default=None)
        fill: dict[str, float] = {}
        if self._constraints:
            names = sorted({n for t in told if t.status != "fail" for n in t.constraints})
            for n in names:
                feasible = [t.constraints[n] for t in told if t.status != "fail" and t.constraints.get(n, 1.0) <= 0]
                fill[n] = statistics.median(feasible) if feasible else 0.0
        frozen = []
        for params, t in zip(self._params, self._told):
            state, loss = self._state(t, worst)
            constraints = None
            if state == TrialState.COMPLETE and fill and t is not None:
                constraints = {n: float(t.constraints.get(n, fill[n])) for n in fill}
            frozen.append(
                create_trial(state=state, value=loss, params=params, distributions=self._distributions, constraints=constraints)
            )
        return frozen

    def _state(self, told: Told | None, worst: float | None) -> tuple[TrialState, float | None]:
        if told is None:
            return TrialState.RUNNING, None
        if told.status == "ok":
            return TrialState.COMPLETE, told.loss
        stand_in = told.status == "diverged" or (told.status == "infeasible" and self._constraints)
        if stand_in and worst is not None:
            return TrialState.COMPLETE, worst
        return TrialState.FAIL, None

    def add(self, params: Mapping[str, Any]) -> int:
        self._params.append({p.name: p.encode(params[p.name]) for p in self._params_of})
        self._told.append(None)
        return len(self._params) - 1

    def record(self, handle: int, told: Told) -> None:
        self._told[handle] = told


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

    return OptunaAlgorithm(codecs, sampler, ordered_choices=True, constraints=True)


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
        problems += space_problems(algorithm, space)
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

    def tell(
        self,
        trial_id: str,
        value: float | None,
        status: TellStatus = "ok",
        constraints: Mapping[str, float] | None = None,
    ) -> None:
        """Record how ``trial_id`` ended; a later tell replaces an earlier one. KeyError for
        an unknown id, ValueError for a bad status, value or constraint.

        * ``"ok"`` needs a value; a NaN or infinite one is recorded as a failure.
        * ``"fail"`` records a failure whatever ``value`` is: every algorithm ignores it
          (hyperopt: STATUS_FAIL; Optuna: FAIL).
        * ``"diverged"``: the trial trained and its numbers went non-finite, so it has no
          value, but its region is a bad one. hyperopt records it as a failure: TPE
          (hyperopt 0.3, ``tpe.suggest``) gives every trial without a loss — new, running
          or failed — an infinite loss, so failures are in its "bad" group (ranked last
          by ``ap_split_trials``), not ignored; random search reads nothing. Optuna's
          GPSampler and NSGA-II do ignore FAIL trials, so for ``gp`` and ``ga`` it is a
          COMPLETE trial with the worst loss among the trials told ok when the next
          proposal is made (a failure while there is none), computed from the record at
          each proposal so that a replayed searcher proposes the same.
        * ``"infeasible"``: the trainer refused the trial before training it for a limit
          (a student over ``objective.max_latency_s``); ``constraints`` must hold at least
          one value > 0. ``gp`` models the limits: the trial is COMPLETE with its constraint
          values in the study, so GPSampler fits a GP per constraint and weighs expected
          improvement by the probability of feasibility (log constrained EI), and its loss
          is the worst among the trials told ok (a failure while there is none): the trial
          never trained, it has no value of its own. Worst-seen rather than the trainer's
          floor (J = 0) because the GP's objective model is fit on infeasible trials too,
          and a limit cuts through a smooth objective (a student just over the latency
          limit is about as accurate as one just under it): the lower the stand-in, the
          deeper the false cliff the objective model learns next to the boundary, where a
          constrained optimum usually lies; the constraint model already steers proposals
          away. A neutral stand-in (the median told) removes the cliff but also the
          objective model's own push away from the region. Measured (2026-12-07; 4 seven-way
          width choices, J rising with width, a size limit excluding 38 % of the space, 8
          random + 22 GP proposals, 6 seeds; mean best feasible J, model proposals over the
          limit of 132): worst seen 0.794, 15; J floor 0.782, 17; median 0.795, 63; told
          as failures (GPSampler ignores them) 0.760, 114. hyperopt and ``ga`` record it
          as a failure.

        ``constraints`` (name → value; ≤ 0 feasible, > 0 violated; finite) may come with any
        status: ``gp`` keeps them with the trial (``OptunaAlgorithm.frozen_trials``), the
        other algorithms ignore them.
        """
        if trial_id not in self._handles:
            raise KeyError(f"unknown trial {trial_id!r}")
        self._record(trial_id, self._told_as(value, status, constraints))

    def replay(
        self,
        trial_id: str,
        params: Mapping[str, Any],
        value: float | None,
        status: TellStatus = "ok",
        constraints: Mapping[str, float] | None = None,
    ) -> None:
        """Re-insert a trial proposed by an earlier driver process, from the results store.

        ``value=None`` with ``status="ok"`` leaves the trial pending; otherwise it is told as
        by ``tell`` (with the same ``constraints``). ``params`` must be a valid point of the
        space (ValueError otherwise). A trial whose params equal an unconsumed fixed point
        consumes the earliest such point, so it is not proposed again; replaying trials in
        their original order also keeps the seed stream aligned with the original run (see
        the class docstring).
        """
        self._check_new(trial_id)
        normalised = self._normalise_params(params)
        pending = value is None and status == "ok"
        told = None if pending else self._told_as(value, status, constraints)
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
        if told is not None:
            self._record(trial_id, told)

    def observe(self, params: Mapping[str, Any], value: float) -> None:
        """Take a result this run did not produce: a trial of an earlier run with ``params``
        that reached ``value`` of the sweep's metric (``mode`` as this searcher's) — a warm
        start (``orchestrator/warm_start.py``). ValueError when ``params`` is not a point of
        the space, ``value`` is not finite, or a trial has been asked or replayed already.

        Only before the first trial, so that observations come first in every algorithm's
        record wherever the searcher is built (Optuna numbers trials in that order, and
        ``GenerationalNSGAII`` counts generations by it). It draws no seed and takes no trial
        id: the run's own trials get the seeds, ids and fixed points a cold run gives them,
        and ``replay`` stays aligned with the original. An observation is recorded as a trial
        told ok: it counts toward ``n_startup_trials`` (``tpe``, ``gp``: fed enough of them,
        the first searched proposal is already a model's), is a COMPLETE trial of Optuna's
        study (``gp``; in ``ga`` a member of the first generations, so a child's parents can
        be observations), and random search reads none of it.
        """
        if self._handles:
            raise ValueError("observations come before the searcher's first trial (ask or replay)")
        if not math.isfinite(value):
            raise ValueError(f"an observation needs a finite value, got {value!r}")
        normalised = self._normalise_params(params)
        self.algorithm.record(self.algorithm.add(normalised), self._told_as(value, "ok", None))

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

    def _record(self, trial_id: str, told: Told) -> None:
        self.algorithm.record(self._handles[trial_id], told)
        self._told[trial_id] = True

    def _told_as(self, value: float | None, status: TellStatus, constraints: Mapping[str, float] | None) -> Told:
        """What the algorithm records for a tell (ValueError for a bad status, a missing
        value, a non-finite constraint or an ``infeasible`` tell that violates none)."""
        if status not in get_args(TellStatus):
            raise ValueError(f"status must be one of {get_args(TellStatus)}, got {status!r}")
        given = {str(name): float(v) for name, v in (constraints or {}).items()}
        bad = {name: v for name, v in given.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"constraint values must be finite, got {bad}")
        if status == "infeasible" and not any(v > 0 for v in given.values()):
            raise ValueError(f"status 'infeasible' needs a violated constraint (a value > 0), got {given}")
        if status != "ok":
            return Told(status, None, given)
        if value is None:
            raise ValueError("status 'ok' needs a value; tell status='fail' for a failed trial")
        if not math.isfinite(value):
            # No algorithm may see NaN (hyperopt's sorts break) nor ±inf (a "perfect" loss).
            return Told("fail", None, given)
        return Told("ok", -float(value) if self._mode == "max" else float(value), given)
