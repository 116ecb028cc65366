"""The results store: an append-only Parquet dataset under ``RUN_DIR/results/``.

The store is the single source of truth of a sweep. Workers on many hosts append
concurrently, one small immutable fragment per :meth:`Store.append`; readers (ASHA decisions
in workers, the driver, reports) read incrementally. No file is ever modified in place:

* a fragment is written to a hidden name (``"."`` + its final name; pyarrow datasets, pandas
  and this store ignore such names, so nobody sees a partial file), fsynced, renamed to
  ``part-<time_ns>-<host>-<pid>-<uuid>.parquet`` (the time is for people: rows are ordered by
  what their keys guarantee, never by a clock, see :meth:`Store.table`) and the directory is
  fsynced;
* an append with a ``key`` (every row the engine writes has one: ``<trial>/report-e<epoch>``,
  ``<trial>/end`` for the one terminal event, ...) first *claims* the key: a symbolic link
  ``results/.keys/<key>`` whose target is the fragment's final name, created between writing
  and renaming. Creating a link is atomic and exclusive on every POSIX file system, NFS
  included, so of two writers of the same key exactly one wins; the other learns that the
  row is recorded (and publishes the winner's fragment itself if the winner died between
  claiming and renaming), so a row can never appear twice, by construction and whatever the
  timing — a killed driver's orphaned worker racing its replacement included. The fragment
  names its key in its metadata (``kdsweep.key``), so ``store_maintenance.recover`` (run by
  ``compact`` and by the driver at start) finishes the append of a writer that died between
  claiming and renaming, and deletes the pending file of one that lost its claim;
* ``store_maintenance.compact`` merges the plain fragments (and the newest compacted files no larger
  than them together: a row is rewritten O(log n) times over a run) into one
  ``compact-<time_ns>-<uuid>.parquet`` whose key-value metadata ``kdsweep.sources`` maps each
  merged name to its row count, publishes it the same way, then deletes the merged
  fragments. A reader trusts a compacted file only when those counts add up to its rows and
  every listed source still on disk has exactly its listed count; then it drops the listed
  fragments, so it never counts a row twice. An untrusted compacted file hides nothing and
  lets nothing be deleted.
* a file that is not a fragment of this run (corrupt, foreign, an untrusted compacted file)
  is skipped with one :class:`StoreWarning`; ``store_maintenance.quarantine`` (run by ``compact`` and
  by the driver at start) moves such files to ``RUN_DIR/quarantine/`` with a ``.reason``
  file, so plain readers work on ``results/`` again.

Plain ``pyarrow.dataset.dataset(RUN_DIR / "results")`` reads the whole run as long as no
foreign file was dropped there and no compaction is half-way (between publishing the
compacted file and deleting its sources, a plain reader sees those rows twice; this store
does not).

A :class:`Store` instance is not thread-safe; use one per thread (they share nothing).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.atomic import fsync_dir, real_dir, write_temp
from kdsweep.orchestrator.schema import (
    LEADING_FIELDS,
    REQUIRED_COLUMNS,
    TRAILING_FIELDS,
    Event,
    event_rank,
    trial_order_key,
)

__all__ = ["SOURCES_KEY", "Store", "StoreWarning", "read_run"]

#: Parquet key-value metadata of a compacted file: JSON object, merged fragment name -> its
#: row count. (Files of kdsweep 0.1 hold a JSON list of names, without counts.)
SOURCES_KEY = b"kdsweep.sources"
#: Parquet key-value metadata of a keyed fragment: the row key it was written under.
ROW_KEY = b"kdsweep.key"

#: Directory under ``results/`` holding one claim (a symbolic link) per keyed row.
KEYS_DIR = layout.KEYS
# A key is one or two path components of safe characters ("t0001/report-e3"), never "..".
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")

_RESULTS = layout.RESULTS
_SUFFIX = layout.FRAGMENT_SUFFIX
_FRAGMENT = layout.FRAGMENT
_COMPACTED = layout.COMPACTED
# The declared columns every fragment must carry, by name (the schema module owns them).
_REQUIRED_FIELDS: dict[str, pa.Field] = {f.name: f for f in LEADING_FIELDS + TRAILING_FIELDS}


class StoreWarning(UserWarning):
    """A file under ``results/`` was skipped (unreadable, or not a fragment of this run)."""


class _Unusable(Exception):
    """Why a file under ``results/`` cannot be read as a fragment of this store (it is
    quarantined by ``store_maintenance.quarantine``; a passing I/O error is not an _Unusable)."""


class _RungView:
    """The incremental answer to one ``rung_values(rung, metric, events)`` question.

    ``seen`` counts the rung's index entries already folded in; ``latest`` keeps, per trial,
    the order key of the row that gave its current value (the event's rank in the trial's
    order at the rung's epoch, then the file and position as a tie-break), so rows arriving
    in any order end with the same value. ``points``
    holds the same values as 1-tuples (``rung_points`` of one metric), kept up to date with
    ``values`` so that a worker's read after each report is one dictionary copy.
    """

    __slots__ = ("latest", "points", "seen", "values")

    def __init__(self) -> None:
        self.seen = 0
        self.latest: dict[str, tuple[int, str, int]] = {}
        self.values: dict[str, float] = {}
        self.points: dict[str, tuple[float]] = {}


class Store:
    """Append-only Parquet results of one run, read incrementally.

    ``schema`` (from :func:`~kdsweep.orchestrator.schema.results_schema`) is needed to append
    and must contain every required column; without it the store only reads, and every
    fragment must still carry the required columns. Reading never raises on a bad file: it
    is skipped with a :class:`StoreWarning` (and a log record on ``kdsweep.store``), once
    per file per instance, and listed in :attr:`skipped`.

    Each read lists ``results/`` (a cost that grows with the number of files, about half a
    microsecond per entry on a local disk) and opens only names it has not seen; compacting
    from time to time keeps the listing short.
    """

    def __init__(self, run_dir: str | os.PathLike[str], schema: pa.Schema | None = None) -> None:
        if schema is not None:
            missing = REQUIRED_COLUMNS.difference(schema.names)
            if missing:
                raise ValueError(f"store schema lacks required columns {sorted(missing)}")
        self.run_dir = Path(run_dir)
        self.results_dir = self.run_dir / _RESULTS
        self.schema = schema
        #: Fragment files this instance has opened for reading (its own appends excluded).
        self.fragments_read = 0
        # Fragments are immutable, so each is read once: name -> its rows as an Arrow table
        # (a worker joining a run of 100 000 rows holds a few MB, not 100 000 dicts).
        self._fragments: dict[str, pa.Table] = {}
        self._n_rows = 0
        # Names a compacted file has merged: never read again, even if still on disk.
        self._superseded: set[str] = set()
        self._skipped: dict[str, str] = {}
        # Skipped names that are unusable for good (quarantine moves them), not just unread.
        self._unusable: set[str] = set()
        # Without a store schema, table() uses the union of the fragments' schemas.
        self._unified: pa.Schema | None = None
        # rung -> (fragment, positions of its rows at that rung), in arrival order: a rung
        # question reads only those rows' columns.
        self._rung_rows: dict[int, list[tuple[str, _Positions]]] = {}
        # trial_id -> (fragment, positions of that trial's rows): a worker asks what its trial
        # already reported each time it starts one, which must not cost a full scan.
        self._trial_rows: dict[str, list[tuple[str, _Positions]]] = {}
        self._views: dict[tuple[int, str, frozenset[str]], _RungView] = {}
        # Set when rows leave the cache (compaction, deletion): the rung index no longer
        # matches and is rebuilt on the next rung_values call.
        self._index_stale = False
        # Directories this instance has made sure of (created, and durable in their parent).
        self._durable_dirs: set[Path] = set()
        declared = schema if schema is not None else _REQUIRED_FIELDS.values()
        self._not_null = [f.name for f in declared if not f.nullable]

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """Files skipped so far by this instance, with the reason, in the order met."""
        return [(self.results_dir / name, reason) for name, reason in self._skipped.items()]

    # ------------------------------------------------------------------ writing

    def append(self, rows: Sequence[Mapping[str, Any]], key: str | None = None) -> Path | None:
        """Write ``rows`` as one new fragment and return its final path.

        With ``key``, the rows are recorded at most once per key in the run's lifetime (see
        the module docstring): when the key was already claimed by another writer this
        returns None and writes nothing (having published that writer's fragment if it had
        died before doing so). Every row gets exactly the store schema: absent columns are
        null. Raises ValueError for an empty ``rows``, a malformed ``key``, a key that is not
        a column (naming it and the valid columns), a missing or null value of a
        non-nullable column, or a value that does not convert to its column's type;
        RuntimeError when the store has no schema; OSError from the file system (a full
        disk: nothing is recorded and the key stays free). Once this returns a path, the
        fragment is durable and visible to readers in full; before, it is invisible. The
        rows are in this instance's cache already.
        """
        if self.schema is None:
            raise RuntimeError("this Store was opened without a schema and can only read")
        if key is not None and not _KEY.fullmatch(key):
            raise ValueError(f"malformed row key {key!r}: one or two '/'-separated parts of letters, digits, '.', '_', '-', each starting with a letter or digit")
        table = self._build_table(self.schema, rows)
        self._durable_dir(self.results_dir)
        name = f"{_FRAGMENT}{time.time_ns():020d}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}{_SUFFIX}"
        # For a fragment of a few rows, dictionaries (about half the write time), column
        # statistics (no row group to skip) and compression (nothing to gain on a few values;
        # a quarter of what is left) only cost time; compacted files keep all three.
        pending = pending_path(self.results_dir, name)
        if key is not None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), ROW_KEY: key.encode()})
        write_temp(pending, parquet_bytes(table, use_dictionary=False, write_statistics=False, compression="NONE"))
        if key is not None and not self._claim(key, name):
            pending.unlink(missing_ok=True)
            return None
        path = publish(self.results_dir, name)
        self._add_fragment(path.name, table)
        return path

    def _claim(self, key: str, name: str) -> bool:
        """Claim ``key`` for fragment ``name`` (whose pending file is complete); False when
        another fragment holds it, after publishing that one if its writer died unpublished."""
        claim = self.results_dir / KEYS_DIR / key
        self._durable_dir(claim.parent)
        try:
            # Relative to the link, so the link points at the fragment while it exists.
            os.symlink(os.path.relpath(self.results_dir / name, claim.parent), claim)
        except FileExistsError:
            holder = os.path.basename(os.readlink(claim))
            if holder == name:  # an NFS retransmission of our own symlink call
                return True
            publish(self.results_dir, holder)
            return False
        # Durable before the rows become visible: a claim lost to a power cut after its rows
        # were published would let a second copy in.
        fsync_dir(claim.parent)
        return True

    def _durable_dir(self, path: Path) -> None:
        """Create directory ``path`` and its missing parents, and make each one's entry
        durable in its parent (once per instance): a claim whose directory's own entry a
        power cut lost would be lost with it, whoever created that directory."""
        if path in self._durable_dirs:
            return
        if path == self.run_dir:  # the run directory's own entry is its creator's business
            path.mkdir(parents=True, exist_ok=True)
        else:
            self._durable_dir(path.parent)
            real_dir(path)  # a link planted as results/ or .keys/<trial> is refused
            fsync_dir(path.parent)
        self._durable_dirs.add(path)

    @staticmethod
    def _build_table(schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        if not rows:
            raise ValueError("append needs at least one row")
        valid = set(schema.names)
        unknown = sorted({key for row in rows for key in row if key not in valid})
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; valid columns: {schema.names}")
        for field in schema:
            if not field.nullable:
                missing = [i for i, row in enumerate(rows) if row.get(field.name) is None]
                if missing:
                    raise ValueError(
                        f"required column {field.name!r} is missing or null in row(s) {missing}"
                    )
        try:
            return pa.Table.from_pylist(list(rows), schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            # Converting column by column is slower, so it only runs to name the culprit.
            for field in schema:
                try:
                    pa.array([row.get(field.name) for row in rows], type=field.type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as column_exc:
                    raise ValueError(f"column {field.name!r} ({field.type}): {column_exc}") from exc
            raise ValueError(f"rows do not convert to the store schema: {exc}") from exc

    # ------------------------------------------------------------------ reading

    def refresh(self) -> int:
        """Read the fragments that appeared since the last read; return the change in rows.

        Only the directory is listed and only unseen names are opened. The change is the
        rows of new fragments minus the rows of fragments that left (merged by a compaction,
        or deleted by hand); compacted rows this instance already had do not count again, so
        it is normally the number of genuinely new rows. Rows this instance appended itself
        are in its cache already and do not count.
        """
        before = self._n_rows
        # A listed fragment that vanished before it was read was deleted by a compaction,
        # whose file is in the directory by then: one more listing finds it.
        if self._scan():
            self._scan()
        return self._n_rows - before

    def identity(self) -> str:
        """What the rows read so far are, in a few bytes: the sorted names of the files they
        came from with each one's row count. Files are never changed once visible (a
        compaction writes a new one), so equal identities mean equal rows; a new row, a
        compaction or a file moved to quarantine changes it. Reports key cached statistics
        on it instead of serialising every row."""
        return ";".join(f"{name}:{table.num_rows}" for name, table in sorted(self._fragments.items()))

    def rows(self) -> list[dict[str, Any]]:
        """Every row (a fresh dict each), in store order (:meth:`table`)."""
        return _pylist(self.table())

    def table(self) -> pa.Table:
        """Every row, in store order: grouped by trial id, each trial's rows in the order the
        engine wrote them (``schema.trial_order_key``: by epoch; report, pause, end), so a
        trial's last row is its latest whatever the clocks of the hosts that wrote it said
        (fragment names carry a wall-clock time for people, never for order). Rows equal
        under that key (none the engine writes) keep file order. With the store schema when
        known, else with the union of the fragments' schemas (the required columns alone
        when there is none)."""
        self.refresh()
        return _in_store_order(self.merged(sorted(self._fragments)))

    def merged(self, names: Sequence[str]) -> pa.Table:
        """The cached fragments ``names`` as one table, in that order (see :meth:`table`)."""
        schema = self._table_schema()
        tables = [self._fragments[name] for name in names]
        if all(t.schema.equals(schema, check_metadata=False) for t in tables):
            # from_batches, not schema.empty_table(), which imports pandas (see _pylist).
            return pa.concat_tables([pa.Table.from_batches([], schema=schema), *tables]).replace_schema_metadata(schema.metadata)
        # Fragments of a run read without its schema may differ in their metric columns.
        return pa.Table.from_pylist([row for t in tables for row in _pylist(t)], schema=schema)

    def rung_values(
        self, rung: int, metric: str, events: Collection[str] = (Event.REPORT.value,)
    ) -> dict[str, float]:
        """Trial id -> value of ``metric`` at ``rung``, from rows whose event is in ``events``.

        When a trial has several such rows with a non-null value, the one :meth:`rows`
        lists last wins (a pause over the report of the same epoch). Rows with a null value are ignored. ``events`` may be a
        single event name. Raises ValueError when the store schema is known and lacks
        ``metric``. Refreshes first, then folds only the rows not yet seen into a
        per-question index, so calling it after every report stays cheap.
        """
        return dict(self._rung_view(rung, metric, events).values)

    def _rung_view(self, rung: int, metric: str, events: Collection[str]) -> _RungView:
        """The view answering :meth:`rung_values`, brought up to date."""
        if self.schema is not None and metric not in self.schema.names:
            raise ValueError(f"unknown metric column {metric!r}; columns: {self.schema.names}")
        # A lone name (an Event member is a str too) is one event, not a set of letters.
        wanted = frozenset([events] if isinstance(events, str) else events)
        self.refresh()
        if self._index_stale:
            self._rebuild_index()
        key = (rung, metric, wanted)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = _RungView()
        entries = self._rung_rows.get(rung, [])
        for name, positions in entries[view.seen :]:
            table = self._fragments[name]
            if metric not in table.column_names:
                continue  # a fragment of a run read without its schema, without this metric
            columns = table.select(["trial_id", "event", metric]).take(_indices(positions))
            trials, events, values = (columns.column(i).to_pylist() for i in range(3))
            for i, trial, event, value in zip(positions.tolist(), trials, events, values):
                if value is None or event not in wanted:
                    continue
                order = (event_rank(event), name, i)
                previous = view.latest.get(trial)
                if previous is None or order > previous:
                    view.latest[trial] = order
                    view.values[trial] = float(value)
                    view.points[trial] = (float(value),)
        view.seen = len(entries)
        return view

    def rung_points(
        self, rung: int, metrics: Sequence[str], events: Collection[str] = (Event.REPORT.value,)
    ) -> dict[str, tuple[float, ...]]:
        """Trial id -> (value of each of ``metrics``, in order) at ``rung``: ASHA's rung values
        (``asha.RungValue``), one :meth:`rung_values` per metric. A trial with a value of some
        metric there but none of another has NaN for the missing one. With one metric, the
        same trials as :meth:`rung_values`, each value in a 1-tuple. Raises as
        :meth:`rung_values` does."""
        if len(metrics) == 1:
            # A worker reads this after every rung report: for one metric (most sweeps) the
            # view keeps the tuples, so a read of 10 000 trials is a copy, not 10 000 tuples.
            return dict(self._rung_view(rung, metrics[0], events).points)
        per_metric = [self.rung_values(rung, metric, events) for metric in metrics]
        trials = dict.fromkeys(tid for values in per_metric for tid in values)
        return {tid: tuple([values.get(tid, math.nan) for values in per_metric]) for tid in trials}

    def trial_rows(self, trial_id: str) -> list[dict[str, Any]]:
        """Every row of one trial (a fresh dict each), in store order (:meth:`table`).
        Incremental like :meth:`rung_values`: cost grows with the trial's rows, not the run's."""
        self.refresh()
        if self._index_stale:
            self._rebuild_index()
        chunks = sorted(self._trial_rows.get(trial_id, []), key=lambda chunk: (chunk[0], int(chunk[1][0])))
        rows = [row for name, positions in chunks for row in _pylist(self._fragments[name].take(_indices(positions)))]
        rows.sort(key=lambda row: trial_order_key(row["event"], int(row["epoch"])))  # stable
        return rows

    def curve(self, trial_id: str, metric: str) -> list[tuple[int, float]]:
        """``(epoch, value of metric)`` of each report of one trial with a value, by epoch: its
        learning curve, for policies that read curves (PASHA's ε). Incremental like
        :meth:`trial_rows`, and reads only these columns."""
        self.refresh()
        if self._index_stale:
            self._rebuild_index()
        points: dict[int, float] = {}
        for name, positions in self._trial_rows.get(trial_id, []):
            table = self._fragments[name]
            if metric not in table.column_names:
                continue  # a fragment of a run read without its schema, without this metric
            columns = table.select(["epoch", "event", metric]).take(_indices(positions))
            for epoch, event, value in zip(*(columns.column(i).to_pylist() for i in range(3))):
                if event == Event.REPORT.value and value is not None:
                    points[int(epoch)] = float(value)
        return sorted(points.items())

    def _scan(self) -> bool:
        """List ``results/`` once and read the unseen fragments. Returns whether a listed
        fragment vanished before it could be read."""
        try:
            with os.scandir(self.results_dir) as it:
                listed = {entry.name: entry for entry in it}
        except FileNotFoundError:  # nothing appended yet
            return False
        # Set differences run in C: this listing is the per-call cost that grows with the
        # number of fragments, so no per-entry Python work beyond building the dict.
        new = listed.keys() - self._fragments.keys() - self._skipped.keys() - self._superseded
        vanished = compacted = False
        # Name order puts compacted files ("compact-...") before fragments ("part-...") they
        # may supersede, which spares reading those; correctness does not depend on it.
        for name in sorted(new):
            if name.startswith((".", "_")) or name in self._superseded:
                continue  # temporary or hidden (never a fragment), or just superseded
            entry = listed[name]
            if not entry.is_file(follow_symlinks=False):  # a link is never read through
                self._skip(name, "not a regular file", quarantine=True)
                continue
            if name.startswith(_COMPACTED) and self._adopt_unread(name, listed):
                compacted = True
                continue
            try:
                table = self._read_fragment(Path(entry.path))
            except FileNotFoundError:
                vanished = True
                continue
            except OSError as exc:  # a passing I/O error: skipped now, never quarantined
                self._skip(name, f"cannot be read ({exc})", quarantine=False)
                continue
            except pa.ArrowException as exc:
                self._skip(name, f"not a readable Parquet file ({type(exc).__name__}: {exc})", quarantine=True)
                continue
            try:
                sources = self._trusted_sources(table.schema.metadata, table.num_rows, listed)
                table = self._conform(table)
            except _Unusable as exc:
                self._skip(name, str(exc), quarantine=True)
                continue
            if sources is not None:
                compacted = True
                for source in sources:
                    self._drop(source)
                self._superseded.update(sources)
            self._add_fragment(name, table)
        if self._superseded:
            # A superseded name missing from the listing is deleted for good (names are
            # unique); forgetting it keeps the set as small as the leftovers on disk.
            self._superseded.intersection_update(listed)
        if compacted:
            # A cached fragment that is gone was merged into a compacted file, possibly one
            # already merged again into the file just read, whose sources do not name it.
            for name in self._fragments.keys() - listed.keys():
                self._drop(name)
        return vanished

    def _adopt_unread(self, name: str, listed: Mapping[str, os.DirEntry[str]]) -> bool:
        """Take in compacted file ``name`` from its footer alone when it is trusted and this
        instance holds every one of its sources (a reader that kept up with the run: the
        usual case): its rows are theirs, so nothing needs reading. False when it must be
        read (or skipped) the ordinary way."""
        try:
            footer = pq.read_metadata(listed[name].path)
            sources = self._trusted_sources(footer.metadata, footer.num_rows, listed)
        except (OSError, pa.ArrowException, _Unusable):
            return False  # the ordinary read meets the same problem and reports it
        if not sources or not all(source in self._fragments for source in sources):
            return False
        tables = [self._fragments[source] for source in sources]
        if sum(t.num_rows for t in tables) != footer.num_rows or any(not t.schema.equals(tables[0].schema) for t in tables):
            return False
        self.adopt_compacted(name, sources)
        return True

    def adopt_compacted(self, name: str, sources: Collection[str]) -> None:
        """Replace the cached fragments ``sources`` by compacted file ``name``, which holds
        exactly their rows concatenated in name order (as ``store_maintenance.compact`` writes it): the
        cached tables are concatenated into one chunk, and the index entries and rung views keep
        their meaning, each moved to the same row of ``name``. Rebuilding them instead
        would cost every reader a pass over the run at every compaction."""
        order = sorted(sources)
        offsets: dict[str, int] = {}
        tables: list[pa.Table] = []
        at = 0
        for source in order:
            offsets[source] = at
            tables.append(self._fragments.pop(source))
            at += tables[-1].num_rows
        # One chunk, not one per source: Arrow's take over a chunked column concatenates its
        # chunks first, so every trial_rows call would cost the whole file (measured: 43 s of
        # a 90 s simulation of 1 000 trials went there). The copy is paid once per compaction.
        self._fragments[name] = pa.concat_tables(tables).combine_chunks()
        self._superseded.update(order)
        if self._index_stale:
            return  # rebuilt from the fragments on the next read
        rungs = {int(r) for t in tables for r in t.column("rung").unique().to_pylist()}
        trials = {str(x) for t in tables for x in t.column("trial_id").unique().to_pylist()}

        def moved(entries: list[tuple[str, _Positions]]) -> list[tuple[str, _Positions]]:
            return [(name, positions + offsets[n]) if n in offsets else (n, positions) for n, positions in entries]

        # One entry stays one entry, in its place: a view's count of entries seen stays true.
        for rung in rungs:
            self._rung_rows[rung] = moved(self._rung_rows.get(rung, []))
        for trial in trials:
            self._trial_rows[trial] = moved(self._trial_rows.get(trial, []))
        for (rung, _, _), view in self._views.items():
            if rung in rungs:
                for trial in trials & view.latest.keys():
                    rank, n, i = view.latest[trial]
                    if n in offsets:
                        view.latest[trial] = (rank, name, offsets[n] + i)

    def _read_fragment(self, path: Path) -> pa.Table:
        """Read one whole fragment (one open and read; cheaper than the dataset machinery)."""
        self.fragments_read += 1
        with open(path, "rb") as fh:
            data = fh.read()
        # One chunk per column whatever the row groups (see adopt_compacted).
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False).combine_chunks()

    def _conform(self, table: pa.Table) -> pa.Table:
        """``table`` with the store schema (or the required columns' types), or _Unusable."""
        missing = REQUIRED_COLUMNS.difference(table.column_names)
        if missing:
            raise _Unusable(f"lacks required columns {sorted(missing)}")
        if self.schema is not None:
            if not table.schema.equals(self.schema, check_metadata=False):
                table = _cast_to_schema(table, self.schema)
        else:
            table = _cast_required(table)
        for name in self._not_null:
            if table.column(name).null_count:
                raise _Unusable(f"non-nullable column {name!r} holds nulls")
        if self.schema is None:
            schema = table.schema
            if schema.metadata and SOURCES_KEY in schema.metadata:
                metadata = {k: v for k, v in schema.metadata.items() if k != SOURCES_KEY}
                schema = schema.with_metadata(metadata)
            try:
                if self._unified is None:
                    self._unified = schema
                else:
                    self._unified = pa.unify_schemas([self._unified, schema])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise _Unusable(f"schema conflicts with the fragments read before: {exc}") from exc
        return table

    def _skip(self, name: str, reason: str, *, quarantine: bool) -> None:
        self._skipped[name] = reason
        if quarantine:
            self._unusable.add(name)
        message = f"kdsweep store: skipping {self.results_dir / name}: {reason}"
        if quarantine:
            message += " ('kdsweep compact RUN_DIR' or the next launch moves it to quarantine/)"
        warnings.warn(message, StoreWarning, stacklevel=3)

    def _trusted_sources(
        self, metadata: Mapping[bytes, bytes] | None, num_rows: int, listed: Mapping[str, os.DirEntry[str]]
    ) -> list[str] | None:
        """The fragment names a compacted file supersedes (None for a plain fragment), from
        its key-value ``metadata`` and its ``num_rows``; or _Unusable when its recorded row
        counts do not match its rows, or a listed source still on disk: such a file must
        neither hide fragments nor let them be deleted."""
        raw = (metadata or {}).get(SOURCES_KEY)
        if raw is None:
            return None
        try:
            sources = json.loads(raw)
        except ValueError as exc:
            raise _Unusable(f"malformed {SOURCES_KEY.decode()} metadata: {exc}") from exc
        if isinstance(sources, list) and all(isinstance(x, str) for x in sources):
            # kdsweep 0.1's format has no counts: trusted only while it hides nothing on disk.
            present = sorted(set(sources) & listed.keys())
            if present:
                raise _Unusable(f"compacted file without row counts lists fragments still present: {present[:3]}")
            return sources
        if not isinstance(sources, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 1 for k, v in sources.items()
        ):
            # Only positive counts: a negative one for a name not on disk would balance the
            # sum of a planted file that lists real fragments and holds none of their rows.
            raise _Unusable(f"malformed {SOURCES_KEY.decode()} metadata: not a map of names to positive row counts")
        if sum(sources.values()) != num_rows:
            raise _Unusable(f"its sources' row counts add up to {sum(sources.values())}, but it holds {num_rows} rows")
        for source in sorted(set(sources) & listed.keys()):
            try:
                # A cached fragment's count is known: fragments never change.
                cached = self._fragments.get(source)
                rows = cached.num_rows if cached is not None else pq.read_metadata(listed[source].path).num_rows
            except FileNotFoundError:
                continue  # deleted by the compaction that wrote this file: as recorded
            except (OSError, pa.ArrowException) as exc:
                raise _Unusable(f"lists {source}, which cannot be read to check its row count ({exc})") from exc
            if rows != sources[source]:
                raise _Unusable(f"lists {source} with {sources[source]} rows, but that file holds {rows}")
        return list(sources)

    # ------------------------------------------------------------ for store_maintenance.py

    def file_rows(self) -> dict[str, int]:
        """Each usable file read so far (plain fragments and compacted files) -> its rows."""
        return {name: table.num_rows for name, table in self._fragments.items()}

    def superseded(self) -> list[str]:
        """The names a trusted compacted file has merged, in name order (some may still be on
        disk: the leftovers of a compaction that died before deleting them)."""
        return sorted(self._superseded)

    def take_unusable(self) -> list[tuple[str, str]]:
        """The unusable files found so far (corrupt, foreign, untrusted compacted), each with
        why, in name order; forgotten here, since the caller moves them out of ``results/``.
        Files skipped for a passing I/O error are not among them."""
        found = [(name, self._skipped[name]) for name in sorted(self._unusable)]
        self._unusable.clear()
        return found

    def _add_fragment(self, name: str, table: pa.Table) -> None:
        # Metadata (a compacted file's sources, a fragment's key) is the file's, not the rows'.
        self._fragments[name] = table.replace_schema_metadata(None)
        self._n_rows += table.num_rows
        if not self._index_stale:
            self._index(name, table)

    def _index(self, name: str, table: pa.Table) -> None:
        """Add fragment ``name``'s rows to the rung and trial indexes, grouped per fragment:
        a compacted file of 100 000 rows costs two sorts, not 100 000 Python entries."""
        for rung, positions in _groups(table.column("rung")):
            self._rung_rows.setdefault(int(rung), []).append((name, positions))
        for trial, positions in _groups(table.column("trial_id")):
            self._trial_rows.setdefault(str(trial), []).append((name, positions))

    def _drop(self, name: str) -> None:
        table = self._fragments.pop(name, None)
        if table is not None:
            self._n_rows -= table.num_rows
            self._index_stale = True

    def _rebuild_index(self) -> None:
        self._rung_rows.clear()
        self._trial_rows.clear()
        self._views.clear()
        self._index_stale = False
        for name in sorted(self._fragments):
            self._index(name, self._fragments[name])

    def _table_schema(self) -> pa.Schema:
        if self.schema is not None:
            return self.schema
        if self._unified is not None:
            return self._unified
        return pa.schema(list(_REQUIRED_FIELDS.values()))


def read_run(run_dir: str | os.PathLike[str]) -> pa.Table:
    """Every row of a run, for reports: ``Store(run_dir).table()``."""
    return Store(run_dir).table()


def _cast_to_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema`` (absent columns null, types cast), or _Unusable."""
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise _Unusable(f"has columns not in the store schema: {extra}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                reason = f"column {field.name!r} has type {column.type}, expected {field.type}"
                raise _Unusable(reason) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast_required(table: pa.Table) -> pa.Table:
    """``table`` with its required columns cast to their declared types, or _Unusable."""
    for i, field in enumerate(table.schema):
        declared = _REQUIRED_FIELDS.get(field.name)
        if declared is None or field.type == declared.type:
            continue
        try:
            column = table.column(i).cast(declared.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            reason = f"column {field.name!r} has type {field.type}, expected {declared.type}"
            raise _Unusable(reason) from exc
        table = table.set_column(i, declared.with_nullable(field.nullable), column)
    return table


def _in_store_order(table: pa.Table) -> pa.Table:
    """``table``'s rows in store order (:meth:`Store.table`): one stable sort by trial id,
    epoch and the event's rank, in NumPy over the columns' buffers (converting a Python
    value to Arrow, even a scalar, would import pandas: see :func:`_pylist`)."""
    if table.num_rows < 2:
        return table
    trial_codes, trials = _codes(table.column("trial_id"))
    event_codes, events = _codes(table.column("event"))
    # Each distinct value's place, looked up by code: sorted ids, and the events' ranks.
    trial_keys = np.argsort(np.argsort(np.array(trials, dtype=object), kind="stable"), kind="stable")[trial_codes]
    ranks = np.array([event_rank(e) for e in events], dtype=np.int8)[event_codes]
    epochs = table.column("epoch").combine_chunks()
    epoch_values = np.frombuffer(epochs.buffers()[1], dtype="<i4", count=len(epochs), offset=epochs.offset * 4)
    return table.take(_indices(np.lexsort((ranks, epoch_values, trial_keys))))  # lexsort is stable


#: Row positions inside one cached fragment (ascending).
_Positions = npt.NDArray[np.int64]


def _groups(column: pa.ChunkedArray) -> list[tuple[Any, _Positions]]:
    """``(value, ascending positions of the rows holding it)`` for each distinct value of a
    non-null column, via a dictionary encoding and one stable sort (no per-row Python)."""
    if len(column) == 1:  # a worker's own append: most fragments hold one row
        return [(column[0].as_py(), np.zeros(1, dtype=np.int64))]
    codes, values = _codes(column)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [(values[codes[group[0]]], group) for group in np.split(order, bounds) if len(group)]


def _codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.integer[Any]], list[Any]]:
    """A non-null column as (each row's code, the distinct values by code): its dictionary
    encoding, with the codes read from the indices' own buffer (``to_numpy`` would import
    pandas, see :func:`_pylist`)."""
    encoded = column.combine_chunks().dictionary_encode()
    indices = encoded.indices
    width = indices.type.bit_width // 8
    codes = np.frombuffer(indices.buffers()[1], dtype=f"<i{width}", count=len(indices), offset=indices.offset * width)
    return codes, encoded.dictionary.to_pylist()


def _indices(positions: _Positions) -> pa.Array:
    """``positions`` as an Arrow array for ``take``, sharing their memory. Not ``pa.array``:
    handed a NumPy array, it imports pandas (see :func:`_pylist`)."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(positions), [None, pa.py_buffer(positions)])


def _pylist(table: pa.Table) -> list[dict[str, Any]]:
    """``table.to_pylist()``, without importing pandas.

    pyarrow converts a time-zone-aware timestamp through pandas, whose first import (0.2 to
    0.4 s) would be most of what ``kdsweep status`` costs. Such a column is converted without
    its zone (Arrow holds UTC instants) and each value given the zone back, as pyarrow does.
    """
    zoned = [(i, field) for i, field in enumerate(table.schema) if pa.types.is_timestamp(field.type) and field.type.tz is not None]
    plain = table
    for i, field in zoned:
        plain = plain.set_column(i, field.name, table.column(i).cast(pa.timestamp(field.type.unit)))
    rows = plain.to_pylist()
    for _, field in zoned:
        zone = pa.lib.string_to_tzinfo(field.type.tz)  # what pyarrow gives: ZoneInfo, or a fixed offset
        for row in rows:
            value = row[field.name]
            if value is not None:
                row[field.name] = value.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    return rows


@functools.cache
def pending_path(results_dir: Path, name: str) -> Path:
    """Where fragment ``name`` is written before it is published (hidden from readers)."""
    return results_dir / ("." + name)


def publish(results_dir: Path, name: str) -> Path:
    """Rename fragment ``name``'s pending file to ``name`` and make the rename durable.
    A pending file already gone was published by another process (a writer racing the
    recovery of its claim): publishing is idempotent."""
    path = results_dir / name
    try:
        os.rename(pending_path(results_dir, name), path)
    except FileNotFoundError:
        pass
    fsync_dir(results_dir)
    return path


def _host() -> str:
    """This host's name, restricted to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "unknown"


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    """``table`` serialised as Parquet (``options`` go to ``pq.write_table``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()
