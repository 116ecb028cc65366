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

import numpy as np
import numpy.typing as npt
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
    #: A value the trainer reported (a loss or a metric) was NaN or infinite: the trial ended
    #: at that epoch, without a retry. ``error`` names the value and the epoch. Diverged
    #: trials count against ``num_trials`` but never enter the leaderboard or the statistics.
    DIVERGED = "diverged"


#: Events after which a trial never trains again.
TERMINAL_EVENTS = frozenset(
    {Event.COMPLETED.value, Event.STOPPED.value, Event.FAILED.value, Event.REJECTED.value, Event.DIVERGED.value}
)


def event_rank(event: str) -> int:
    """Where an event falls among one trial's rows of the same epoch: its report (0), then
    its pause (1), then its end (2) (:func:`trial_order_key`)."""
    return 0 if event == Event.REPORT.value else 1 if event == Event.PAUSED.value else 2


def trial_order_key(event: str, epoch: int) -> tuple[int, int]:
    """The order of one trial's rows, as the engine writes them: by epoch, and within an epoch
    the report, then the pause, then the end.

    The row keys (:func:`row_key`) allow one report and one pause per epoch and one end per
    trial, and a trial never trains past its end, so this is a total order of a trial's rows
    that no clock enters: a node whose clock runs an hour behind, or an NTP step mid-sweep,
    cannot make an earlier row look like the last one.
    """
    return (epoch, event_rank(event))


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

#: The accuracy that ``val_n`` and ``val_correct`` describe: the validation accuracy every
#: classifying trainer reports (whatever the sweep ranks by, e.g. a combined score J).
ACCURACY = "val_acc"

#: The columns of a curve-aware scheduler's prediction (see ``TRAILING_FIELDS``).
PREDICTED = "predicted"
PREDICTED_STD = "predicted_std"
#: Columns after metrics and parameters.
TRAILING_FIELDS: tuple[pa.Field, ...] = (
    # How many validation examples ``val_acc`` was counted over (its binomial denominator).
    # Null where the trainer has no examples (the synthetic trainer's closed-form curves) and
    # in fragments written before the column existed.
    pa.field("val_n", pa.int64()),
    # Which of those examples the model got right, packed by :func:`pack_correct`; recorded on
    # report rows at rung milestones and at the end of a trial's budget only (the paired tests
    # compare trials there). Null elsewhere, for trainers without examples and in older runs.
    pa.field("val_correct", pa.binary()),
    # A curve-aware scheduler's prediction of the trial's metric at the top rung
    # (max_epochs when the ladder reaches it), made from its curve up to this report, and the
    # prediction's standard deviation (``[asha] extrapolate``): on report rows at rung
    # milestones below the top one, null elsewhere, without extrapolation and in fragments
    # written before the columns existed.
    pa.field("predicted", pa.float64()),
    pa.field("predicted_std", pa.float64()),
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

#: Columns every fragment must carry; ``error``, ``node``, ``stage``, ``val_n``,
#: ``val_correct`` and the prediction's are optional (null when absent: ``stage`` came later,
#: and a null one means "search"; the validation columns came later still, the predictions
#: last).
REQUIRED_COLUMNS: frozenset[str] = frozenset(
    f.name
    for f in LEADING_FIELDS + TRAILING_FIELDS
    if f.name not in ("error", "node", "stage", "val_n", "val_correct", PREDICTED, PREDICTED_STD)
)


def pack_correct(correct: npt.ArrayLike) -> bytes:
    """The ``val_correct`` cell of a 1-D boolean vector (one entry per validation example, in
    the split's fixed order): one bit per example, example ``i`` in bit ``i % 8`` (least
    significant first) of byte ``i // 8``, the last byte zero-padded — ``numpy.packbits(...,
    bitorder="little")``. The length is not stored: it is the row's ``val_n``."""
    return np.packbits(np.asarray(correct, dtype=bool), bitorder="little").tobytes()


def unpack_correct(packed: bytes, n: int) -> npt.NDArray[np.bool_]:
    """The ``n`` per-example booleans of a ``val_correct`` cell (:func:`pack_correct`).
    Raises ValueError when ``packed`` does not hold exactly ``ceil(n / 8)`` bytes."""
    if len(packed) != (n + 7) // 8:
        raise ValueError(f"val_correct holds {len(packed)} bytes, but val_n = {n} needs {(n + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=n, bitorder="little")
    return bits.astype(bool)


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
    clash = {f.name for f in LEADING_FIELDS + TRAILING_FIELDS}.intersection(metric_names)
    if clash:
        raise ValueError(f"metric names {sorted(clash)} collide with result columns")
    fields = list(LEADING_FIELDS)
    fields += [pa.field(name, pa.float64()) for name in metric_names]
    fields += [pa.field(PARAM_PREFIX + name, t) for name, t in param_types.items()]
    fields += list(TRAILING_FIELDS)
    return pa.schema(fields, metadata={b"kdsweep.schema_version": str(SCHEMA_VERSION).encode()})
