"""Differential tests: ``[asha] brackets = N`` against Ray Tune's
``AsyncHyperBandScheduler(brackets=N)``, decision for decision with the bracket assignment
given (Ray draws brackets from numpy's global RNG, kdsweep from the sweep's seed: each Ray
trial is put into the bracket kdsweep drew for it), and the draws' distribution against
Ray's probabilities."""

from __future__ import annotations

import math
import random
import warnings
from collections import Counter

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler

from kdsweep.orchestrator.asha import Decision, rung_index, rung_ladder
from kdsweep.orchestrator.config import AshaConfig, Objective
from kdsweep.orchestrator.schedulers.asha_stop import AshaStop
from kdsweep.orchestrator.schema import NOT_AT_RUNG
from tests.orchestrator.test_asha_vs_raytune import METRIC, NAN_RATE, RAY_DECISION, VALUES, _StandInTrial


def _bracket_scenario(rng: random.Random, index: int, counts: Counter[str]) -> None:
    """One random interleaving under Ray's ``brackets=N``, each trial in the bracket kdsweep
    draws for it: every decision kdsweep's stop policy makes equals Ray's."""
    eta = rng.choice((2, 3))
    min_t = rng.choice((1, 2))
    max_t = rng.randint(min_t * eta**2, 81)
    ladder = rung_ladder(min_t, max_t, eta)
    brackets = rng.randint(2, min(4, len(ladder)))
    mode = rng.choice(("max", "min"))
    scheduler = AsyncHyperBandScheduler(
        time_attr="training_iteration", metric=METRIC, mode=mode, grace_period=min_t,
        max_t=max_t, reduction_factor=eta, brackets=brackets,
    )  # fmt: skip
    config = AshaConfig(metric=METRIC, mode=mode, min_epochs=min_t, max_epochs=max_t, reduction_factor=eta, brackets=brackets, objectives=(Objective(METRIC, mode),))  # type: ignore[arg-type]
    policy = AshaStop(config, seed=index)
    recorded: list[dict[str, float]] = [{} for _ in ladder]
    trials = [_StandInTrial(f"s{index}-t{i}") for i in range(rng.randint(8, 30))]
    next_epoch = {trial: 1 for trial in trials}
    while next_epoch:
        trial = rng.choice(list(next_epoch))
        epoch = next_epoch[trial]
        if epoch == 1:
            scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
            # The bracket assignment given: kdsweep's draw.
            scheduler._trial_info[trial.trial_id] = scheduler._brackets[policy.brackets.of(trial.trial_id)]
            counts[f"bracket {policy.brackets.of(trial.trial_id)}"] += 1
        value = math.nan if rng.random() < NAN_RATE else rng.choice(VALUES)
        ray = RAY_DECISION[scheduler.on_trial_result(None, trial, {"training_iteration": epoch, METRIC: value})]  # type: ignore[arg-type]
        if epoch == max_t:
            ours = Decision.STOP  # completed; Ray stops it through stop_last_trials
        else:
            k = rung_index(epoch, ladder)
            if k == NOT_AT_RUNG:
                ours = Decision.CONTINUE
            else:
                recorded[k][trial.trial_id] = value
                ours = policy.decide(recorded[k], trial.trial_id, k, value)
                counts[f"milestone {ours.name}"] += 1
            assert ours is ray, (index, trial.trial_id, epoch, value, brackets, recorded)
            counts["compared"] += 1
        if ours is Decision.STOP:
            del next_epoch[trial]
        else:
            next_epoch[trial] = epoch + 1


def test_brackets_decide_as_ray_with_the_bracket_assignment_given() -> None:
    rng = random.Random(20_261_207)
    counts: Counter[str] = Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for index in range(300):
            _bracket_scenario(rng, index, counts)
    assert counts["compared"] > 20_000
    assert counts["milestone STOP"] > 1_000 and counts["milestone CONTINUE"] > 1_000
    assert counts["bracket 1"] > 300 and counts["bracket 2"] > 50


def test_brackets_are_drawn_with_rays_probabilities_and_the_same_on_every_call() -> None:
    """Ray draws bracket s with probability ~ e**(rungs of s); kdsweep's seeded draw has the
    same distribution (4 000 trials, within 4 standard errors), and a trial's bracket does not
    change with the call, the host or the order of the calls."""
    config = AshaConfig(metric=METRIC, mode="max", min_epochs=1, max_epochs=81, reduction_factor=3, brackets=3, objectives=(Objective(METRIC, "max"),))  # type: ignore[arg-type]
    ray = AsyncHyperBandScheduler(metric=METRIC, mode="max", grace_period=1, max_t=81, reduction_factor=3, brackets=3)
    sizes = np.array([len(b._rungs) for b in ray._brackets])
    expected = np.e ** (sizes - sizes.max()) / (np.e ** (sizes - sizes.max())).sum()
    ids = [f"t{i:04d}" for i in range(4000)]
    drawn = AshaStop(config, seed=7).brackets
    observed = np.bincount([drawn.of(t) for t in ids], minlength=3) / len(ids)
    assert np.all(np.abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(ids))), (observed, expected)
    again = AshaStop(config, seed=7).brackets
    assert [again.of(t) for t in reversed(ids)] == [drawn.of(t) for t in reversed(ids)]
    assert [AshaStop(config, seed=8).brackets.of(t) for t in ids] != [drawn.of(t) for t in ids]
