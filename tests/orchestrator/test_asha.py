"""Scenario tests of the ASHA rules with hand-chosen values (no Ray; see test_asha_vs_raytune)."""

from __future__ import annotations

import math

import pytest

from kdsweep.orchestrator.asha import (
    Decision,
    decide,
    pareto_front,
    promotion,
    rank,
    rung_index,
    rung_ladder,
    stop_decision,
)
from kdsweep.orchestrator.schema import NOT_AT_RUNG

NAN = math.nan
CONTINUE, STOP = Decision.CONTINUE, Decision.STOP


# --- ladder ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_epochs", "max_epochs", "eta", "expected"),
    [
        (1, 243, 3, (1, 3, 9, 27, 81, 243)),  # exact power: Ray's float log drops 243
        (1, 100, 3, (1, 3, 9, 27, 81)),
        (1, 16, 2, (1, 2, 4, 8, 16)),
        (1, 1000, 10, (1, 10, 100, 1000)),  # another exact power Ray's float log misses
        (2, 27, 3, (2, 6, 18)),
        (5, 5, 4, (5,)),
        (3, 8, 3, (3,)),
    ],
)
def test_rung_ladder(min_epochs: int, max_epochs: int, eta: int, expected: tuple[int, ...]) -> None:
    assert rung_ladder(min_epochs, max_epochs, eta) == expected


@pytest.mark.parametrize(
    ("min_epochs", "max_epochs", "eta", "message"),
    [
        (0, 10, 3, "min_epochs"),
        (-1, 10, 3, "min_epochs"),
        (4, 3, 3, "max_epochs"),
        (1, 10, 1, "reduction_factor"),
        (1, 10, 0, "reduction_factor"),
    ],
)
def test_rung_ladder_rejects(min_epochs: int, max_epochs: int, eta: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rung_ladder(min_epochs, max_epochs, eta)


def test_rung_index() -> None:
    ladder = rung_ladder(1, 100, 3)
    assert [rung_index(m, ladder) for m in ladder] == [0, 1, 2, 3, 4]
    for epoch in (0, 2, 4, 26, 28, 82, 100, 243):
        assert rung_index(epoch, ladder) == NOT_AT_RUNG
    assert rung_index(1, ()) == NOT_AT_RUNG


# --- stop rule ------------------------------------------------------------------------------


def test_cutoff_median_for_eta_2() -> None:
    # q = 0.5 of [1, 2, 3, 4]: index 1.5, between 2 and 3 -> 2.5.
    others = [3.0, 1.0, 4.0, 2.0]
    assert stop_decision(2.5, others, 2, "max") is CONTINUE  # a tie continues
    assert stop_decision(2.4, others, 2, "max") is STOP
    assert stop_decision(2.6, others, 2, "max") is CONTINUE


def test_cutoff_two_thirds_for_eta_3() -> None:
    # q = 2/3 of [0.1, 0.5, 0.9]: index 4/3 -> 0.5 + 0.4 / 3 = 0.6333...
    others = [0.9, 0.1, 0.5]
    assert stop_decision(0.634, others, 3, "max") is CONTINUE
    assert stop_decision(0.633, others, 3, "max") is STOP


def test_cutoff_single_other_is_its_value() -> None:
    assert stop_decision(1.0, [1.0], 4, "max") is CONTINUE
    assert stop_decision(0.99, [1.0], 4, "max") is STOP


def test_ties_continue() -> None:
    assert stop_decision(1.0, [1.0, 1.0, 1.0], 3, "max") is CONTINUE
    assert stop_decision(0.5, [0.5, 0.5], 2, "min") is CONTINUE
    assert stop_decision(0.999, [1.0, 1.0, 1.0], 3, "max") is STOP


def test_empty_rung_continues() -> None:
    assert stop_decision(-1e300, [], 3, "max") is CONTINUE
    assert stop_decision(1e300, [], 3, "min") is CONTINUE


def test_nan_others_are_ignored() -> None:
    assert stop_decision(-1e300, [NAN, NAN, NAN], 2, "max") is CONTINUE
    # NaNs neither raise nor lower the cutoff: still 2.5 as without them.
    others = [NAN, 1.0, 2.0, NAN, 3.0, 4.0, NAN]
    assert stop_decision(2.5, others, 2, "max") is CONTINUE
    assert stop_decision(2.4, others, 2, "max") is STOP


def test_nan_value_continues() -> None:
    # NaN < cutoff is False, so a diverged trial is not stopped by this rule (Ray does the same).
    assert stop_decision(NAN, [1.0, 2.0, 3.0], 3, "max") is CONTINUE
    assert stop_decision(NAN, [1.0, 2.0, 3.0], 3, "min") is CONTINUE


def test_infinite_neighbours_give_no_cutoff() -> None:
    # numpy interpolates inf - inf = NaN; Ray then continues every trial.
    assert stop_decision(-math.inf, [math.inf], 3, "max") is CONTINUE
    assert stop_decision(0.0, [1.0, math.inf], 2, "max") is CONTINUE


def test_mode_min_negates() -> None:
    # Negated others [-4, -3, -2, -1]; cutoff -2.5, i.e. stop above 2.5.
    others = [1.0, 2.0, 3.0, 4.0]
    assert stop_decision(2.5, others, 2, "min") is CONTINUE
    assert stop_decision(2.4, others, 2, "min") is CONTINUE
    assert stop_decision(2.6, others, 2, "min") is STOP


@pytest.mark.parametrize(("eta", "mode"), [(1, "max"), (0, "min"), (3, "maximize"), (3, "")])
def test_stop_decision_rejects(eta: int, mode: str) -> None:
    with pytest.raises(ValueError):
        stop_decision(1.0, [1.0], eta, mode)


def test_decide_excludes_the_trial_itself() -> None:
    rung = {"me": 0.0, "a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    # Against a..d the cutoff is 2.5; counting "me" too it would be 2.0.
    assert decide(rung, "me", 2.4, 2, "max") is STOP
    assert decide({k: v for k, v in rung.items() if k != "me"}, "me", 2.4, 2, "max") is STOP
    assert decide(rung, "new", 2.4, 2, "max") is CONTINUE
    assert decide({"me": 5.0}, "me", 0.0, 2, "max") is CONTINUE


# --- promotion ------------------------------------------------------------------------------


def _empty(n: int) -> list[set[str]]:
    return [set() for _ in range(n)]


def test_nothing_promotable_below_eta_trials() -> None:
    rungs = [{"a": 1.0, "b": 2.0}, {}, {}]
    assert promotion(rungs, _empty(3), 3, "max") is None
    assert promotion([{}, {}, {}], _empty(3), 3, "max") is None


def test_best_of_rung_0_promoted() -> None:
    rungs = [{"a": 1.0, "b": 3.0, "c": 2.0}, {}, {}]
    assert promotion(rungs, _empty(3), 3, "max") == ("b", 1)
    assert promotion(rungs, _empty(3), 3, "min") == ("a", 1)


def test_already_promoted_skipped() -> None:
    rungs = [{"a": 1.0, "b": 3.0, "c": 2.0}, {"b": 3.5}, {}]
    assert promotion(rungs, [{"b"}, set(), set()], 3, "max") is None
    six = {"a": 1.0, "b": 6.0, "c": 2.0, "d": 3.0, "e": 4.0, "f": 5.0}
    assert promotion([six, {}, {}], [{"b"}, set(), set()], 3, "max") == ("f", 1)
    assert promotion([six, {}, {}], [{"b", "f"}, set(), set()], 3, "max") is None


def test_busy_skipped() -> None:
    rungs = [{"a": 1.0, "b": 3.0, "c": 2.0}, {}, {}]
    assert promotion(rungs, _empty(3), 3, "max", busy={"b"}) is None
    six = {"a": 1.0, "b": 6.0, "c": 2.0, "d": 3.0, "e": 4.0, "f": 5.0}
    assert promotion([six, {}, {}], _empty(3), 3, "max", busy=frozenset({"b"})) == ("f", 1)


def test_higher_rung_preferred() -> None:
    rung0 = {f"t{i}": float(i) for i in range(6)}  # eta 2, quota 3: t5, t4, t3
    rung1 = {"t5": 0.9, "t4": 0.1}  # quota 1: t5
    promoted = [{"t5", "t4"}, set(), set()]
    # t3 could still leave rung 0, but t5 can leave rung 1, which comes first.
    assert promotion([rung0, rung1, {}], promoted, 2, "max") == ("t5", 2)
    assert promotion([rung0, rung1, {"t5": 1.0}], [promoted[0], {"t5"}, set()], 2, "max") == (
        "t3",
        1,
    )
    assert promotion([rung0, rung1, {}], promoted, 2, "max", busy={"t5"}) == ("t3", 1)


def test_nan_never_promoted_over_real_values() -> None:
    rungs = [{"a": NAN, "b": 1.0, "c": 0.5}, {}]
    assert promotion(rungs, _empty(2), 3, "max") == ("b", 1)
    assert promotion(rungs, _empty(2), 3, "min") == ("c", 1)
    # Quota 2 with one real value: the NaN trial only fills the second place.
    six = {"a": NAN, "b": NAN, "c": NAN, "d": NAN, "e": NAN, "z": -1e300}
    assert promotion([six, {}], _empty(2), 3, "max") == ("z", 1)
    assert promotion([six, {}], [{"z"}, set()], 3, "max") == ("a", 1)
    assert promotion([six, {}], [{"z", "a"}, set()], 3, "max") is None


def test_ties_and_nans_broken_by_trial_id() -> None:
    assert promotion([{"c": 1.0, "b": 1.0, "a": 0.0}, {}], _empty(2), 3, "max") == ("b", 1)
    all_nan = {t: NAN for t in "fedcba"}  # insertion order must not matter
    assert promotion([all_nan, {}], _empty(2), 3, "max") == ("a", 1)
    assert promotion([all_nan, {}], [{"a"}, set()], 3, "max") == ("b", 1)
    assert promotion([all_nan, {}], [{"a", "b"}, set()], 3, "min") is None


def test_top_rung_never_promoted() -> None:
    top = {"x": 1.0, "y": 2.0, "z": 3.0}
    assert promotion([{}, top], _empty(2), 3, "max") is None
    assert promotion([top], _empty(1), 3, "max") is None
    assert promotion([], [], 3, "max") is None


def test_promotion_rejects() -> None:
    with pytest.raises(ValueError, match="promoted"):
        promotion([{}, {}], [set()], 3, "max")
    with pytest.raises(ValueError, match="mode"):
        promotion([{}], [set()], 3, "best")
    with pytest.raises(ValueError, match="reduction_factor"):
        promotion([{}], [set()], 1, "max")


# --- several objectives (MOASHA) ---------------------------------------------------------------

#: Accuracy up, latency down: the modes of the multi-objective scenarios below.
ACC_LAT = ("max", "min")
#: A front of three (none dominates another): more accurate is slower.
FRONT = {"a": (0.9, 0.010), "b": (0.8, 0.005), "c": (0.7, 0.002)}


def test_dominated_trial_stops() -> None:
    # Worse than every trial of the front in both objectives: last of 4; 3 * 3 > 4.
    assert decide(FRONT, "d", (0.6, 0.020), 3, ACC_LAT) is STOP
    # Dominated by one trial only, but still in the second front: last again.
    assert decide(FRONT, "d", (0.69, 0.003), 3, ACC_LAT) is STOP


def test_front_member_continues() -> None:
    # Most accurate of all: the ε-net starts a front with the best first objective.
    assert decide(FRONT, "d", (0.95, 0.030), 3, ACC_LAT) is CONTINUE
    # Fastest of all: in the front, farthest from the most accurate, so placed second;
    # the first floor(4 / 3) + 1 = 2 places continue.
    assert decide(FRONT, "d", (0.5, 0.001), 3, ACC_LAT) is CONTINUE


def test_crowded_front_member_stops_when_the_front_exceeds_the_quota() -> None:
    # (0.85, 0.007) is on the front too, but between a and b: the ε-net places a, then c
    # (farthest from a), then b (0.1 from a) before it (0.05 from a). Fourth of 4 stops.
    assert decide(FRONT, "d", (0.85, 0.007), 3, ACC_LAT) is STOP
    assert rank({**FRONT, "d": (0.85, 0.007)}, ACC_LAT) == ["a", "c", "b", "d"]
    # With eta 2 the first 3 places continue; the crowded member is still fourth.
    assert decide(FRONT, "d", (0.85, 0.007), 2, ACC_LAT) is STOP
    # Two dominated trials more (n = 6): the first 4 places continue, the fourth included.
    assert decide({**FRONT, "e": (0.1, 0.5), "f": (0.2, 0.6)}, "d", (0.85, 0.007), 2, ACC_LAT) is CONTINUE


def test_ties_go_to_the_trial_already_recorded() -> None:
    # An identical value ranks after the one recorded, whatever the trial ids.
    for me in ("0", "z"):
        assert decide({"m": (1.0, 1.0)}, me, (1.0, 1.0), 2, ACC_LAT) is CONTINUE  # 2nd of 2: 1 * 2 > 2 is False
        assert decide({"m": (1.0, 1.0)}, me, (1.0, 1.0), 3, ACC_LAT) is STOP  # 1 * 3 > 2
    # A front of three whose last two are equally far from the first (the ε-net's seed, best
    # in objective 0): the smaller trial id is placed first, whichever point it has.
    x, y, z = (2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 2.0)
    assert rank({"p": x, "q": y, "r": z}, ("max",) * 3) == ["p", "q", "r"]
    assert rank({"p": x, "r": y, "q": z}, ("max",) * 3) == ["p", "q", "r"]
    # Equally far from the seed as a recorded trial, the new one is placed after it: third of
    # 3 (2 * 2 > 3 stops); a hair farther, it is placed second and continues.
    assert stop_decision(z, [x, y], 2, ("max",) * 3) is STOP
    assert stop_decision((0.0, 0.0, 2.01), [x, y], 2, ("max",) * 3) is CONTINUE


def test_nans_in_several_objectives() -> None:
    # A NaN coordinate: the trial itself continues; others with one are ignored (as Ray
    # ignores NaN values for one objective).
    assert decide(FRONT, "d", (NAN, 0.001), 3, ACC_LAT) is CONTINUE
    assert decide({"n": (NAN, 0.0), "m": (0.5, NAN)}, "d", (0.0, 9.0), 3, ACC_LAT) is CONTINUE
    assert rank({"n": (NAN, 0.0), **FRONT, "m": (0.5, NAN)}, ACC_LAT)[-2:] == ["m", "n"]
    assert pareto_front({"n": (NAN, 0.0)}, ACC_LAT) == set()


def test_pareto_front() -> None:
    rung = {**FRONT, "d": (0.6, 0.020), "e": (0.8, 0.005)}  # e ties b: both on the front
    assert pareto_front(rung, ACC_LAT) == {"a", "b", "c", "e"}
    assert pareto_front({"x": 1.0, "y": 2.0, "z": 2.0}, "max") == {"y", "z"}


def test_promotion_with_several_objectives() -> None:
    rung0 = {**FRONT, "d": (0.6, 0.020), "e": (0.5, 0.030), "f": (0.4, 0.040)}
    # Quota 6 // 3 = 2: the ε-net's first two of the front (a, then c); d, e, f are dominated.
    assert promotion([rung0, {}], _empty(2), 3, ACC_LAT) == ("a", 1)
    assert promotion([rung0, {}], [{"a"}, set()], 3, ACC_LAT) == ("c", 1)
    assert promotion([rung0, {}], [{"a", "c"}, set()], 3, ACC_LAT) is None


def test_one_objective_rank_is_a_sort_by_value_then_trial_id() -> None:
    # The degenerate case of non-dominated sorting: what promotion ranked by before objectives.
    import random

    rng = random.Random(5)
    for _ in range(300):
        values = {f"t{i}": rng.choice((NAN, 0.0, -0.0, 1.0, 2.0, math.inf, -math.inf, rng.random())) for i in rng.sample(range(40), rng.randint(0, 12))}
        for mode, sign in (("max", 1.0), ("min", -1.0)):
            expected = sorted(values, key=lambda t: (math.isnan(values[t]), 0.0 if math.isnan(values[t]) else -sign * values[t], t))
            assert rank(values, mode) == expected
            assert rank({t: (v,) for t, v in values.items()}, (mode,)) == expected


def test_one_objective_as_a_tuple_is_the_same_stop_rule() -> None:
    others = [3.0, 1.0, NAN, 4.0, 2.0]
    for value in (2.4, 2.5, 2.6, NAN):
        for mode in ("max", "min"):
            assert stop_decision((value,), [(v,) for v in others], 2, (mode,)) is stop_decision(value, others, 2, mode)


def test_objectives_must_match_the_value() -> None:
    with pytest.raises(ValueError, match="coordinates"):
        stop_decision((1.0, 2.0), [(1.0, 2.0)], 3, "max")
    with pytest.raises(ValueError, match="coordinates"):
        decide({"a": (1.0,)}, "b", (1.0, 2.0), 3, ACC_LAT)
    with pytest.raises(ValueError, match="at least one"):
        rank({"a": ()}, ())
    with pytest.raises(ValueError, match="mode"):
        promotion([{"a": (1.0, 2.0)}], [set()], 3, ("max", "best"))
