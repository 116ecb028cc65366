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

Epochs count from 1: a milestone ``m`` means "after the m-th epoch has been evaluated".
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence, Set as AbstractSet

from kdsweep.orchestrator.schema import NOT_AT_RUNG

_MODE_SIGNS: Mapping[str, float] = {"max": 1.0, "min": -1.0}


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
    value: float, others: Sequence[float], reduction_factor: int, mode: str
) -> Decision:
    """Ray Tune's ASHA stop rule for one trial reporting ``value`` at a rung.

    ``others`` are the values other trials recorded at this rung before this one (any
    order). ``mode`` is "max" or "min"; for "min" every value is negated first, as Ray's
    ``_metric_op`` does. The cutoff is the ``1 - 1/reduction_factor`` quantile of the
    non-NaN ``others``, linearly interpolated (``numpy.nanpercentile``'s default method),
    computed here with the same floating-point operations so that the cutoff, and hence the
    decision, is bit-identical to Ray's ``_Bracket.cutoff`` / ``on_result``.

    Returns STOP iff a cutoff exists and the (signed) value is strictly below it; ties
    continue. Consequences, all Ray's behaviour:

    * an empty rung, or one where every other value is NaN, has no cutoff: CONTINUE;
    * NaN values of other trials are ignored: they neither raise nor lower the cutoff, so a
      NaN never pushes a real trial out;
    * a NaN ``value`` compares False against any cutoff, so the trial itself CONTINUES;
    * infinities can make the interpolated cutoff NaN (``inf - inf``), which also CONTINUES.

    Raises ValueError for an unknown ``mode`` or ``reduction_factor < 2``.
    """
    sign = _mode_sign(mode)
    _check_reduction_factor(reduction_factor)
    # `v == v` is False only for NaN. Sorting a list and reading two entries takes ~1 us for
    # 3-10 values and ~7 us for 100, where numpy.nanpercentile spends ~32 us on array set-up
    # alone; they break even near 1000 values, and at 10 000 (~1.3 ms here, 4x numpy) a
    # decision is still negligible next to an epoch (measured, CPython 3.11, numpy 2.4).
    ranked = sorted([sign * v for v in others if v == v])
    if not ranked:
        return Decision.CONTINUE
    # Ray passes the percentile (1 - 1/rf) * 100 and numpy divides it by 100 again; that
    # round trip is not exact in floating point, so it is repeated here rather than
    # simplified, to land on the same quantile bits.
    quantile = (1 - 1 / reduction_factor) * 100 / 100
    return Decision.STOP if sign * value < _linear_quantile(ranked, quantile) else Decision.CONTINUE


def decide(
    rung_values: Mapping[str, float],
    trial_id: str,
    value: float,
    reduction_factor: int,
    mode: str,
) -> Decision:
    """:func:`stop_decision` for ``trial_id`` against every other trial's value in ``rung_values``.

    ``rung_values`` maps trial id to the value recorded at this rung; an entry for
    ``trial_id`` itself is ignored (``value`` is used). Unlike Ray, which compares only with
    trials recorded *before* this one, a kdsweep worker appends its report to the shared
    store and then reads the rung back, so trials that reached the rung concurrently may be
    included too. That is intended: the rule is asynchronous, and a decision uses everything
    known at decision time.
    """
    others = [v for other, v in rung_values.items() if other != trial_id]
    return stop_decision(value, others, reduction_factor, mode)


def promotion(
    rungs: Sequence[Mapping[str, float]],
    promoted: Sequence[AbstractSet[str]],
    reduction_factor: int,
    mode: str,
    busy: AbstractSet[str] = frozenset(),
) -> tuple[str, int] | None:
    """The next job under the ``promote`` variant: ASHA's ``get_job`` (Li et al. 2020, Alg. 2).

    ``rungs[k]`` maps trial id to the value recorded at rung ``k``, for every trial that
    reached it; there is one entry per milestone of the ladder, so ``rungs[-1]`` is the top
    rung. ``promoted[k]`` holds the trial ids already promoted out of rung ``k`` (sent to
    rung ``k + 1``); it must have the same length as ``rungs``. ``busy`` holds trial ids
    that must not be handed out now (e.g. already claimed by another worker).

    Rungs are scanned from the second-highest down to 0. At rung ``k`` the candidates are
    the top ``len(rungs[k]) // reduction_factor`` trials, best first by value in ``mode``
    ("max" or "min"), with NaN ranked below every real value and ties broken by ascending
    trial id, so the result is deterministic. A NaN trial is therefore only a candidate when
    the rung has fewer real values than its quota, and never displaces a real one. The best
    candidate neither promoted nor busy, in the highest rung that has one, is returned as
    ``(trial_id, k + 1)``, the rung it is promoted to. The top rung is never promoted out
    of. ``None`` means nothing is promotable: start a new trial at rung 0.

    Raises ValueError for an unknown ``mode``, ``reduction_factor < 2`` or mismatched
    lengths of ``rungs`` and ``promoted``.
    """
    sign = _mode_sign(mode)
    _check_reduction_factor(reduction_factor)
    if len(promoted) != len(rungs):
        raise ValueError(
            f"promoted has {len(promoted)} entries but rungs has {len(rungs)}; "
            "give one set per rung"
        )
    for k in range(len(rungs) - 2, -1, -1):
        recorded = rungs[k]
        quota = len(recorded) // reduction_factor
        if quota == 0:
            continue
        ranked = sorted(recorded.items(), key=lambda item: _rank_key(item[0], item[1], sign))
        for trial_id, _ in ranked[:quota]:
            if trial_id not in promoted[k] and trial_id not in busy:
                return trial_id, k + 1
    return None


def _rank_key(trial_id: str, value: float, sign: float) -> tuple[bool, float, str]:
    """Sort key putting the best value first, NaN last, ties by trial id."""
    is_nan = value != value
    # A NaN inside the key would make tuple comparison stop at it (NaN != NaN, and
    # NaN < NaN is False), leaving NaN trials in input order; 0.0 keeps the id tie-break.
    return (is_nan, 0.0 if is_nan else -sign * value, trial_id)


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
