"""Hyperband brackets for ASHA (``[asha] brackets = N``), as Ray Tune's
``AsyncHyperBandScheduler(brackets=N)`` assigns and runs them: bracket ``s`` (0 .. N-1) makes
its first decision at the ladder's ``s``-th rung (``min_epochs * η**s``), so the later brackets
hedge against a first rung that is too early to judge; a trial is compared only with the
trials of its own bracket. Each new trial draws its bracket with probability proportional to
``e**(its rung count)`` (Ray's ``on_trial_add``), from an RNG seeded by the sweep's seed and
the trial id (Ray draws from numpy's global RNG), so any host, and a resumed driver, gets the
same bracket for the same trial without storing it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


class Brackets:
    """Which bracket each trial is in, of ``count`` brackets (1: plain ASHA, every trial in
    bracket 0), in a sweep seeded ``seed``."""

    def __init__(self, count: int, seed: int) -> None:
        self.count, self.seed = count, seed
        # Ray: p(s) ~ e**(size(s) - max size), and bracket s has one rung fewer than s - 1.
        weights = [math.exp(-s) for s in range(count)]
        total = sum(weights)
        self._cumulative = [sum(weights[: s + 1]) / total for s in range(count)]
        self._of: dict[str, int] = {}

    def of(self, trial_id: str) -> int:
        """The bracket of ``trial_id``: the same on every host and every call."""
        if self.count == 1:
            return 0
        bracket = self._of.get(trial_id)
        if bracket is None:
            draw = random.Random(f"{self.seed}:{trial_id}:bracket").random()
            bracket = self._of[trial_id] = next((s for s, c in enumerate(self._cumulative) if draw < c), self.count - 1)
        return bracket

    def members(self, values: Mapping[str, V], bracket: int) -> Mapping[str, V]:
        """The entries of ``values`` (trial id -> anything) whose trial is in ``bracket``."""
        if self.count == 1:
            return values  # a worker decides on a rung of 10 000 trials: no copy
        return {tid: v for tid, v in values.items() if self.of(tid) == bracket}
