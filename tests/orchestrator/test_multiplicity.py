"""Holm's adjustment, checked against statsmodels' ``multipletests(method="holm")`` and by
hand, and its family-wise error rate measured where every null hypothesis is true."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from kdsweep.orchestrator.multiplicity import family_size, holm


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.02, 0.04 over m = 3: 3·0.01 = 0.03, 2·0.02 = 0.04, 1·0.04 = 0.04 (running max).
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


@pytest.mark.parametrize("seed", range(20))
def test_holm_matches_statsmodels_and_ignores_untestable_comparisons(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 30))
    p = rng.uniform(0, 1, m) ** 3  # many small ones
    p[rng.uniform(size=m) < 0.1] = 0.0
    with_nan = list(p) + [math.nan] * int(rng.integers(0, 4))
    order = rng.permutation(len(with_nan))
    shuffled = [with_nan[i] for i in order]
    adjusted = holm(shuffled)
    reference = dict(zip(np.flatnonzero(~np.isnan(shuffled)), multipletests([x for x in shuffled if not math.isnan(x)], method="holm")[1]))
    for i, value in enumerate(adjusted):
        if math.isnan(shuffled[i]):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(reference[i], abs=1e-12)
    assert family_size(shuffled) == m


def test_family_wise_error_rate_is_at_most_alpha_when_every_null_is_true() -> None:
    """10 independent true nulls per family, 10 000 families: unadjusted, some test says
    "different" in 1 − 0.95¹⁰ ≈ 40 % of them; adjusted, in at most 5 %."""
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(10_000, 10))
    raw = float(np.mean((p < 0.05).any(axis=1)))
    adjusted = float(np.mean([min(holm(list(row))) < 0.05 for row in p]))
    print(f"family-wise error: unadjusted {raw:.3f}, Holm {adjusted:.4f}")
    assert raw == pytest.approx(1 - 0.95**10, abs=0.02)
    assert adjusted <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 10_000)
