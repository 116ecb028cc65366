"""Where the engine reads time: the real clock, or the simulator's virtual one.

The driver and the worker take a :class:`Clock` instead of calling ``time`` directly, so
``kdsweep simulate`` runs the very same code with hours of cluster time passing in seconds:
elapsed times, ``wall_s`` and the ``reported_at`` of every row come from the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable


def _utc_now() -> dt.datetime:
    # From time.time(), the one wall clock the engine reads (fragment names use time_ns).
    return dt.datetime.fromtimestamp(time.time(), dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Clock:
    """``seconds()``: a monotonic reading in seconds (differences are durations);
    ``now()``: the current UTC time, stamped on rows."""

    seconds: Callable[[], float] = time.perf_counter
    now: Callable[[], dt.datetime] = _utc_now


#: The machine's clock.
REAL_CLOCK = Clock()


class VirtualClock:
    """A clock that moves only when told to (:meth:`advance_to`), starting at ``start``."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = 0.0
        self.start = start
        self.clock = Clock(seconds=lambda: self.t, now=lambda: self.start + dt.timedelta(seconds=self.t))

    def advance_to(self, t: float) -> None:
        """Move to virtual second ``t`` (never backwards)."""
        self.t = max(self.t, t)
