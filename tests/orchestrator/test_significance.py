"""Significance during the search: the Wilson interval of each accuracy from ``val_n``, the
exact McNemar test on the recorded per-example correctness, checked by hand and against
scipy; the report's comparison of the leader with the fixed points and the ranks below it,
its fallback without paired data, old runs without the columns; and a real distillation run
that records both columns."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from rich.console import Console
from scipy import stats

from kdsweep.orchestrator import analyses, store_maintenance
from kdsweep.orchestrator.config import load_sweep
from kdsweep.orchestrator.html_report import build_html
from kdsweep.orchestrator.report import render_table, summarize, to_csv, to_json
from kdsweep.orchestrator.policies import order_of
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.schema import Event, pack_correct, results_schema, unpack_correct
from kdsweep.orchestrator.significance import NO_PAIRED_DATA, accuracy_interval, analyse, mcnemar, verdict, wilson_interval
from kdsweep.orchestrator.store import Store
from kdsweep.orchestrator.worker import TrialSpec, base_row
from kdsweep.trainers.base import trainer_spec
from tests.conftest import SMALL_SWEEP, kdsweep

#: The 97.5 % standard normal quantile, written out: the hand computations below use no library.
Z = 1.959963984540054


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): centre (k + z²/2) / (n + z²), half-width z/(n + z²) · sqrt(k(n−k)/n + z²/4)."""
    centre = (k + Z**2 / 2) / (n + Z**2)
    half = Z / (n + Z**2) * math.sqrt(k * (n - k) / n + Z**2 / 4)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(17, 20), (7, 10), (0, 12), (144, 144), (140, 144)])
def test_wilson_interval_matches_the_formula_by_hand(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    by_hand = _wilson_by_hand(k, n)
    assert (low, high) == pytest.approx(by_hand, abs=1e-12)
    # 17 of 20, worked out on paper: centre (17 + 1.92073) / 23.84146 = 0.79362, half-width
    # 1.95996 / 23.84146 · sqrt(2.55 + 0.96036) = 0.15402.
    if (k, n) == (17, 20):
        assert (low, high) == pytest.approx((0.63958, 0.94763), abs=1e-5)
    # All right: the upper bound is 1, the lower n / (n + z²) (0.97402 for 144 examples).
    if k == n:
        assert low == pytest.approx(n / (n + Z**2), abs=1e-12) and high == pytest.approx(1.0)
    assert accuracy_interval(k / n, n) == (low, high)


def test_exact_mcnemar_by_hand_and_against_scipy() -> None:
    # Under "equally good" each discordant example is a fair coin; p = 2 · P(X <= min(b, c)).
    # b = 0, c = 6: 2 · (1/2)^6 = 1/32; b = 0, c = 5: 2 · (1/2)^5 = 1/16; b = 1, c = 6:
    # 2 · (1 + 7) / 2^7 = 1/8; b = 2, c = 2: p = 1 (capped).
    cases = {(0, 6): 1 / 32, (0, 5): 1 / 16, (1, 6): 1 / 8, (6, 0): 1 / 32, (2, 2): 1.0}
    for (b, c), p in cases.items():
        first = np.array([True] * b + [False] * c + [True] * 7 + [False] * 3)
        second = np.array([False] * b + [True] * c + [True] * 7 + [False] * 3)
        got = mcnemar(first, second)
        assert got[:2] == (b, c) and got[2] == pytest.approx(p, abs=1e-12)
        assert got[2] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    assert verdict(6, 0, 1 / 32) == "better" and verdict(0, 6, 1 / 32) == "worse"
    assert verdict(5, 0, 1 / 16) == "not distinguishable at 95 %"
    assert mcnemar(np.ones(4, bool), np.ones(4, bool)) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="one split"):
        mcnemar(np.ones(4, bool), np.ones(5, bool))


def test_packed_correctness_is_one_bit_per_example_least_significant_first() -> None:
    correct = np.array([True] + [False] * 7 + [True, True])
    packed = pack_correct(correct)
    assert packed == bytes([0b00000001, 0b00000011])
    assert unpack_correct(packed, 10).tolist() == correct.tolist()
    assert len(pack_correct(np.ones(144, bool))) == 18
    with pytest.raises(ValueError, match="needs 3"):
        unpack_correct(packed, 17)


# ----------------------------------------------------------------- a run built row by row

N = 20
#: Leaderboard-to-be: t0001 leads at 9 epochs (17 of 20); t0002 ties it on value with one
#: example each way; t0004 has 5 fewer right (p = 1/16: not distinguishable); t0003 comes from
#: an old fragment without the validation columns; the baseline t0000 stopped at epoch 3,
#: where the leader had 6 examples right that it had wrong (p = 1/32: the leader beats it).
FIRST = {"t0001": {1: 10, 3: 15, 9: 17}, "t0000": {1: 10, 3: 9}, "t0004": {1: 8, 3: 10, 9: 12}}


def _first(k: int) -> np.ndarray:
    return np.arange(N) < k


def _report(cfg: Any, run: Path, tid: str, origin: str, epoch: int, correct: np.ndarray | None, acc: float | None = None) -> dict[str, Any]:
    record = TrialRecord(tid, {"lr": 0.1, "momentum": 0.9, "width": 64}, origin)
    spec = TrialSpec.of(run, record, order_of(cfg, record))
    rung = {1: 0, 3: 1, 9: 2}[epoch]
    row = base_row(cfg, spec, Event.REPORT, epoch, rung, dt.datetime.now(dt.timezone.utc))
    if correct is None:
        return {**row, "val_acc": acc}
    return {**row, "val_acc": float(correct.mean()), "val_n": N, "val_correct": pack_correct(correct)}


def _end(report: dict[str, Any], event: Event) -> dict[str, Any]:
    # The bits belong on reports only (the worker's rule); an end row repeats the metrics.
    return {**{k: v for k, v in report.items() if k != "val_correct"}, "event": event.value}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "small.toml").write_text(SMALL_SWEEP)
    cfg = load_sweep(tmp_path / "small.toml")
    run = tmp_path / "run"
    RunDir.create(run, cfg)
    schema = results_schema(trainer_spec(cfg.trainer).metric_names(cfg.settings), cfg.param_types())
    store = Store(run, schema)
    for tid, origin in (("t0000", "fixed"), ("t0001", "tpe"), ("t0004", "tpe")):
        rows = [_report(cfg, run, tid, origin, e, _first(k)) for e, k in FIRST[tid].items()]
        for row in rows:
            store.append([row])
        store.append([_end(rows[-1], Event.STOPPED if tid == "t0000" else Event.COMPLETED)])
    ties = [_report(cfg, run, "t0002", "tpe", 9, _first(16) | (np.arange(N) == 19))]
    store.append([*ties, _end(ties[0], Event.COMPLETED)])
    # A fragment as kdsweep wrote it before val_n and val_correct existed.
    old_schema = pa.schema([f for f in schema if f.name not in ("val_n", "val_correct")])
    old = _report(cfg, run, "t0003", "tpe", 9, None, acc=0.5)
    Store(run, old_schema).append([old, _end(old, Event.COMPLETED)])
    return run


def test_report_compares_the_leader_with_the_fixed_point_and_the_ranks_below(built: Path) -> None:
    summary = summarize(str(built))
    assert [t.trial_id for t in summary.trials] == ["t0001", "t0002", "t0004", "t0003", "t0000"]
    sig = analyse(summary, top=10)
    assert (sig.intervals["t0001"].n, sig.intervals["t0001"].acc) == (N, 0.85)
    assert (sig.intervals["t0001"].low, sig.intervals["t0001"].high) == pytest.approx(_wilson_by_hand(17, 20), abs=1e-12)
    assert sig.intervals["t0003"].n is None and math.isnan(sig.intervals["t0003"].low)

    (fixed,) = sig.fixed
    assert (fixed.other, fixed.epoch, fixed.top, fixed.only_trial, fixed.only_other) == ("t0000", 3, False, 6, 0)
    # The family this report makes: the leader against t0000 (a fixed point, and rank 5: one
    # test), t0002 and t0004 (t0003 has no paired data: no test). Holm over m = 3 by hand:
    # 1/32, 1/16, 1 sorted -> 3/32, 2/16, 1. Alone, 1/32 < 0.05 would read "better".
    assert fixed.p_value == pytest.approx(1 / 32) and fixed.p_adjusted == pytest.approx(3 / 32) and fixed.verdict == "not distinguishable at 95 %"
    by_other = {p.other: p for p in sig.ranks}
    assert (by_other["t0002"].only_trial, by_other["t0002"].only_other, by_other["t0002"].p_value) == (1, 1, 1.0)
    assert by_other["t0002"].verdict == "not distinguishable at 95 %" and by_other["t0002"].top and by_other["t0002"].p_adjusted == 1.0
    assert by_other["t0004"].p_value == pytest.approx(1 / 16) and by_other["t0004"].p_adjusted == pytest.approx(2 / 16)
    assert by_other["t0004"].verdict == "not distinguishable at 95 %" and by_other["t0000"].p_adjusted == fixed.p_adjusted
    assert by_other["t0003"].verdict == NO_PAIRED_DATA and "t0003" in by_other["t0003"].note

    console = Console(record=True, width=1000, file=io.StringIO())
    render_table(summary, console)
    text = console.export_text()
    assert "[0.6396, 0.9476]" in text  # the leader's Wilson interval, on its leaderboard row
    assert "not distinguishable from the leader t0001 at 95 %: rank 2 (t0002), 3 (t0004), 5 (t0000); no paired data to tell the leader t0001 from rank 4 (t0003)" in text
    assert "leader t0001 vs fixed point t0000 at epoch 3, the highest both reached" in text
    assert (
        "6 right only by t0001 and 0 only by t0000; exact McNemar p = 0.0312, Holm-adjusted over 3 comparisons p = 0.0938: "
        "not distinguishable at 95 %: the leader does not beat this fixed point on these examples "
        "(descriptive: the leader was selected on these validation examples)"
    ) in text
    assert "not distinguishable (p_adj=0.0938, e3)" in text  # the baseline's row, read against the leader

    doc = json.loads(to_json(summary))
    board = {r["trial_id"]: r for r in doc["leaderboard"]}
    assert board["t0001"]["val_n"] == N and board["t0001"]["vs_leader"] is None
    assert board["t0000"]["vs_leader"] == "not distinguishable at 95 %" and board["t0000"]["vs_leader_epoch"] == 3
    assert board["t0000"]["vs_leader_p"] == pytest.approx(1 / 32) and board["t0000"]["vs_leader_p_adjusted"] == pytest.approx(3 / 32)
    assert board["t0003"]["val_n"] is None and board["t0003"]["vs_leader"] == NO_PAIRED_DATA and board["t0003"]["vs_leader_p"] is None
    assert doc["significance"]["interval"] == "wilson" and doc["significance"]["leader_vs_fixed"][0]["p_adjusted"] == pytest.approx(3 / 32)
    assert (doc["significance"]["adjustment"], doc["significance"]["comparisons"], doc["significance"]["descriptive"]) == ("Holm", 3, True)
    header = to_csv(summary).splitlines()[0].split(",")
    assert {"val_n", "val_acc_low", "val_acc_high", "vs_leader", "vs_leader_p", "vs_leader_p_adjusted"} <= set(header)
    page = build_html(summary)
    assert "Significance during the search (descriptive)" in page and "the leader does not beat this fixed point" in page

    # A report of the leader and two ranks makes one test fewer: t0000 (rank 5) is then only
    # compared as a fixed point, and Holm runs over 2 (t0002 at rank 2: p = 1; t0000: 1/32).
    short = analyses.of(summary).significance_top(2)
    assert [p.other for p in short.ranks] == ["t0002"] and short.fixed[0].p_adjusted == pytest.approx(2 / 32)

    # Were the baseline to lead, the question becomes whether the search's best beats it.
    by_id = {t.trial_id: t for t in summary.trials}
    baseline_first = dataclasses.replace(summary, trials=[by_id["t0000"], *(t for t in summary.trials if t.trial_id != "t0000")])
    sig = analyse(baseline_first)
    assert sig.fixed == [] and [(p.trial, p.other, p.epoch) for p in sig.searched] == [("t0001", "t0000", 3)]
    console = Console(record=True, width=1000, file=io.StringIO())
    render_table(baseline_first, console)
    text = console.export_text()
    assert "the leader t0000 is a fixed point itself: no searched trial ranks above it" in text
    assert "best searched trial t0001 vs fixed point t0000 at epoch 3" in text and "(descriptive: the best searched trial was selected on these validation examples)" in text


def test_a_run_without_the_validation_columns_reads_and_says_it_has_no_paired_data(built: Path) -> None:
    # Compaction rewrites the old fragment with the new schema (nulls); plain pyarrow reads it.
    cfg = RunDir(built).load_config()
    store_maintenance.compact(Store(built, results_schema(trainer_spec(cfg.trainer).metric_names(cfg.settings), cfg.param_types())))
    rows = ds.dataset(built / "results").to_table().to_pylist()
    assert {r["val_n"] for r in rows if r["trial_id"] == "t0003"} == {None}
    summary = summarize(str(built))
    only_old = [t for t in summary.trials if t.trial_id == "t0003"]
    old_view = dataclasses.replace(summary, trials=only_old + [t for t in summary.trials if t.trial_id == "t0000"])
    sig = analyse(old_view)
    (p,) = sig.fixed
    assert p.verdict == NO_PAIRED_DATA and p.epoch is None and "t0003" in p.note
    console = Console(record=True, width=1000, file=io.StringIO())
    render_table(old_view, console)
    text = console.export_text()
    assert "leader t0003 vs fixed point t0000: no paired data" in text and "cannot tell whether the leader beats it" in text
    assert "no paired data to tell the leader t0003 from rank 2 (t0000) (rule:" in text and "distinguishable at" not in text


@pytest.mark.slow
def test_a_distillation_run_records_val_n_and_correctness_and_the_report_compares(tmp_path: Path) -> None:
    """A real loss-weights sweep on 8×8 digits (3 trials to epoch 3, ladder 1/3): every report
    carries val_n, the rung reports carry the bits, which reproduce val_acc; the report's
    comparisons are McNemar on exactly those bits."""
    out = tmp_path / "run"
    sets = [
        "data.dataset=digits", "data.image_size=8", "num_trials=3", "asha.min_epochs=1", "asha.max_epochs=3", "asha.reduction_factor=3",
        "backend.max_concurrent=2", "settings.student_width=0.125", "settings.teacher_width=0.125",
        "settings.teacher_epochs=1", "settings.batch_size=64", f"settings.teacher_cache={tmp_path / 'cache'}",
    ]  # fmt: skip
    result = kdsweep("launch", "loss_weights", "--out", str(out), "--no-live", *[a for s in sets for a in ("--set", s)], timeout=600)
    assert result.returncode == 0, result.stderr
    reports = [r for r in ds.dataset(out / "results").to_table().to_pylist() if r["event"] == "report"]
    n = reports[0]["val_n"]
    assert n > 100 and all(r["val_n"] == n for r in reports)
    bits: dict[tuple[str, int], np.ndarray] = {}
    for r in reports:
        at_rung = r["rung"] >= 0 or r["epoch"] == 3
        assert (r["val_correct"] is not None) == at_rung, r
        if at_rung:
            bits[r["trial_id"], r["epoch"]] = unpack_correct(r["val_correct"], n)
            assert bits[r["trial_id"], r["epoch"]].mean() == pytest.approx(r["val_acc"], abs=1e-12)
    assert "exact McNemar" in result.stdout and "vs leader (McNemar, Holm)" in result.stdout
    # Whoever leads, the report says in words how the search compares with the baseline.
    assert "vs fixed point t0000 at epoch" in result.stdout

    doc = json.loads(kdsweep("report", str(out), "--format", "json").stdout)
    sig, leader = doc["significance"], doc["leaderboard"][0]["trial_id"]
    compared = sig["leader_vs_ranks"] + sig["leader_vs_fixed"] + sig["searched_vs_fixed"]
    assert len(sig["leader_vs_fixed"] + sig["searched_vs_fixed"]) == 1 and all(c["trial"] == leader for c in sig["leader_vs_ranks"])
    for c in compared:
        b, cc, p = mcnemar(bits[c["trial"], c["epoch"]], bits[c["other"], c["epoch"]])
        assert (c["only_trial"], c["only_other"], c["n"]) == (b, cc, n) and c["p_value"] == pytest.approx(p)
