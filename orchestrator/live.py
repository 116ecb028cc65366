"""The live view of a running sweep: counts by status, the leader so far, elapsed time.

The leader's id, metric and parameters are data (``safe_text.plain``): a choice value is shown
as written, never read as markup or sent to the terminal as a control sequence.
"""

from __future__ import annotations

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kdsweep.orchestrator.driver import Snapshot
from kdsweep.orchestrator.safe_text import plain

_ORDER = ("running", "queued", "paused", "completed", "stopped", "diverged", "failed", "rejected")


def render(s: Snapshot) -> Group:
    counts = Table.grid(padding=(0, 2))
    for key in _ORDER:
        counts.add_column(justify="right")
    counts.add_row(*(Text(key, style="bold") for key in _ORDER))
    counts.add_row(*(str(s.counts.get(key, 0)) for key in _ORDER))
    started = sum(s.counts.values())
    head = Text(f"{started}/{s.num_trials} trials started, {s.elapsed_s:.0f}s elapsed")
    if s.best_trial is None:
        best = Text("no result yet")
    else:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.best_params.items())
        best = plain(f"best {s.metric} {s.best_value:.4f} ({s.best_trial}: {params})")
    notices = [plain(f"! {n}", style="yellow") for n in s.notices]
    return Group(head, counts, best, *notices)


class LiveView:
    """A context manager whose ``update`` is the driver's ``on_update`` callback."""

    def __init__(self) -> None:
        self._live = Live(Text("starting..."), refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, snapshot: Snapshot) -> None:
        self._live.update(render(snapshot))
