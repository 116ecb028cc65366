"""Differential tests: kdsweep's multi-objective ASHA stop rule against Syne Tune's MOASHA.

Syne Tune is imported only here (pinned in .ci/constraints.txt). ``MOASHA`` is plain Python
bookkeeping, driven directly with its own ``Trial`` objects; nothing is launched.

Syne Tune 0.16's MOASHA ranks a rung with ``NonDominatedPriority`` (non-dominated sorting,
ε-net inside a front), then reads the result the wrong way round, twice:

1. ``compute_epsilon_net`` returns each front member's *rank* (the inverse of the greedy
   order it computed), which ``nondominated_sort`` then indexes with as if it were the
   *order* (``pareto_front[pareto_order]``);
2. ``nondominated_sort`` returns item indices best first (an order), which
   ``Bracket.on_result`` reads as each item's *priority*, so ``ranks[-1]`` — meant to be the
   new trial's rank — is the index of whichever trial the sort put last, divided by ``n``.

The decision therefore does not depend on where the new trial ranks: a trial that dominates
every other at its rung can be stopped (:func:`test_shipped_moasha_can_stop_a_dominating_trial`).
kdsweep implements the rule as the paper and Syne Tune's docstrings describe it. The replay
checks, over thousands of decisions, that

* kdsweep's decision equals the decision made from *Syne Tune's own* ``pareto_efficient`` and
  ``compute_epsilon_net`` with the two inversions undone (the corrected reference), every time,
  including ties (both give a tie to the earlier-recorded trial when kdsweep is given the
  others in record order);
* Syne Tune as shipped decides exactly as the misreading above predicts, so every disagreement
  between it and kdsweep is that one, and they agree everywhere else.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from syne_tune.backend.trial_status import Trial
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
    compute_epsilon_net,
    nondominated_sort,
    pareto_efficient,
)

from kdsweep.orchestrator.asha import Decision, rung_index, rung_ladder, stop_decision
from kdsweep.orchestrator.schema import NOT_AT_RUNG

SEQUENCES = 1000
#: Few distinct values in the tie-heavy half: multiples of 1/4 keep every distance exact, so
#: equal distances are equal in both implementations' floating point.
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
DECISION = {SchedulerDecision.CONTINUE: Decision.CONTINUE, SchedulerDecision.STOP: Decision.STOP}
NOW = dt.datetime(2026, 1, 1)


def _costs(values: Sequence[float], modes: Sequence[str]) -> list[float]:
    """What Syne Tune 0.16 gets: one ``do_minimize`` for all metrics, so "max" is negated."""
    return [v if m == "min" else -v for v, m in zip(values, modes)]


def _corrected(costs: npt.NDArray[np.float64], eta: int) -> Decision:
    """Syne Tune's rule for the last row of ``costs`` with its two inversions undone, built
    from its own Pareto and ε-net functions."""
    remaining = np.arange(len(costs))
    order: list[int] = []
    while remaining.size:
        mask = pareto_efficient(costs[remaining])
        front = remaining[mask]
        # compute_epsilon_net returns ranks; argsort turns them back into its greedy order.
        order += front[np.argsort(compute_epsilon_net(costs[front], dim=0))].tolist()
        remaining = remaining[~mask]
    position = order.index(len(costs) - 1)
    # Bracket.on_result: STOP iff rank / n > 1 / rf, with the new trial's rank.
    return Decision.STOP if position / len(costs) > 1 / eta else Decision.CONTINUE


def _as_shipped(costs: npt.NDArray[np.float64], eta: int) -> Decision:
    """What Syne Tune 0.16 computes: the index the sort placed last, read as a priority."""
    last = nondominated_sort(costs, dim=0)[-1]
    return Decision.STOP if last / len(costs) > 1 / eta else Decision.CONTINUE


def _replay(rng: random.Random, index: int, counts: Counter[str]) -> None:
    """One random interleaving of reports, fed to MOASHA and to kdsweep's rule."""
    eta = rng.choice((2, 3, 4))
    min_t = rng.choice((1, 2))
    max_t = rng.choice((min_t * eta * eta, rng.randint(min_t * eta, 30)))
    n_objectives = rng.choice((2, 2, 3))
    modes = [rng.choice(("max", "min")) for _ in range(n_objectives)]
    grid = index % 2 == 1
    n_trials = rng.randint(3, 12)
    names = [f"m{i}" for i in range(n_objectives)]
    scheduler = MOASHA(
        config_space={}, metrics=names, do_minimize=True, time_attr="epoch",
        max_t=max_t, grace_period=min_t, reduction_factor=eta, brackets=1,
    )  # fmt: skip
    ladder = rung_ladder(min_t, max_t, eta)
    # Per rung, what was recorded there, in record order (the order MOASHA's dict keeps).
    recorded: list[list[list[float]]] = [[] for _ in ladder]
    trials = [Trial(trial_id=i, config={}, creation_time=NOW) for i in range(n_trials)]
    next_epoch = {t.trial_id: 1 for t in trials}
    while next_epoch:
        trial = trials[rng.choice(list(next_epoch))]
        epoch = next_epoch[trial.trial_id]
        if epoch == 1:
            scheduler.on_trial_add(trial)
        values = [rng.choice(GRID) if grid else rng.random() for _ in names]
        result = {"epoch": epoch, **dict(zip(names, _costs(values, modes)))}
        shipped = DECISION[scheduler.on_trial_result(trial, result)]
        k = rung_index(epoch, ladder)
        if epoch == max_t:
            # kdsweep completes the trial here; MOASHA stops it at max_t.
            assert shipped is Decision.STOP
            ours = Decision.STOP
            counts["completed at max_t"] += 1
        elif k == NOT_AT_RUNG:
            assert shipped is Decision.CONTINUE
            ours = Decision.CONTINUE
        else:
            others = recorded[k]
            ours = stop_decision(values, others, eta, modes)
            costs = np.array([_costs(v, modes) for v in others + [values]])
            reference = _corrected(costs, eta)
            assert ours is reference, (index, epoch, others, values, modes, eta)
            assert shipped is _as_shipped(costs, eta), (index, epoch, others, values, modes, eta)
            counts[f"milestone {ours.name}"] += 1
            counts["agree" if shipped is ours else f"shipped {shipped.name}, kdsweep {ours.name}"] += 1
            counts["tied values"] += grid and len({tuple(v) for v in others + [values]}) < len(others) + 1
            others.append(values)
        if ours is Decision.STOP:
            del next_epoch[trial.trial_id]
        else:
            next_epoch[trial.trial_id] = epoch + 1


def test_stop_rule_matches_syne_tune_moasha_with_its_ranking_read_as_intended() -> None:
    rng = random.Random(20_261_129)
    np.random.seed(0)  # MOASHA draws each trial's bracket from numpy's global RNG
    counts: Counter[str] = Counter()
    for index in range(SEQUENCES):
        _replay(rng, index, counts)
    print(dict(counts))
    decisions = counts["milestone STOP"] + counts["milestone CONTINUE"]
    assert decisions > 10_000
    assert counts["milestone STOP"] > 2_000 and counts["milestone CONTINUE"] > 2_000
    assert counts["tied values"] > 800
    assert counts["completed at max_t"] > 1_000
    # The shipped misreading changes a sizeable share of decisions, both ways.
    assert counts["shipped STOP, kdsweep CONTINUE"] > 100
    assert counts["shipped CONTINUE, kdsweep STOP"] > 100
    assert counts["agree"] > decisions / 2


def test_shipped_moasha_can_stop_a_dominating_trial() -> None:
    # Costs (lower is better): three recorded trials, then one better than all of them in
    # both objectives. Syne Tune 0.16 stops it; kdsweep ranks it first and continues it.
    scheduler = MOASHA(config_space={}, metrics=["a", "b"], do_minimize=True, time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)
    recorded = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    for i, (a, b) in enumerate(recorded + [[0.0, 0.0]]):
        trial = Trial(trial_id=i, config={}, creation_time=NOW)
        scheduler.on_trial_add(trial)
        decision = DECISION[scheduler.on_trial_result(trial, {"epoch": 1, "a": a, "b": b})]
    assert decision is Decision.STOP
    assert stop_decision((0.0, 0.0), recorded, 3, ("min", "min")) is Decision.CONTINUE
    # The same rung in kdsweep: the worst trial stops.
    assert stop_decision((4.0, 4.0), recorded, 3, ("min", "min")) is Decision.STOP


def test_epsilon_net_order_is_syne_tunes_greedy_order() -> None:
    # One front, the new trial in the middle of it: Syne Tune's greedy order is first the
    # best in objective 0, then the farthest from it, then the one farthest from both.
    front = [[0.0, 3.0], [3.0, 0.0], [1.0, 2.5]]
    costs = np.array(front + [[2.0, 1.0]])
    assert np.argsort(compute_epsilon_net(costs, dim=0)).tolist() == [0, 1, 3, 2]
    # Last of four with eta 2: 3 / 4 > 1 / 2 stops; the new trial is third: 2 / 4 continues.
    assert stop_decision([2.0, 1.0], front, 2, ("min", "min")) is Decision.CONTINUE
    assert _corrected(costs, 2) is Decision.CONTINUE
