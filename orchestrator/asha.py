"""Asynchronous Successive Halving (ASHA) as pure functions over recorded rung values.

Nothing here reads or writes the results store: callers pass in the values trials recorded
at a rung and get a decision back, so the same rules serve every backend and are testable
without a cluster.

Two variants share the rung ladder:

* ``stop``: every trial trains on; at each milestone it is compared with the trials already
  recorded at that rung and stopped if it falls below the rung's cutoff
  (:func:`stop_decision`, :func:`decide`). This is exactly Ray Tune's
  ``AsyncHyperBandScheduler(brackets=1)`` rule.
* ``promote``: trials pause at each milestone, and a free worker asks which paused trial to
  promote to the next rung, or whether to start a new one (:func:`promotion`). This is
  ``get_job`` from Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning",
  Algorithm 2.

A rung value is one number per objective (a :data:`RungValue`; a bare float for a single
objective), with a mode ("max" or "min") per objective. Every value is signed first (negated
for "min", as Ray's ``_metric_op`` does), so that larger is better in every coordinate. Trials
are ordered by one function, :func:`rank`: non-dominated sorting, then inside each front the
ε-net order of Schmucker et al. 2021, "Multi-objective Asynchronous Successive Halving", as
Syne Tune's ``MOASHA`` ranks them. With one objective the fronts are the groups of equal
values, so :func:`rank` is a plain sort, best first. :func:`promotion` ranks with it for any
number of objectives; :func:`stop_decision` ranks with it for several objectives, and keeps
Ray's interpolated-quantile cutoff for one (see there why).

Epochs count from 1: a milestone ``m`` means "after the m-th epoch has been evaluated".
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence, Set as AbstractSet

import numpy as np
import numpy.typing as npt

from kdsweep.orchestrator.schema import NOT_AT_RUNG

_MODE_SIGNS: Mapping[str, float] = {"max": 1.0, "min": -1.0}

#: What a trial recorded at a rung: one value per objective, in the order of the modes; a
#: bare float stands for the 1-tuple of a single objective.
RungValue = float | Sequence[float]
#: "max" or "min" per objective; a bare string for a single objective.
Modes = str | Sequence[str]


class Decision(enum.Enum):
    """What a trial does after reporting at a milestone under the ``stop`` variant."""

    CONTINUE = "continue"
    STOP = "stop"


def rung_ladder(min_epochs: int, max_epochs: int, reduction_factor: int) -> tuple[int, ...]:
    """The milestones ``min_epochs * reduction_factor**k`` (k = 0, 1, ...) up to ``max_epochs``.

    ``rung_ladder(1, 243, 3) == (1, 3, 9, 27, 81, 243)``; ``rung_ladder(1, 100, 3) ==
    (1, 3, 9, 27, 81)``. The ladder equals Ray Tune's ``_Bracket(min_epochs, max_epochs,
    reduction_factor, 0)`` rungs (ascending) except where Ray's float logarithm rounds down
    an exact power: Ray computes ``int(log(max/min) / log(eta)) + 1`` rungs, which for
    ``1..243, eta=3`` gives 4.999... and drops the 243 milestone. The dropped milestone is
    then ``max_epochs`` itself (checked for min < 40, max < 3000, eta <= 10), where a trial
    completes anyway, so no stop decision differs. Integer arithmetic avoids the rounding.

    Raises ValueError unless ``1 <= min_epochs <= max_epochs`` and ``reduction_factor >= 2``.
    """
    if min_epochs < 1:
        raise ValueError(f"min_epochs must be >= 1, got {min_epochs}")
    if max_epochs < min_epochs:
        raise ValueError(f"max_epochs ({max_epochs}) must be >= min_epochs ({min_epochs})")
    _check_reduction_factor(reduction_factor)
    milestones: list[int] = []
    milestone = min_epochs
    while milestone <= max_epochs:
        milestones.append(milestone)
        milestone *= reduction_factor
    return tuple(milestones)


def rung_index(epoch: int, ladder: Sequence[int]) -> int:
    """The index of ``epoch`` in the ascending ``ladder``; ``NOT_AT_RUNG`` (-1) off the milestones.

    Only exact milestones are rungs. Ray Tune instead judges a trial at its first report at
    or past a milestone it has not been judged at; the two agree when a trial reports every
    epoch. A trial that skips a milestone epoch gets no decision for that rung here.
    """
    # The ladder is sorted, and can be long when min_epochs is 1 and max_epochs is large.
    i = bisect_left(ladder, epoch)
    if i < len(ladder) and ladder[i] == epoch:
        return i
    return NOT_AT_RUNG


def stop_decision(
    value: RungValue, others: Sequence[RungValue], reduction_factor: int, mode: Modes
) -> Decision:
    """ASHA's stop rule for one trial reporting ``value`` at a rung.

    ``others`` are the values other trials recorded at this rung before this one; ``mode``
    gives "max" or "min" per objective (see :data:`RungValue`, :data:`Modes`).

    **One objective** — Ray Tune's rule, bit for bit. ``others`` may come in any order. For
    "min" every value is negated first, as Ray's ``_metric_op`` does. The cutoff is the
    ``1 - 1/reduction_factor`` quantile of the non-NaN ``others``, linearly interpolated
    (``numpy.nanpercentile``'s default method), computed here with the same floating-point
    operations so that the cutoff, and hence the decision, is bit-identical to Ray's
    ``_Bracket.cutoff`` / ``on_result``. Returns STOP iff a cutoff exists and the (signed)
    value is strictly below it; ties continue. Consequences, all Ray's behaviour:

    * an empty rung, or one where every other value is NaN, has no cutoff: CONTINUE;
    * NaN values of other trials are ignored: they neither raise nor lower the cutoff, so a
      NaN never pushes a real trial out;
    * a NaN ``value`` compares False against any cutoff, so the trial itself CONTINUES;
    * infinities can make the interpolated cutoff NaN (``inf - inf``), which also CONTINUES.

    The rank rule below is not used for one objective: it has no interpolation (with others
    [0, 10] and η = 3, Ray stops 5 and continues 7; ranked, both are second of three), and
    kdsweep's single-objective decisions must stay Ray's.

    **Several objectives** — MOASHA's rule (Schmucker et al. 2021; Syne Tune's
    ``MOASHA``/``Bracket.on_result`` with the ranking it intends, see README): the trial and
    the ``others`` without a NaN coordinate (``n`` values, the trial's included) are ordered as
    by :func:`rank`, where
    ties go to the earlier entry of ``others`` and the trial comes last (Syne Tune's order:
    recorded trials, then the new one). With ``p`` the trial's 0-based position, STOP iff
    ``p / n > 1 / reduction_factor`` (Syne Tune's test, evaluated exactly as ``p *
    reduction_factor > n``): the first ``floor(n / η) + 1`` places continue. As for one
    objective, others with a NaN coordinate are ignored, and a trial with one CONTINUES.

    Raises ValueError for an unknown mode, a value whose length differs from the modes', or
    ``reduction_factor < 2``.
    """
    signs = _signs(mode)
    _check_reduction_factor(reduction_factor)
    point = _signed(value, signs)
    if len(signs) > 1:
        real = [p for p in (_signed(v, signs) for v in others) if not _has_nan(p)]
        if _has_nan(point) or not real:
            return Decision.CONTINUE
        # The trial is the last entry, so it loses every tie (see _order).
        position = _order(real + [point]).index(len(real))
        return Decision.STOP if position * reduction_factor > len(real) + 1 else Decision.CONTINUE
    sign = signs[0]
    # `v == v` is False only for NaN. Sorting a list and reading two entries takes ~1 us for
    # 3-10 values and ~7 us for 100, where numpy.nanpercentile spends ~32 us on array set-up
    # alone; they break even near 1000 values, and at 10 000 (~1.3 ms here, 4x numpy) a
    # decision is still negligible next to an epoch (measured, CPython 3.11, numpy 2.4).
    cut = cutoff(_real_scalars(others, sign), reduction_factor)
    return Decision.STOP if cut is not None and point[0] < cut else Decision.CONTINUE


def cutoff(signed: Iterable[float], reduction_factor: int) -> float | None:
    """Ray Tune's rung cutoff over ``signed`` values (larger is better): their ``1 − 1 /
    reduction_factor`` quantile, linearly interpolated, bit for bit as ``_Bracket.cutoff``
    computes it (see :func:`stop_decision`); NaNs are left out, and None when nothing is left."""
    ranked = sorted(v for v in signed if v == v)
    if not ranked:
        return None
    # Ray passes the percentile (1 - 1/rf) * 100 and numpy divides it by 100 again; that
    # round trip is not exact in floating point, so it is repeated here rather than
    # simplified, to land on the same quantile bits.
    quantile = (1 - 1 / reduction_factor) * 100 / 100
    return _linear_quantile(ranked, quantile)


def decide(
    rung_values: Mapping[str, RungValue],
    trial_id: str,
    value: RungValue,
    reduction_factor: int,
    mode: Modes,
) -> Decision:
    """:func:`stop_decision` for ``trial_id`` against every other trial's value in ``rung_values``.

    ``rung_values`` maps trial id to the value recorded at this rung; an entry for
    ``trial_id`` itself is ignored (``value`` is used). The others are passed in ascending
    trial id, so a tie between them (several objectives only) goes to the smaller id, the
    same on every host. Unlike Ray and Syne Tune, which compare only with trials recorded
    *before* this one, a kdsweep worker appends its report to the shared store and then reads
    the rung back, so trials that reached the rung concurrently may be included too. That is
    intended: the rule is asynchronous, and a decision uses everything known at decision time.
    """
    if len(_signs(mode)) > 1:
        others = [rung_values[other] for other in sorted(rung_values) if other != trial_id]
    else:
        # One objective's quantile does not depend on the order, and sorting 10 000 ids would
        # cost more than the whole decision.
        others = [v for other, v in rung_values.items() if other != trial_id]
    return stop_decision(value, others, reduction_factor, mode)


def rank(values: Mapping[str, RungValue], mode: Modes) -> list[str]:
    """The trial ids of ``values`` (trial id -> value at one rung), best first.

    Non-dominated sorting: the first front is the trials no other trial dominates (at least
    as good in every objective and better in one, after signing by ``mode``); removing it,
    the next front is found the same way, and so on. Inside a front, the ε-net order
    (Schmucker et al. 2021; Syne Tune's ``compute_epsilon_net`` with ``dim=0``): first the
    trial best in the first objective, then repeatedly the trial farthest (Euclidean distance
    of the signed values, in the objectives' own units) from all trials already placed, so
    that the front's first places spread over it. Equal coordinates count as distance 0 (two
    equal infinities included). Every tie — equal values, equal distances — goes to the
    smaller trial id, so the order does not depend on the mapping's order. Trials with a NaN
    coordinate come after all others, by trial id.

    With one objective the fronts are the groups of equal values, best first, so this is a
    sort by value with ties by trial id. Raises ValueError as :func:`stop_decision` does.
    """
    signs = _signs(mode)
    ids = sorted(values)
    points = [_signed(values[tid], signs) for tid in ids]
    real = [i for i, p in enumerate(points) if not _has_nan(p)]
    ordered = [real[i] for i in _order([points[i] for i in real])]
    return [ids[i] for i in ordered] + [ids[i] for i, p in enumerate(points) if _has_nan(p)]


def pareto_front(values: Mapping[str, RungValue], mode: Modes) -> set[str]:
    """The trial ids of the first non-dominated front of ``values`` (see :func:`rank`):
    the trials without a NaN coordinate that no other such trial dominates. Empty when every
    trial has a NaN. Raises ValueError as :func:`stop_decision` does."""
    signs = _signs(mode)
    real = {tid: p for tid, v in values.items() if not _has_nan(p := _signed(v, signs))}
    if not real:
        return set()
    ids = list(real)
    fronts = _front_numbers(np.array([real[tid] for tid in ids], dtype=float))
    return {tid for tid, front in zip(ids, fronts) if front == 0}


def promotion(
    rungs: Sequence[Mapping[str, RungValue]],
    promoted: Sequence[AbstractSet[str]],
    reduction_factor: int,
    mode: Modes,
    busy: AbstractSet[str] = frozenset(),
) -> tuple[str, int] | None:
    """The next job under the ``promote`` variant: ASHA's ``get_job`` (Li et al. 2020, Alg. 2).

    ``rungs[k]`` maps trial id to the value recorded at rung ``k`` (see :data:`RungValue`),
    for every trial that reached it; there is one entry per milestone of the ladder, so
    ``rungs[-1]`` is the top rung. ``promoted[k]`` holds the trial ids already promoted out
    of rung ``k`` (sent to rung ``k + 1``); it must have the same length as ``rungs``.
    ``busy`` holds trial ids that must not be handed out now (e.g. already claimed by another
    worker).

    Rungs are scanned from the second-highest down to 0. At rung ``k`` the candidates are
    the top ``len(rungs[k]) // reduction_factor`` trials in the order of :func:`rank` (for
    one objective: best first by value in ``mode``, NaN ranked below every real value, ties
    broken by ascending trial id, so the result is deterministic; for several, fronts and
    the ε-net). A NaN trial is therefore only a candidate when the rung has fewer real
    values than its quota, and never displaces a real one. The best candidate neither
    promoted nor busy, in the highest rung that has one, is returned as ``(trial_id, k +
    1)``, the rung it is promoted to. The top rung is never promoted out of. ``None`` means
    nothing is promotable: start a new trial at rung 0.

    Raises ValueError for an unknown mode, a value whose length differs from the modes',
    ``reduction_factor < 2`` or mismatched lengths of ``rungs`` and ``promoted``.
    """
    _signs(mode)
    _check_reduction_factor(reduction_factor)
    if len(promoted) != len(rungs):
        raise ValueError(
            f"promoted has {len(promoted)} entries but rungs has {len(rungs)}; "
            "give one set per rung"
        )
    for k in range(len(rungs) - 2, -1, -1):
        chosen = promotable(rungs[k], promoted[k], reduction_factor, mode, busy)
        if chosen is not None:
            return chosen, k + 1
    return None


def promotable(
    recorded: Mapping[str, RungValue],
    promoted: AbstractSet[str],
    reduction_factor: int,
    mode: Modes,
    busy: AbstractSet[str] = frozenset(),
) -> str | None:
    """The best trial of one rung that :func:`promotion` would promote out of it: among the
    top ``len(recorded) // reduction_factor`` of ``recorded`` in the order of :func:`rank`,
    the first neither in ``promoted`` nor in ``busy``; None when there is none."""
    quota = len(recorded) // reduction_factor
    if quota == 0:
        return None
    for trial_id in rank(recorded, mode)[:quota]:
        if trial_id not in promoted and trial_id not in busy:
            return trial_id
    return None


def _order(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of the NaN-free signed ``points``, best first: fronts in order, each in its
    ε-net order (see :func:`rank`); every tie goes to the smaller index."""
    if not points:
        return []
    if len(points[0]) == 1:
        # One objective: the fronts are the groups of equal values, and inside a group every
        # distance is 0, so the ε-net keeps index order; a stable sort gives the same order
        # in O(n log n) instead of the pairwise comparisons below.
        return sorted(range(len(points)), key=lambda i: -points[i][0])
    x = np.array(points, dtype=float)
    fronts = _front_numbers(x)
    order: list[int] = []
    for front in range(int(fronts.max()) + 1):
        members = np.flatnonzero(fronts == front)
        order += [int(members[i]) for i in _epsilon_net(x[members])]
    return order


def _front_numbers(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """For each row of ``x`` (NaN-free, larger is better), the number of its non-dominated
    front: 0 for the rows no row dominates, 1 for those only front-0 rows dominate, ..."""
    # dominates[i, j]: row i is at least as good as row j everywhere and better somewhere.
    # The whole matrix costs n² comparisons per objective: a decision on a rung of 1000
    # trials (two objectives) takes about 20 ms, measured on a busy 2-core machine —
    # negligible next to an epoch.
    # One 2-D comparison per objective: broadcasting all objectives at once into an n×n×d
    # array and reducing it is several times slower.
    ge = np.ones((len(x), len(x)), dtype=bool)
    gt = np.zeros((len(x), len(x)), dtype=bool)
    for column in x.T:
        ge &= column[:, None] >= column[None, :]
        gt |= column[:, None] > column[None, :]
    dominates = ge & gt
    dominated_by = dominates.sum(axis=0)
    fronts = np.full(len(x), -1, dtype=np.int64)
    current = np.flatnonzero(dominated_by == 0)
    front = 0
    while current.size:
        fronts[current] = front
        # Peeling a front off lowers the count of every row it dominated (Deb's fast
        # non-dominated sort); rows left without a dominator form the next front.
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        dominated_by[fronts >= 0] = -1
        current = np.flatnonzero(dominated_by == 0)
        front += 1
    return fronts


def _epsilon_net(x: npt.NDArray[np.float64]) -> list[int]:
    """The greedy ε-net order of the rows of ``x`` (one front, larger is better): the row
    best in column 0, then repeatedly the row whose distance to the nearest row already
    placed is largest (Clarkson 2005, as Syne Tune's ``compute_epsilon_net``); ties go to
    the smaller index (numpy's argmax returns the first maximum)."""
    first = int(np.argmax(x[:, 0]))
    order = [first]
    placed = np.zeros(len(x), dtype=bool)
    placed[first] = True
    nearest = _distances(x, x[first])
    while len(order) < len(x):
        # Placed rows are excluded; -1 is below every distance.
        choice = int(np.argmax(np.where(placed, -1.0, nearest)))
        order.append(choice)
        placed[choice] = True
        nearest = np.minimum(nearest, _distances(x, x[choice]))
    return order


def _distances(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Euclidean distance of each row of ``x`` to ``y``; equal coordinates contribute 0, so
    a shared infinity does not turn a distance into NaN (inf - inf)."""
    with np.errstate(invalid="ignore"):
        diff = np.where(x == y, 0.0, x - y)
    return np.sqrt((diff * diff).sum(axis=1))


def _signs(mode: Modes) -> tuple[float, ...]:
    """+1.0 per "max", -1.0 per "min"; ValueError for an unknown mode or none at all."""
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    if not modes:
        raise ValueError("mode needs at least one objective")
    return tuple(_mode_sign(m) for m in modes)


def _signed(value: RungValue, signs: tuple[float, ...]) -> tuple[float, ...]:
    """``value`` as a tuple with each coordinate multiplied by its sign (larger is better)."""
    coords = (value,) if isinstance(value, (int, float)) else tuple(value)
    if len(coords) != len(signs):
        raise ValueError(f"a rung value has {len(coords)} coordinates but there are {len(signs)} objectives: {value!r}")
    return tuple(s * float(v) for s, v in zip(signs, coords))


def _real_scalars(values: Sequence[RungValue], sign: float) -> list[float]:
    """``sign`` times the one coordinate of each single-objective value (a float or a
    1-tuple), NaNs left out; ValueError for a value of another length. A rung of 10 000
    trials must cost a worker milliseconds, so the store's shape (all 1-tuples) goes through
    one comprehension, whose unpacking checks every length; anything else through
    :func:`_signed`."""
    try:
        return [sign * x for (x,) in values if x == x]  # type: ignore[misc]
    except (TypeError, ValueError):
        return [sign * x for x in (_signed(v, (1.0,))[0] for v in values) if x == x]


def _has_nan(point: tuple[float, ...]) -> bool:
    # `v != v` is True only for NaN.
    return any(v != v for v in point)


def _linear_quantile(ranked: Sequence[float], quantile: float) -> float:
    """``numpy.quantile(ranked, quantile)`` (method "linear") for sorted, NaN-free ``ranked``.

    Mirrors numpy's ``_quantile``/``_get_indexes``/``_lerp`` operation for operation
    (numpy >= 1.22), including its quirks, so the result has the same bits.
    """
    last = len(ranked) - 1
    virtual_index = last * quantile
    if virtual_index >= last:
        # In practice only a single value gets here (q < 1 keeps longer lists below the last
        # index). numpy takes the last value for both neighbours, with the weight
        # measured from its floor index -1; interpolating a value with itself returns it,
        # except an infinity, where inf - inf makes the cutoff NaN.
        below = above = ranked[last]
        weight = virtual_index + 1
    else:
        lower = math.floor(virtual_index)
        below, above = ranked[lower], ranked[lower + 1]
        weight = virtual_index - lower
    diff = above - below
    # numpy interpolates from the nearer end to reduce rounding error.
    if weight >= 0.5:
        return above - diff * (1 - weight)
    return below + diff * weight


def _mode_sign(mode: str) -> float:
    """+1.0 for "max", -1.0 for "min" (Ray's ``_metric_op``); ValueError otherwise."""
    try:
        return _MODE_SIGNS[mode]
    except KeyError:
        raise ValueError(f'mode must be "max" or "min", got {mode!r}') from None


def _check_reduction_factor(reduction_factor: int) -> None:
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor}")
