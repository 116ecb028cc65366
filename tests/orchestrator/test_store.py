"""The results store on real files: round trip, plain readers, concurrency, incremental
reads, ASHA's rung index, corrupt files and compaction."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from kdsweep.orchestrator.schema import (
    NOT_AT_RUNG,
    SCHEMA_VERSION,
    Event,
    kdsweep_version,
    results_schema,
)
from kdsweep.orchestrator import store, store_maintenance
from kdsweep.orchestrator.store import SOURCES_KEY, Store, StoreWarning, read_run

SCHEMA = results_schema(
    ["val_acc", "train_loss"], {"lr": pa.float64(), "width": pa.int64(), "opt": pa.string()}
)
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
VERSION = kdsweep_version()  # a metadata lookup: once, not per row


def _placeholder(t: pa.DataType) -> Any:
    """A value of type ``t``, for non-nullable columns the schema may gain after these tests
    were written (they fill every required column they know by name)."""
    if pa.types.is_timestamp(t):
        return T0
    if pa.types.is_string(t):
        return "x"
    if pa.types.is_integer(t):
        return 0
    if pa.types.is_floating(t):
        return 0.0
    return False


def row(
    trial: str, epoch: int, *, rung: int = NOT_AT_RUNG, event: str = "report", **extra: Any
) -> dict[str, Any]:
    """A valid row of SCHEMA: every required column filled, ``extra`` on top."""
    r: dict[str, Any] = {
        "sweep": "kd-test",
        "trial_id": trial,
        "event": event,
        "epoch": epoch,
        "rung": rung,
        "attempt": 0,
        "reported_at": T0 + dt.timedelta(seconds=epoch),
        "schema_version": SCHEMA_VERSION,
        "kdsweep_version": VERSION,
        "config_hash": "cafe",
    }
    for field in SCHEMA:
        if not field.nullable and field.name not in r:
            r[field.name] = _placeholder(field.type)
    r.update(extra)
    return r


def full(r: dict[str, Any]) -> dict[str, Any]:
    """``r`` as the store returns it: every column of SCHEMA, absent ones None."""
    return {name: r.get(name) for name in SCHEMA.names}


def fragments(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "results").iterdir() if not p.name.startswith("."))


def key(r: dict[str, Any]) -> tuple[str, int, str]:
    return (r["trial_id"], r["epoch"], r["event"])


# ---------------------------------------------------------------- round trip, plain readers


def test_round_trip_and_schema(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    written = [
        {
            **row("t1", 1, val_acc=0.5, train_loss=1.25),
            **{"param.lr": 1e-3, "param.width": 64, "param.opt": "sgd"},
        },
        row("t2", 1, rung=0, val_acc=0.25, wall_s=3.5, host="node-1", device="cuda:0"),
        row("t1", 2, event=Event.FAILED, error="boom"),
    ]
    first = s.append(written[:2])
    second = s.append(written[2:])
    assert first.parent == s.results_dir == tmp_path / "results"
    assert first.name.startswith("part-") and first.suffix == ".parquet"
    # Store order: by trial, each trial's rows by epoch (not by file).
    expected = [full(r) for r in (written[0], written[2], written[1])]
    expected[1]["event"] = "failed"
    for reader in (s, Store(tmp_path, SCHEMA), Store(tmp_path)):
        assert reader.rows() == expected
        table = reader.table()
        assert table.to_pylist() == expected
    assert Store(tmp_path, SCHEMA).table().schema.equals(SCHEMA, check_metadata=True)
    # Without a schema, the union of the fragments' schemas is the run's schema.
    assert Store(tmp_path).table().schema.equals(SCHEMA, check_metadata=False)
    assert read_run(tmp_path).to_pylist() == expected
    assert s.skipped == []


def test_plain_pyarrow_and_pandas_read_the_run(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    for t in range(3):
        s.append([{**row(f"t{t}", e, val_acc=e / 10), "param.width": t} for e in range(1, 4)])
    # A writer killed mid-write leaves its temporary file; plain readers must not see it.
    (s.results_dir / ".tmp-partial.parquet").write_bytes(b"PAR1 half a file")
    table = ds.dataset(s.results_dir, format="parquet").to_table()
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert sorted(table.to_pylist(), key=key) == sorted(s.rows(), key=key)
    frame = pd.read_parquet(s.results_dir)
    assert len(frame) == 9
    assert list(frame.columns) == SCHEMA.names
    assert frame["reported_at"].dt.tz is not None
    assert s.skipped == []


# ---------------------------------------------------------------- concurrency


def _append_worker(run_dir: str, schema: pa.Schema, worker: int, n: int) -> None:
    s = Store(run_dir, schema)
    for epoch in range(n):
        s.append([row(f"w{worker}", epoch, val_acc=float(epoch))])


def _check_no_duplicates(rows: list[dict[str, Any]]) -> None:
    counts = Counter(key(r) for r in rows)
    assert not [k for k, c in counts.items() if c > 1], "a reader saw a row twice"


def test_concurrent_appenders_and_incremental_reader(tmp_path: Path) -> None:
    n_workers, n_appends = 8, 50
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_append_worker, args=(str(tmp_path), SCHEMA, w, n_appends))
        for w in range(n_workers)
    ]
    for p in procs:
        p.start()
    reader = Store(tmp_path, SCHEMA)
    seen = 0
    reads = 0
    while any(p.is_alive() for p in procs):
        rows = reader.rows()
        _check_no_duplicates(rows)
        assert len(rows) >= seen  # an incremental reader never loses rows
        seen = len(rows)
        reads += 1
        time.sleep(0.005)  # leave the writers some CPU on a small machine
    for p in procs:
        p.join()
        assert p.exitcode == 0
    rows = reader.rows()
    _check_no_duplicates(rows)
    assert {(r["trial_id"], r["epoch"]) for r in rows} == {
        (f"w{w}", e) for w in range(n_workers) for e in range(n_appends)
    }
    assert len(rows) == n_workers * n_appends
    assert reader.skipped == []
    assert reader.fragments_read == n_workers * n_appends  # each fragment opened once
    assert not [p for p in reader.results_dir.iterdir() if p.name.startswith(".")]
    assert reads > 1
    plain = ds.dataset(reader.results_dir, format="parquet").to_table()
    assert plain.num_rows == n_workers * n_appends


def _compact_worker(run_dir: str, schema: pa.Schema, stop_file: str) -> None:
    s = Store(run_dir, schema)
    while not os.path.exists(stop_file):
        store_maintenance.compact(s)
        time.sleep(0.01)
    store_maintenance.compact(s)


def test_compaction_concurrent_with_appenders_and_readers(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    stop = tmp_path / "stop"
    writers = [
        ctx.Process(target=_append_worker, args=(str(tmp_path), SCHEMA, w, 30)) for w in range(3)
    ]
    compactor = ctx.Process(target=_compact_worker, args=(str(tmp_path), SCHEMA, str(stop)))
    for p in [*writers, compactor]:
        p.start()
    # One reader keeps up; the other reads rarely, so compactions pile up between its reads.
    eager, lazy = Store(tmp_path, SCHEMA), Store(tmp_path, SCHEMA)
    loops = 0
    while any(p.is_alive() for p in writers):
        _check_no_duplicates(eager.rows())
        if loops % 20 == 0:
            _check_no_duplicates(lazy.rows())
        loops += 1
        time.sleep(0.002)
    for p in writers:
        p.join()
        assert p.exitcode == 0
    stop.touch()
    compactor.join()
    assert compactor.exitcode == 0
    expected = {(f"w{w}", e) for w in range(3) for e in range(30)}
    for reader in (eager, lazy, Store(tmp_path, SCHEMA)):
        rows = reader.rows()
        _check_no_duplicates(rows)
        assert {(r["trial_id"], r["epoch"]) for r in rows} == expected
        assert reader.skipped == []
    # A few compacted files are left (their sizes grow like a binary counter's digits), and at
    # most one plain fragment: a lone last fragment has nothing to merge with (a compaction
    # merges two files at least, and a compacted file larger than it is not rewritten for it).
    left = fragments(tmp_path)
    plain = [f for f in left if not f.startswith("compact-")]
    assert left and len(plain) <= 1 and len(left) - len(plain) <= (90).bit_length()


# ---------------------------------------------------------------- incremental reads


def test_second_read_opens_only_new_fragments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = Store(tmp_path, SCHEMA), Store(tmp_path, SCHEMA)
    assert reader.rows() == [] and reader.refresh() == 0  # no results/ yet: empty, no error
    for e in range(4):
        writer.append([row("a", e)])
    opened: list[str] = []
    real_read = Store._read_fragment

    def spy(self: Store, path: Path) -> pa.Table:
        opened.append(path.name)
        return real_read(self, path)

    monkeypatch.setattr(Store, "_read_fragment", spy)
    assert len(reader.rows()) == 4
    assert reader.fragments_read == 4 and len(opened) == 4
    opened.clear()
    new = [writer.append([row("b", e)]).name for e in range(3)]
    assert reader.refresh() == 3
    assert sorted(opened) == new
    assert reader.fragments_read == 7
    assert len(reader.rows()) == 7 and reader.refresh() == 0
    assert reader.fragments_read == 7
    # A store never re-reads what it appended itself.
    assert len(writer.rows()) == 7 and writer.fragments_read == 0


# ---------------------------------------------------------------- rung values


def test_rung_values_latest_row_wins_per_rung_and_event(tmp_path: Path) -> None:
    s, other = Store(tmp_path, SCHEMA), Store(tmp_path, SCHEMA)
    s.append([row("a", 1, rung=0, val_acc=0.1), row("b", 1, rung=0, val_acc=0.2)])
    s.append([row("c", 2, event="paused", rung=0, val_acc=0.9)])
    assert s.rung_values(0, "val_acc") == {"a": 0.1, "b": 0.2}
    # A resumed attempt reports rung 0 again: its row is later and wins.
    s.append([row("a", 1, rung=0, val_acc=0.15, attempt=1)])
    s.append([row("a", 3, rung=1, val_acc=0.7), row("b", 3, rung=1, val_acc=None)])
    assert s.rung_values(0, "val_acc") == {"a": 0.15, "b": 0.2}
    assert s.rung_values(1, "val_acc") == {"a": 0.7}  # null values are no value
    assert s.rung_values(2, "val_acc") == {}
    both = s.rung_values(0, "val_acc", events=("report", "paused"))
    assert both == {"a": 0.15, "b": 0.2, "c": 0.9}
    assert s.rung_values(0, "val_acc", events=Event.PAUSED) == {"c": 0.9}
    assert s.rung_values(0, "train_loss") == {}
    # Another process's rows arrive through the incremental index too.
    other.append([row("d", 1, rung=0, val_acc=0.05)])
    assert s.rung_values(0, "val_acc") == {"a": 0.15, "b": 0.2, "d": 0.05}
    # The answer is a copy: changing it does not change the next one.
    s.rung_values(0, "val_acc")["a"] = 99.0
    assert s.rung_values(0, "val_acc")["a"] == 0.15
    with pytest.raises(ValueError, match="'val_loss'"):
        s.rung_values(0, "val_loss")


def test_rung_values_order_is_fragment_name_order(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    later = s.append([row("a", 1, rung=0, val_acc=0.3)])
    assert s.rung_values(0, "val_acc") == {"a": 0.3}
    # A fragment another host published with a lagging clock sorts earlier: it must not win.
    early = later.with_name("part-00000000000000000001-otherhost-1-000000000000.parquet")
    elsewhere = Store(tmp_path / "scratch", SCHEMA).append([row("a", 1, rung=0, val_acc=0.9)])
    shutil.copy(elsewhere, early)
    assert s.rung_values(0, "val_acc") == {"a": 0.3}
    assert [r["val_acc"] for r in s.rows()] == [0.9, 0.3]


# ---------------------------------------------------------------- corrupt and foreign files


def test_corrupt_and_foreign_files_are_skipped_with_one_warning_then_quarantined(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    good = [row("ok", e, val_acc=0.5) for e in range(3)]
    s.append(good[:2])
    truncated = s.append([row("lost", 1)])
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = s.results_dir / "x.parquet"
    text.write_text("not parquet at all\n")
    foreign = s.results_dir / "foreign.parquet"
    pq.write_table(pa.table({"trial_id": ["z"], "score": [1.0]}), foreign)
    wrong_type = s.results_dir / "wrong-type.parquet"
    bad = pa.Table.from_pylist([row("w", 1)], schema=SCHEMA).to_pylist()[0]
    pq.write_table(pa.Table.from_pylist([{**bad, "epoch": "one"}]), wrong_type)
    (s.results_dir / "subdir").mkdir()
    (s.results_dir / ".tmp-someone-writing.parquet").write_bytes(b"PAR1")  # silently ignored
    s.append(good[2:])
    bad_files = {truncated, text, foreign, wrong_type, s.results_dir / "subdir"}

    for reader in (Store(tmp_path, SCHEMA), Store(tmp_path)):
        with pytest.warns(StoreWarning) as record:
            rows = reader.rows()
        assert [r["trial_id"] for r in rows] == ["ok"] * 3
        assert {path for path, _ in reader.skipped} == bad_files
        messages = [str(w.message) for w in record]
        assert len(messages) == len(bad_files)
        for path in bad_files:
            assert sum(str(path) in m for m in messages) == 1
        reasons = dict(reader.skipped)
        assert "required columns" in reasons[foreign] and "trial_id" not in reasons[foreign]
        assert "epoch" in reasons[wrong_type]
        # Once per file per instance: reading again neither warns nor re-opens them.
        opened = reader.fragments_read
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(reader.rows()) == 3
            assert reader.rung_values(NOT_AT_RUNG, "val_acc") == {"ok": 0.5}
        assert reader.fragments_read == opened

    # Quarantine moves each unusable file aside with its reason; plain pyarrow reads again.
    with pytest.warns(StoreWarning):
        compactor = Store(tmp_path, SCHEMA)
        store_maintenance.compact(compactor)
    quarantine = tmp_path / "quarantine"
    assert {p.name for p in quarantine.iterdir() if not p.name.endswith(".reason")} == {p.name for p in bad_files}
    assert "required columns" in (quarantine / "foreign.parquet.reason").read_text()
    assert sorted(pq.read_table(s.results_dir).column("trial_id").to_pylist()) == ["ok"] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(Store(tmp_path).rows()) == 3


# ---------------------------------------------------------------- compaction


def test_compaction_keeps_rows_and_schema(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    for e in range(6):
        s.append([row(t, e, rung=e // 2, val_acc=e / (10 * (i + 1))) for i, t in enumerate("ab")])
    before_rows, before_table = s.rows(), s.table()
    early_reader = Store(tmp_path, SCHEMA)
    assert early_reader.rows() == before_rows
    rung1 = early_reader.rung_values(1, "val_acc")
    parts = fragments(tmp_path)

    assert store_maintenance.compact(s) == (6, 12)
    files = fragments(tmp_path)
    assert len(files) == 1 and files[0].startswith("compact-") and files[0].endswith(".parquet")
    compacted = s.results_dir / files[0]
    assert json.loads(pq.read_schema(compacted).metadata[SOURCES_KEY]) == {p: 2 for p in parts}
    assert pq.read_schema(compacted).equals(SCHEMA, check_metadata=False)
    version = b"kdsweep.schema_version"
    assert pq.read_schema(compacted).metadata[version] == SCHEMA.metadata[version]
    assert not [p for p in s.results_dir.iterdir() if p.name.startswith(".tmp")]
    for reader in (s, early_reader, Store(tmp_path, SCHEMA)):
        assert reader.rows() == before_rows
        assert reader.table().equals(before_table)
        assert reader.table().schema.equals(SCHEMA, check_metadata=True)
        assert reader.rung_values(1, "val_acc") == rung1
    assert early_reader.refresh() == 0
    plain = ds.dataset(s.results_dir, format="parquet").to_table()
    assert plain.schema.equals(SCHEMA, check_metadata=False) and plain.num_rows == 12

    # A second compaction merges the fragments appended since; the first one's file holds
    # more rows than they do, so it stays (rows are not rewritten at every compaction).
    s.append([row("c", 0, rung=0, val_acc=0.9)])
    Store(tmp_path, SCHEMA).append([row("d", 0, rung=0, val_acc=0.8)])
    assert early_reader.refresh() == 2
    assert store_maintenance.compact(s) == (2, 2)
    assert sorted(fragments(tmp_path))[0] == files[0]
    # Once the newer rows outnumber it, the next compaction merges it too.
    for e in range(10):
        s.append([row("e", e, rung=0, val_acc=e / 10)])
    assert store_maintenance.compact(s) == (12, 24)
    files2 = fragments(tmp_path)
    assert len(files2) == 1 and files2[0] != files[0]
    sources2 = json.loads(pq.read_schema(s.results_dir / files2[0]).metadata[SOURCES_KEY])
    assert sources2[files[0]] == 12 and sum(sources2.values()) == 24
    for reader in (s, early_reader, Store(tmp_path, SCHEMA)):
        rows = reader.rows()
        assert len(rows) == 24
        _check_no_duplicates(rows)
        assert reader.rung_values(0, "val_acc")["c"] == 0.9
        assert [r["trial_id"] for r in rows] == [r["trial_id"] for r in s.rows()]
    # Nothing to merge: one file left.
    assert store_maintenance.compact(s) == (0, 0)
    assert store_maintenance.compact(Store(tmp_path / "empty", SCHEMA)) == (0, 0)


def test_compaction_rewrites_each_row_a_logarithmic_number_of_times(tmp_path: Path) -> None:
    """256 compactions of 4 new rows each: every row is rewritten at most log2(256) + 1
    times (all of them at every compaction would be 128 times on average), at most
    log2 + 1 compacted files remain, and the rows keep their order."""
    s = Store(tmp_path, SCHEMA)
    rewritten = 0
    for batch in range(256):
        for e in range(4):
            s.append([row(f"t{batch:03d}", e)])
        merged = store_maintenance.compact(s)
        rewritten += merged[1]
        files = fragments(tmp_path)
        assert len(files) <= (batch + 1).bit_length()
    assert rewritten <= 1024 * 9
    rows = Store(tmp_path, SCHEMA).rows()
    assert [(r["trial_id"], r["epoch"]) for r in rows] == [(f"t{b:03d}", e) for b in range(256) for e in range(4)]


def test_a_reader_that_kept_up_takes_in_a_compaction_without_reading_it(tmp_path: Path) -> None:
    """A reader holding every source of a compacted file adopts it from its footer: no
    fragment read, the same rows in the same order, rung values and trial rows unchanged,
    and a later row still wins over the compacted ones."""
    writer = Store(tmp_path, SCHEMA)
    for e in range(4):
        for t in "ab":
            writer.append([row(t, e, rung=e % 2, val_acc=e / 10 + (t == "b") / 100)])
    reader = Store(tmp_path, SCHEMA)
    rows, rung1, trial_a = reader.rows(), reader.rung_values(1, "val_acc"), reader.trial_rows("a")
    read_before = reader.fragments_read
    assert store_maintenance.compact(Store(tmp_path, SCHEMA)) == (8, 8)
    assert reader.rows() == rows and reader.fragments_read == read_before
    assert reader.rung_values(1, "val_acc") == rung1 and reader.trial_rows("a") == trial_a
    writer.append([row("a", 5, rung=1, val_acc=0.01)])
    assert reader.rung_values(1, "val_acc") == {**rung1, "a": 0.01}
    assert [r["epoch"] for r in reader.trial_rows("a")] == [0, 1, 2, 3, 5]
    assert reader.fragments_read == read_before + 1


def test_reader_idle_across_two_compactions_sees_no_duplicates(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    s.append([row("a", 0)])
    s.append([row("a", 1)])
    idle = Store(tmp_path, SCHEMA)
    assert len(idle.rows()) == 2
    store_maintenance.compact(s)
    s.append([row("a", 2)])
    store_maintenance.compact(s)  # merges the first compacted file: its sources do not name idle's fragments
    rows = idle.rows()
    _check_no_duplicates(rows)
    assert [r["epoch"] for r in rows] == [0, 1, 2]


def test_compaction_moves_corrupt_files_to_quarantine_unchanged(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    s.append([row("a", 0)])
    corrupt = s.append([row("a", 1)])
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    bytes_before = corrupt.read_bytes()
    s.append([row("a", 2)])
    s.append([row("a", 3)])
    compactor = Store(tmp_path, SCHEMA)
    with pytest.warns(StoreWarning, match=corrupt.name):
        assert store_maintenance.compact(compactor) == (3, 3)
    assert not corrupt.exists()
    moved = tmp_path / "quarantine" / corrupt.name
    assert moved.read_bytes() == bytes_before
    assert "not a readable Parquet file" in (tmp_path / "quarantine" / f"{corrupt.name}.reason").read_text()
    assert len(fragments(tmp_path)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["epoch"] for r in Store(tmp_path, SCHEMA).rows()] == [0, 2, 3]


def test_leftover_sources_of_a_crashed_compaction_are_not_read_twice(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    first = s.append([row("a", 0)])
    s.append([row("a", 1)])
    saved = first.read_bytes()
    store_maintenance.compact(s)
    # As if the compactor died between publishing its file and deleting this source.
    first.write_bytes(saved)
    for reader in (s, Store(tmp_path, SCHEMA)):
        rows = reader.rows()
        _check_no_duplicates(rows)
        assert len(rows) == 2
    # The next compaction first finishes the crashed one (deletes the leftover), then merges
    # (two new rows: as many as the compacted file holds, so it is merged too).
    s.append([row("a", 2)])
    s.append([row("a", 3)])
    assert store_maintenance.compact(s) == (3, 4)
    assert not first.exists()
    (compacted,) = fragments(tmp_path)
    assert sum(json.loads(pq.read_schema(s.results_dir / compacted).metadata[SOURCES_KEY]).values()) == 4
    assert len(Store(tmp_path, SCHEMA).rows()) == 4


def test_fragment_vanishing_before_read_relists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = Store(tmp_path, SCHEMA)
    victim = writer.append([row("a", 0)])
    writer.append([row("a", 1)])
    reader = Store(tmp_path, SCHEMA)
    real_read = Store._read_fragment

    def compact_first(self: Store, path: Path) -> pa.Table:
        # The reader has listed the directory; a compaction deletes the fragment now.
        if self is reader and path == victim:
            store_maintenance.compact(writer)
        return real_read(self, path)

    monkeypatch.setattr(Store, "_read_fragment", compact_first)
    rows = reader.rows()
    assert [r["epoch"] for r in rows] == [0, 1]
    assert reader.skipped == []


# ---------------------------------------------------------------- append validation


def test_append_rejects_bad_rows(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    with pytest.raises(ValueError, match=r"'val_accuracy'.*valid columns.*'val_acc'"):
        s.append([row("a", 1, val_accuracy=0.5)])
    incomplete = row("a", 1)
    del incomplete["trial_id"]
    with pytest.raises(ValueError, match="'trial_id'"):
        s.append([incomplete])
    with pytest.raises(ValueError, match="'config_hash'"):
        s.append([row("a", 1), row("b", 1, config_hash=None)])
    with pytest.raises(ValueError, match="'epoch'"):
        s.append([{**row("a", 1), "epoch": "one"}])
    with pytest.raises(ValueError, match="at least one row"):
        s.append([])
    with pytest.raises(RuntimeError, match="without a schema"):
        Store(tmp_path).append([row("a", 1)])
    with pytest.raises(ValueError, match="required columns"):
        Store(tmp_path, pa.schema([pa.field("trial_id", pa.string())]))
    # Nothing was written, not even a temporary file.
    assert not s.results_dir.exists() or not list(s.results_dir.iterdir())


# ---------------------------------------------------------------- timing (printed, not asserted)


def test_append_then_rung_values_timing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a worker pays per report: append one row, then read its rung back, up to 1000
    fragments; and what reading another worker's fragment costs. The store's own cost is
    timed with fsync stubbed out; the two fsyncs of an append are the file system's price
    and are timed apart on the same file system."""
    n = 1000
    s = Store(tmp_path / "cpu", SCHEMA)
    per_call: list[float] = []
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", lambda fd: None)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(n):
            # 50 trials, each reporting at every rung in turn: 250 rows per rung by the end.
            r = row(f"t{i % 50}", i // 50, rung=(i // 50) % 4, val_acc=i / n)
            t0 = time.perf_counter()
            s.append([r])
            values = s.rung_values(r["rung"], "val_acc")
            per_call.append(time.perf_counter() - t0)
            assert values[r["trial_id"]] == r["val_acc"]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert len(s.rung_values(0, "val_acc")) == 50
    reader = Store(tmp_path / "cpu", SCHEMA)
    t0 = time.perf_counter()
    assert reader.refresh() == n
    read_each = (time.perf_counter() - t0) / n
    durable = Store(tmp_path / "fsync", SCHEMA)
    k = 50
    t0 = time.perf_counter()
    for i in range(k):
        durable.append([row("t", i)])
    with_fsync = (time.perf_counter() - t0) / k
    tail = per_call[-100:]
    with capsys.disabled():
        print(
            f"\n[store timing] {n} x (append + rung_values), fsync stubbed: {wall:.3f} s wall, "
            f"{cpu:.3f} s CPU; mean {sum(per_call) / n * 1e3:.3f} ms per report, "
            f"{sum(tail) / len(tail) * 1e3:.3f} ms at 900-1000 fragments. "
            f"Reading another worker's fragment: {read_each * 1e3:.3f} ms. "
            f"A durable append (2 fsyncs) here: {with_fsync * 1e3:.3f} ms."
        )


# ---------------------------------------------------------------- keyed appends and trust


def _append_keyed(run_dir: str, key: str, epoch: int, barrier: Any) -> None:
    barrier.wait()
    Store(run_dir, SCHEMA).append([row("a", epoch)], key=key)


def test_a_key_is_recorded_once_whoever_writes_it(tmp_path: Path) -> None:
    first, second = Store(tmp_path, SCHEMA), Store(tmp_path, SCHEMA)
    assert first.append([row("a", 1)], key="a/report-e1") is not None
    assert second.append([row("a", 1, val_acc=0.9)], key="a/report-e1") is None
    assert second.append([row("a", 2)], key="a/report-e2") is not None
    assert [(r["epoch"], r["val_acc"]) for r in Store(tmp_path).rows()] == [(1, None), (2, None)]
    with pytest.raises(ValueError, match="malformed row key"):
        first.append([row("a", 3)], key="../escape")
    # Eight processes race for each of five keys: exactly one row per key survives.
    ctx = mp.get_context("spawn")
    for epoch in range(3, 8):
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=_append_keyed, args=(str(tmp_path), f"a/report-e{epoch}", epoch, barrier)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
    epochs = [r["epoch"] for r in Store(tmp_path).rows()]
    assert sorted(epochs) == [1, 2, 3, 4, 5, 6, 7]
    assert len(pq.read_table(tmp_path / "results").column("epoch")) == 7


def test_a_claim_whose_writer_died_before_publishing_is_published_by_the_next_writer(tmp_path: Path) -> None:
    s = Store(tmp_path, SCHEMA)
    s.append([row("a", 0)], key="a/report-e0")
    # A writer that wrote its fragment and claimed the key, then died before the rename.
    name = "part-00000000000000000001-host-1-dead.parquet"
    pq.write_table(pa.Table.from_pylist([row("a", 1, val_acc=0.25)], schema=SCHEMA), s.results_dir / f".{name}")
    os.symlink(f"../../{name}", s.results_dir / ".keys" / "a" / "report-e1")
    assert [r["epoch"] for r in Store(tmp_path).rows()] == [0]  # claimed but not visible yet
    assert Store(tmp_path, SCHEMA).append([row("a", 1, val_acc=0.5)], key="a/report-e1") is None
    assert sorted((r["epoch"], r["val_acc"] or 0.0) for r in Store(tmp_path).rows()) == [(0, 0.0), (1, 0.25)]
    assert not (s.results_dir / f".{name}").exists()


@pytest.mark.parametrize("counts", ["zero", "wrong", "negative", "legacy-list"])
def test_a_planted_compacted_file_hides_nothing_and_deletes_nothing(tmp_path: Path, counts: str) -> None:
    s = Store(tmp_path, SCHEMA)
    real = [s.append([row("a", e)]).name for e in range(3)]
    # "negative": the real fragments' true counts, balanced by a ghost's negative one.
    negative = {**{n: 1 for n in real}, "part-00000000000000000000-ghost.parquet": -3}
    sources: Any = {"zero": {n: 0 for n in real}, "wrong": {n: 2 for n in real}, "negative": negative, "legacy-list": real}[counts]
    planted = s.results_dir / "compact-00000000000000000000-planted.parquet"
    rows = [row("z", 0)] * 6 if counts == "wrong" else []  # "wrong": the sum matches its rows
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table.replace_schema_metadata({SOURCES_KEY: json.dumps(sources).encode()}), planted)
    with pytest.warns(StoreWarning, match="planted"):
        assert [r["trial_id"] for r in Store(tmp_path).rows()] == ["a"] * 3
    with pytest.warns(StoreWarning, match="planted"):
        assert store_maintenance.compact(Store(tmp_path, SCHEMA)) == (3, 3)
    assert not planted.exists() and (tmp_path / "quarantine" / planted.name).exists()
    assert [r["trial_id"] for r in Store(tmp_path).rows()] == ["a"] * 3


def test_compact_finishes_the_appends_of_writers_that_died_and_leaves_live_ones_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path, SCHEMA)
    s.append([row("a", 0)], key="a/report-e0")
    s.append([row("a", 1)], key="a/report-e1")

    class Killed(BaseException):
        pass

    def die(results_dir: Path, name: str) -> Path:
        raise Killed  # the writer is killed after claiming the key, before the rename

    with monkeypatch.context() as m:
        m.setattr(store, "publish", die)
        with pytest.raises(Killed):
            Store(tmp_path, SCHEMA).append([row("a", 2, val_acc=0.5)], key="a/report-e2")
    (claimed,) = s.results_dir.glob(".part-*")
    # A writer that lost the claim for the same key and died before deleting its file.
    lost = s.results_dir / ".part-00000000000000000009-host-9-lost.parquet"
    shutil.copyfile(claimed, lost)
    # A writer still writing its file, and one that wrote it and is about to claim its key.
    writing = s.results_dir / ".part-00000000000000000010-host-9-writing.parquet"
    writing.write_bytes(claimed.read_bytes()[:40])
    about_to_claim = s.results_dir / ".part-00000000000000000011-host-9-claiming.parquet"
    table = pa.Table.from_pylist([row("a", 3)], schema=SCHEMA)
    pq.write_table(table.replace_schema_metadata({b"kdsweep.key": b"a/report-e3"}), about_to_claim)

    assert [r["epoch"] for r in Store(tmp_path).rows()] == [0, 1]  # recorded, not yet visible
    assert store_maintenance.compact(Store(tmp_path, SCHEMA)) == (3, 3)
    assert [(r["epoch"], r["val_acc"]) for r in Store(tmp_path).rows()] == [(0, None), (1, None), (2, 0.5)]
    assert not claimed.exists() and not lost.exists()
    assert writing.exists() and about_to_claim.exists()
    assert len(ds.dataset(s.results_dir).to_table()) == 3  # plain readers agree


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/St_Johns", "+09:00"])
def test_rows_convert_zoned_time_stamps_as_pyarrow_does_without_pandas(zone: str) -> None:
    """``Store.rows`` converts rows itself (``_pylist``): pyarrow's own conversion of a zoned
    time stamp imports pandas, most of what a light command costs. Same values, same zones."""
    from kdsweep.orchestrator.store import _pylist

    when = [dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.timezone.utc), None, dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)]
    table = pa.table({"at": pa.array(when, type=pa.timestamp("us", tz=zone)), "naive": pa.array([dt.datetime(2026, 1, 1)] * 3), "n": [1, 2, 3]})
    expected = table.to_pylist()
    got = _pylist(table.slice(1))
    assert got == expected[1:] and [repr(r["at"]) for r in got] == [repr(r["at"]) for r in expected[1:]]
