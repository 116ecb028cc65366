"""The results schema: one row per event of one trial (DESIGN.md, "Results schema").

Every fragment of a run is written with the same Arrow schema, built once from the sweep
config (metric names from the trainer, parameter types from the search space), so that plain
``pyarrow.dataset.dataset(RUN_DIR / "results")``, pandas, DuckDB and Polars read the whole run
without kdsweep. Required columns may gain siblings; none is renamed without bumping
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from importlib import metadata

import pyarrow as pa

SCHEMA_VERSION = 1
PARAM_PREFIX = "param."
NOT_AT_RUNG = -1


class Event(str, enum.Enum):
    """What a row records. ``report`` is an evaluation; the others end (or pause) an attempt."""

    REPORT = "report"
    COMPLETED = "completed"
    STOPPED = "stopped"
    PAUSED = "paused"
    FAILED = "failed"
    #: A proposal the trainer cannot train (``check_params``: e.g. an all-zero filter list);
    #: not a failure, and not counted in ``num_trials``. The reason is in ``error``.
    REJECTED = "rejected"


#: Events after which a trial never trains again.
TERMINAL_EVENTS = frozenset({Event.COMPLETED.value, Event.STOPPED.value, Event.FAILED.value, Event.REJECTED.value})


def row_key(trial_id: str, event: str, epoch: int) -> str:
    """The identity of a row, recorded at most once per run (``Store.append(key=...)``): one
    report and one pause per epoch of a trial, and one terminal event per trial, whichever
    process writes it (a retried attempt, a killed driver's orphan, the driver itself)."""
    if event in TERMINAL_EVENTS:
        return f"{trial_id}/end"
    return f"{trial_id}/{event}-e{epoch}"


class Stage(str, enum.Enum):
    """Which part of a run a row belongs to: the sweep, or ``kdsweep retrain``'s final runs."""

    SEARCH = "search"
    FINAL = "final"

#: Columns every fragment carries, in order, before metrics and parameters.
LEADING_FIELDS: tuple[pa.Field, ...] = (
    pa.field("sweep", pa.string(), nullable=False),
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),
    pa.field("epoch", pa.int32(), nullable=False),
    pa.field("rung", pa.int32(), nullable=False),
    pa.field("attempt", pa.int32(), nullable=False),
    # Where the trial's parameters came from: "fixed" (points_to_evaluate, e.g. a research
    # baseline), "tpe" or "random"; lets any tool compare the search with its baselines.
    pa.field("origin", pa.string(), nullable=False),
    # "search" (the sweep) or "final" (kdsweep retrain: full budget, test split evaluated).
    # Null only in fragments written before the column existed, which were all "search".
    pa.field("stage", pa.string()),
)

#: Columns after metrics and parameters.
TRAILING_FIELDS: tuple[pa.Field, ...] = (
    pa.field("wall_s", pa.float64()),
    pa.field("reported_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("host", pa.string()),
    pa.field("device", pa.string()),
    # The backend's name for the node an attempt ran on (the Ray node id), where the host
    # name does not tell: several Ray nodes may share one machine. Null where not set.
    pa.field("node", pa.string()),
    pa.field("error", pa.string()),
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("kdsweep_version", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
)

#: Columns every fragment must carry; ``error``, ``node`` and ``stage`` are optional (null
#: when absent: ``stage`` came later, and a null one means "search").
REQUIRED_COLUMNS: frozenset[str] = frozenset(
    f.name for f in LEADING_FIELDS + TRAILING_FIELDS if f.name not in ("error", "node", "stage")
)


@functools.cache
def kdsweep_version() -> str:
    """The installed distribution's version ("0+unknown" when run from an uninstalled tree)."""
    try:
        return metadata.version("kdsweep")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def results_schema(metric_names: Sequence[str], param_types: Mapping[str, pa.DataType]) -> pa.Schema:
    """The Arrow schema of a run: required columns, one float64 per metric, one per parameter.

    ``metric_names`` lists every metric the trainer may return (the sweep metric included);
    ``param_types`` maps a parameter name (without prefix) to its Arrow type.
    """
    clash = REQUIRED_COLUMNS.intersection(metric_names)
    if clash:
        raise ValueError(f"metric names {sorted(clash)} collide with required result columns")
    fields = list(LEADING_FIELDS)
    fields += [pa.field(name, pa.float64()) for name in metric_names]
    fields += [pa.field(PARAM_PREFIX + name, t) for name, t in param_types.items()]
    fields += list(TRAILING_FIELDS)
    return pa.schema(fields, metadata={b"kdsweep.schema_version": str(SCHEMA_VERSION).encode()})
