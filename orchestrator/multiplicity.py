"""Adjusting p-values for the number of comparisons a report makes.

A report that tests the leader against nine trials and a baseline, or three retrained
configurations against two fixed points, says "better" somewhere far more often than 5 % of
the time when nothing differs: ten independent tests at 5 % find at least one "difference"
in 40 % of null sweeps. Every p-value a report turns into words is therefore adjusted over
the family of tests that report makes, by Holm's step-down procedure (Holm 1979): sort the m
p-values, multiply the i-th smallest by m − i + 1, keep the running maximum, cap at 1. It
controls the family-wise error rate at α under any dependence between the tests (the leader
appears in every comparison of a search report, so they are dependent), and is uniformly
more powerful than Bonferroni. Checked against ``statsmodels.stats.multitest.multipletests(
method="holm")`` in the tests.

Pure Python: reading a cached report adjusts its p-values without importing scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: What the reports call the adjustment.
METHOD = "Holm"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given. NaN entries (a comparison that could not be
    made: no paired data, fewer than two runs) are not tests: they stay NaN and do not count
    in the family's size."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def family_size(p_values: Sequence[float]) -> int:
    """How many tests a family holds (its non-NaN p-values)."""
    return sum(1 for p in p_values if not math.isnan(p))
