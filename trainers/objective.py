"""The topology search's objective (METHODS.md §2, seed 002 eqs. 4–6): normalised latency and
accuracy scores and their harmonic mean J, which the sweep maximises.

With speed weight r_t > 0, floors t_min, a_min and references t_max, a_max (the teacher's
latency and accuracy unless the user sets them), and w = 1/r_t::

    j_t(t) = w                                    if t < t_min
             w·(t_max − t)/(t_max − t_min)        if t_min ≤ t ≤ t_max
             0                                    if t > t_max
    j_a(a) = 0                                    if a < a_min
             (a − a_min)/(w·(a_max − a_min))      if a_min ≤ a ≤ a_max
             1/w                                  if a > a_max
    J      = 2·j_t·j_a/(j_t + j_a),   J = 0 when j_t = j_a = 0

Pure Python, no torch: reports and the config loader use it.

Why w = 1/r_t and not r_t as METHODS prints eqs. 4–5. With x = j_t/w and y = w·j_a (both in
[0, 1]), J = (2·w/(1 + w²))·F_β(x, y) with β = w: van Rijsbergen's F-measure, which counts y
(accuracy) β times as much as x (speed). A harmonic mean follows its *smaller* term, so the
score whose range is scaled down is the one that decides. Printed literally (w = r_t), r_t > 1
would favour accuracy — the reverse of what the seed says r_t does ("速度重視パラメータ",
speed-emphasis parameter; "r_t > 1 favours speed" in METHODS), of its Fig. 3 (r_t = 5 makes
the accuracy axis' scale large and the latency axis' small: j_a ∈ [0, r_t], j_t ∈ [0, 1/r_t]),
and of its Table 4, whose r_t = 10 search found the fastest student (0.081 s, 0.664) and whose
r_t = 1/100 search the most accurate (0.277 s, 0.899): scored with the printed formulas those
two rank the other way round. So the scores are scaled as Fig. 3 draws them, and r_t means
what its name says: r_t > 1 favours speed, r_t < 1 accuracy, r_t = 1 is eqs. 4–6 exactly.
``tests/trainers/test_objective.py`` pins the values and the direction.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class ObjectiveSettings:
    """The sweep file's ``[objective]`` table. ``t_max``/``a_max`` left unset (None) are the
    teacher's latency and validation accuracy, measured once per sweep; set, they override it.
    Latencies are in seconds (the trainer's ``latency_s``), accuracies in [0, 1]."""

    #: Speed weight: > 1 favours speed, < 1 accuracy (j_t ranges over [0, 1/r_t], j_a over
    #: [0, r_t]; see the module docstring for why that way round).
    r_t: float = 1.0
    #: Latency floor: a student faster than this scores the full 1/r_t.
    t_min: float = 0.0
    #: Accuracy floor: a student less accurate than this scores 0.
    a_min: float = 0.0
    t_max: float | None = None
    a_max: float | None = None
    #: Hard limits: a student over either is rejected before its first epoch (None: no limit).
    max_latency_s: float | None = None
    max_params: int | None = None


@dataclasses.dataclass(frozen=True)
class Scores:
    """A student's latency score, accuracy score and their harmonic mean."""

    j_t: float
    j_a: float
    J: float


def check_objective(o: ObjectiveSettings) -> list[tuple[str, object, str]]:
    """Every bad field of ``o`` as ``(field, value, allowed)``; empty when all are fine.
    Comparisons are written so that NaN fails them."""
    issues: list[tuple[str, object, str]] = []
    if not (math.isfinite(o.r_t) and o.r_t > 0):
        issues.append(("objective.r_t", o.r_t, "a finite number > 0 (r_t > 1 favours speed, < 1 accuracy)"))
    if not (math.isfinite(o.t_min) and o.t_min >= 0):
        issues.append(("objective.t_min", o.t_min, "a finite latency floor >= 0 in seconds"))
    if not (math.isfinite(o.a_min) and 0 <= o.a_min < 1):
        issues.append(("objective.a_min", o.a_min, "an accuracy floor in [0, 1)"))
    if o.t_max is not None and not (math.isfinite(o.t_max) and o.t_max > o.t_min):
        issues.append(("objective.t_max", o.t_max, f"unset (the teacher's latency) or a finite latency > t_min = {o.t_min}"))
    if o.max_latency_s is not None and not (math.isfinite(o.max_latency_s) and o.max_latency_s > 0):
        issues.append(("objective.max_latency_s", o.max_latency_s, "unset (no limit) or a finite latency > 0 in seconds"))
    if o.max_params is not None and not o.max_params > 0:
        issues.append(("objective.max_params", o.max_params, "unset (no limit) or an integer > 0"))
    if o.a_max is not None and not (o.a_min < o.a_max <= 1):
        issues.append(("objective.a_max", o.a_max, f"unset (the teacher's accuracy) or an accuracy in (a_min = {o.a_min}, 1]"))
    return issues


def j_t(t: float, *, r_t: float, t_min: float, t_max: float) -> float:
    """Latency score of a student with latency ``t`` (eq. 4, scaled by 1/r_t): 1/r_t below the
    floor, 0 above the reference, linear in between. Raises ValueError for NaN or
    ``t_max <= t_min``."""
    if math.isnan(t):
        raise ValueError("latency is NaN")
    if not t_max > t_min:
        raise ValueError(f"t_max ({t_max}) must exceed t_min ({t_min}); is the measured teacher faster than the floor?")
    w = 1.0 / r_t
    if t < t_min:
        return w
    if t > t_max:
        return 0.0
    return w * (t_max - t) / (t_max - t_min)


def j_a(a: float, *, r_t: float, a_min: float, a_max: float) -> float:
    """Accuracy score of a student with accuracy ``a`` (eq. 5, scaled by r_t): 0 below the
    floor, r_t above the reference, linear in between. Raises ValueError for NaN or
    ``a_max <= a_min``."""
    if math.isnan(a):
        raise ValueError("accuracy is NaN")
    if not a_max > a_min:
        raise ValueError(f"a_max ({a_max}) must exceed a_min ({a_min}); is the teacher no better than the floor?")
    w = 1.0 / r_t
    if a < a_min:
        return 0.0
    if a > a_max:
        return 1.0 / w
    return (a - a_min) / (w * (a_max - a_min))


def harmonic_J(jt: float, ja: float) -> float:
    """2·jt·ja/(jt + ja) (eq. 6), defined as 0 when both scores are 0."""
    total = jt + ja
    return 0.0 if total == 0 else 2.0 * jt * ja / total


def scores(t: float, a: float, *, r_t: float, t_min: float, t_max: float, a_min: float, a_max: float) -> Scores:
    """j_t(t), j_a(a) and J for latency ``t`` and accuracy ``a`` against resolved references."""
    jt = j_t(t, r_t=r_t, t_min=t_min, t_max=t_max)
    ja = j_a(a, r_t=r_t, a_min=a_min, a_max=a_max)
    return Scores(jt, ja, harmonic_J(jt, ja))
