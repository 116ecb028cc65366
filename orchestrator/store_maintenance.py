"""Maintenance of a run's results store: recovery, quarantine and compaction.

``store.py`` appends and reads; this module rewrites what is on disk, where one writer owns
the run (the driver at start and in its compaction thread, ``kdsweep compact``). Its three
operations keep the store's promises (``store.py``'s module docstring): no row lost, none
counted twice, whatever process dies when.

* :func:`recover` finishes the appends of writers that died between claiming a key and
  publishing the fragment;
* :func:`quarantine` moves the files no reader can use to ``RUN_DIR/quarantine/``;
* :func:`compact` merges fragments into one compacted file, under a lock.

Each takes the :class:`~kdsweep.orchestrator.store.Store` whose cache it reads and keeps
true (a compaction's file is adopted from the cache, never read back).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.atomic import fsync_dir, open_lock, real_dir, write_atomic, write_temp
from kdsweep.orchestrator.store import ROW_KEY, SOURCES_KEY, Store, parquet_bytes, pending_path, publish

__all__ = ["compact", "quarantine", "recover"]


def recover(store: Store) -> int:
    """Finish what writers that died half-way through ``Store.append`` left in
    ``results/``; return how many fragments were published.

    A pending fragment whose key's claim names it was complete and fsynced before the claim,
    so it is published (a rename, idempotent: safe while its writer still lives). A pending
    fragment whose key another fragment holds lost the race and is deleted, as its writer
    would have. A pending file that cannot be read (a writer killed while writing it, or one
    writing it now) or whose key nobody holds (a writer about to claim) stays: hidden, no
    reader sees it. Needs write access to the run.
    """
    results = store.results_dir
    try:
        with os.scandir(results) as it:
            pending = sorted(e.name for e in it if e.name.startswith("." + layout.FRAGMENT) and e.name.endswith(layout.FRAGMENT_SUFFIX))
    except FileNotFoundError:
        return 0
    published = 0
    for hidden in pending:
        name = hidden[1:]
        try:
            key = (pq.read_schema(results / hidden).metadata or {}).get(ROW_KEY)
        except (OSError, pa.ArrowException):
            continue
        if key is None:
            continue
        try:
            holder = os.path.basename(os.readlink(results / layout.KEYS / key.decode()))
        except FileNotFoundError:
            continue
        if holder == name:
            publish(results, name)
            published += 1
        else:
            (results / hidden).unlink(missing_ok=True)
    return published


def quarantine(store: Store) -> list[tuple[Path, str]]:
    """Move every unusable file ``store`` found so far (corrupt, foreign, untrusted
    compacted) from ``results/`` to ``RUN_DIR/quarantine/``, each beside a ``<name>.reason``
    text; return the new paths with their reasons. Files skipped for a passing I/O error
    stay. Needs write access to the run; call it where one writer owns the run (the driver
    at start, :func:`compact` under its lock)."""
    moved = []
    target = store.run_dir / layout.QUARANTINE
    for name, reason in store.take_unusable():
        real_dir(target)
        dest = target / name
        write_atomic(target / f"{name}.reason", (reason + "\n").encode())
        try:
            os.replace(store.results_dir / name, dest)
        except FileNotFoundError:
            continue
        moved.append((dest, reason))
    if moved:
        fsync_dir(store.results_dir)
    return moved


def to_merge(files: dict[str, int], everything: bool) -> list[str]:
    """What one compaction merges of ``files`` (name -> rows), in name order: with
    ``everything``, every file; else every plain fragment, and the newest compacted files
    while each holds no more rows than everything chosen before it.

    Compacted files then grow like the digits of a binary counter: over a run a row is
    rewritten O(log n) times and O(log n) compacted files remain, where merging every file
    each time would rewrite the whole run at every compaction (quadratic). Merging only the
    newest keeps the rows in the order ``Store.table`` lists them."""
    if everything:
        return sorted(files)
    chosen = [name for name in files if not name.startswith(layout.COMPACTED)]
    rows = sum(files[name] for name in chosen)
    for name in sorted((n for n in files if n.startswith(layout.COMPACTED)), reverse=True):
        if files[name] > rows:
            break
        chosen.append(name)
        rows += files[name]
    return sorted(chosen)


def compact(store: Store, everything: bool = False) -> tuple[int, int]:
    """Merge ``store``'s fragments into one compacted file; return (fragments, rows). Which
    ones: :func:`to_merge` (all plain ones and the newest small compacted files, as a driver
    does during a sweep; with ``everything``, all, as ``kdsweep compact`` does for a run's
    archive copy).

    Appends that dead writers claimed but left unpublished are published first
    (:func:`recover`); then the compacted file has the same schema and the rows in the same
    order, so ``Store.table`` is otherwise unchanged; its metadata ``kdsweep.sources`` maps
    each merged name to its row count. Leftover sources of an earlier compaction that
    crashed before deleting them are deleted first (their rows are in a trusted compacted
    file already). The new file is published like a fragment, then the merged fragments are
    deleted. Unusable files are moved to ``quarantine/`` (:func:`quarantine`). With fewer
    than two readable fragments there is nothing to merge and it returns (0, 0).
    Compactions of one directory are serialised by a lock file. Raises PermissionError or
    OSError (EROFS) on a run this process cannot write.
    """
    results = store.results_dir
    if not results.is_dir():
        return (0, 0)
    # Held (flock) while compacting: two compactors merging the same fragments would
    # publish their rows twice.
    lock_fd = open_lock(results / layout.COMPACT_LOCK)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        # Appends a dead writer left claimed but unpublished are rows of the run.
        recover(store)
        # A pending compacted file under the lock is from a compaction that died.
        for leftover in results.glob(f".{layout.COMPACTED}*"):
            leftover.unlink(missing_ok=True)
        # Under the lock no one else deletes, so this listing is what gets merged.
        store.refresh()
        quarantine(store)
        leftovers = [n for n in store.superseded() if (results / n).exists()]
        for name in leftovers:
            (results / name).unlink(missing_ok=True)
        files = store.file_rows()
        names = to_merge(files, everything)
        if len(names) < 2:
            if leftovers:
                fsync_dir(results)
            return (0, 0)
        sources = {name: files[name] for name in names}
        merged = store.merged(names)
        metadata = {**(merged.schema.metadata or {}), SOURCES_KEY: json.dumps(sources).encode()}
        table = merged.replace_schema_metadata(metadata)
        name = f"{layout.COMPACTED}{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{layout.FRAGMENT_SUFFIX}"
        write_temp(pending_path(results, name), parquet_bytes(table))
        path = publish(results, name)
        for source in names:
            (results / source).unlink(missing_ok=True)
        fsync_dir(results)
        # The new file holds exactly the cached rows: adopt it without reading it back.
        store.adopt_compacted(path.name, names)
        return (len(names), table.num_rows)
    finally:
        os.close(lock_fd)  # releases the flock
