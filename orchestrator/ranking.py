"""Which trial is best: one rule for the live view, the report and everything built on them.

A trial that trained further ranks first: a 27-epoch result and a 1-epoch one are not
comparable, and the longer one is what a researcher would deploy (it is also how Optuna's
TPE orders pruned trials: by the last step reached, then by value). Among trials that
trained as far, the better value of the sweep's primary metric ranks first; a trial
without a value (nothing reported yet, or NaN) ranks last; the trial id breaks ties.
"""

from __future__ import annotations

import math


def rank_key(trial_id: str, epochs: int, value: float | None, mode: str) -> tuple[int, int, float, str]:
    """Sort key of a trial under the rule above (ascending = best first); ``mode`` is the
    primary metric's "max" or "min"."""
    missing = value is None or math.isnan(value)
    sign = 1.0 if mode == "max" else -1.0
    return (-epochs, int(missing), 0.0 if missing or value is None else -sign * value, trial_id)
