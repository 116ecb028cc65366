"""Scenario tests of the ASHA rules with hand-chosen values (no Ray; see test_asha_vs_raytune)."""

from __future__ import annotations

import math

import pytest

from kdsweep.orchestrator.asha import (
    Decision,
    decide,
    promotion,
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
