"""The report's statistics, computed once per state of the results.

The leaderboard's intervals and paired tests (:mod:`significance`, scipy.stats), the
parameter tendencies (:mod:`tendencies`, Optuna's fANOVA over scikit-learn) and the
final-stage comparisons (Welch's t-test, scipy.stats) cost about a second of imports before
the first number, three times what reading a run costs. They are pure functions of the
run's summary, so whoever computes them — the report at the end of ``kdsweep launch`` and
``retrain``, the HTML page, or a first ``kdsweep report`` — keeps them in
``RUN_DIR/cache/analyses.json`` under the :func:`digest` of everything they read, and a
report of unchanged results reads them back without importing scipy, Optuna or
scikit-learn. A run that changed (it is running, was resumed or retrained), other code or
other library versions give another digest, and the statistics are computed afresh.

The file is a speed-up, never a source of truth: one that is missing, unreadable, of another
digest or of another shape is ignored, and one that cannot be written (a read-only copy of a
run, a full disk) is not written, silently. It holds JSON only: reading a run never executes
anything from it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import types
import typing
import warnings
from pathlib import Path
from typing import Any

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.atomic import PlantedLinkError, read_bytes, write_atomic
from kdsweep.orchestrator import tendencies
from kdsweep.orchestrator.significance import Comparison, Significance, adjust, analyse, final_comparisons
from kdsweep.orchestrator.summary import RunSummary
from kdsweep.orchestrator.tendencies import Tendencies

#: Modules whose code decides the numbers (a change to any of them changes the digest).
_CODE = ("analyses", "summary", "report", "significance", "multiplicity", "tendencies", "export", "schema", "store", "asha", "ranking", "space", "config")
#: Libraries whose versions decide the numbers.
_LIBRARIES = ("numpy", "scipy", "optuna", "scikit-learn")


@dataclasses.dataclass(frozen=True)
class Analyses:
    """The statistics of one summary. ``significance`` compares the leader with every rank
    below it (:meth:`significance_top` cuts that to a leaderboard's length); ``tendencies``
    (at rung 0, the searcher's sample) is None when too few trials reached it, ``survivors``
    when no higher rung has enough; ``comparisons`` are the final stage's
    (``significance.final_comparisons``)."""

    significance: Significance
    tendencies: Tendencies | None
    comparisons: list[Comparison]
    #: The second analysis of the tendencies, among ASHA's survivors (``tendencies.analyses``).
    survivors: Tendencies | None = None

    def significance_top(self, top: int | None) -> Significance:
        """What ``significance.analyse(summary, top)`` returns: the leader against ranks
        2..``top`` (every rank when None), Holm-adjusted over the comparisons a report of
        that length makes."""
        if top is None:
            return self.significance
        return adjust(dataclasses.replace(self.significance, ranks=self.significance.ranks[: max(0, top - 1)]))


def of(summary: RunSummary) -> Analyses:
    """The analyses of ``summary`` (:func:`_read_or_compute`), once per summary: kept on it
    (``RunSummary.memo``), every later reader of the same summary gets them from there."""
    kept = summary.memo.get(__name__)
    if isinstance(kept, Analyses):
        return kept
    found = summary.memo[__name__] = _read_or_compute(summary)
    return found


def _read_or_compute(summary: RunSummary) -> Analyses:
    """From the run's cache when the digest matches, else computed (and kept in the cache
    when the run directory takes it)."""
    if summary.run_dir is None:
        return compute(summary)
    path = summary.run_dir / layout.CACHE / layout.ANALYSES
    key = digest(summary)
    try:
        cached = _load(path, key)
    except PlantedLinkError as exc:
        # Neither read (it could feed the report forged statistics) nor written through.
        warnings.warn(f"{exc.filename}: {exc.strerror}; the statistics are computed afresh and not kept", stacklevel=2)
        return compute(summary)
    if cached is not None:
        return cached
    fresh = compute(summary)
    try:
        write_atomic(path, json.dumps({"digest": key, "analyses": fresh}, default=_plain).encode())
    except (OSError, TypeError, ValueError):
        pass  # a read-only copy of a run, a full disk, a parameter JSON cannot hold: the cache only saves time
    return fresh


def compute(summary: RunSummary) -> Analyses:
    """Every statistic, from scratch."""
    first, second = tendencies.analyses(summary)
    return Analyses(analyse(summary, len(summary.trials)), first, final_comparisons(summary), second)


def digest(summary: RunSummary) -> str:
    """sha256 over what the analyses read (the sweep and its resolved space, which a trainer
    may generate, the ranked trials, every search row — by the identity of the files they were
    read from — the rung values and the final results) and over what computes them
    (:data:`_CODE`, :data:`_LIBRARIES`)."""
    h = hashlib.sha256(_code_identity().encode())
    # The rows by the files they were read from when the summary knows them (equal files,
    # equal rows: ``Store.identity``), else by their values: serialising 10 000 trials' rows
    # took most of a second of a report.
    rows = summary.results_identity if summary.results_identity is not None else summary.rows
    for part in (summary.cfg.document, summary.cfg.space, summary.trials, rows, summary.rung_values, summary.rungs, summary.final):
        h.update(json.dumps(part, default=_plain).encode())
    return h.hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Its fields as they are (json.dumps comes back here for nested ones): asdict's deep
        # copy of 10 000 trial summaries took two seconds of a report.
        return vars(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # datetimes, paths


@functools.cache
def _code_identity() -> str:
    h = hashlib.sha256()
    for name in _CODE:
        spec = importlib.util.find_spec(f"kdsweep.orchestrator.{name}")
        if spec is None or spec.origin is None:
            raise RuntimeError(f"kdsweep.orchestrator.{name} has no source file")
        source = Path(spec.origin).read_bytes()
        h.update(f"{name}\0{len(source)}\0".encode() + source)
    for lib in _LIBRARIES:
        h.update(f"{lib}={importlib.metadata.version(lib)}".encode())
    return h.hexdigest()


def _load(path: Path, key: str) -> Analyses | None:
    try:
        doc = json.loads(read_bytes(path))
        if doc["digest"] != key:
            return None
        return typing.cast(Analyses, _decode(Analyses, doc["analyses"]))
    except PlantedLinkError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, torn by hand, or of another shape: computed afresh


@functools.cache
def _fields(kind: type) -> list[tuple[str, Any]]:
    """A dataclass's fields with their resolved types."""
    hints = typing.get_type_hints(kind)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(kind)]


def _decode(kind: Any, value: Any) -> Any:
    """``value`` as JSON gave it, rebuilt as ``kind``: dataclasses field by field, lists,
    dicts and optionals element by element, anything else (numbers, strings, ``Any``) as is.
    JSON keeps every float exactly (NaN included, as Python writes it)."""
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return kind(**{name: _decode(hint, value[name]) for name, hint in _fields(kind)})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    if origin in (types.UnionType, typing.Union) and value is not None:
        return _decode(next(a for a in args if a is not type(None)), value)
    return value
