"""The headline — does the search beat the baseline? — from the final stage's held-out
comparisons, Holm-adjusted over configurations × fixed points; "not settled" with the exact
``kdsweep retrain`` command before there is one; the same answer in the table, JSON, CSV and
HTML."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path

import pytest
from rich.console import Console
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kdsweep.orchestrator import analyses, headline
from kdsweep.orchestrator.html_report import build_html
from kdsweep.orchestrator.report import render_table, to_csv, to_json
from kdsweep.orchestrator.significance import NO_SPREAD, NOT_DISTINGUISHABLE, final_comparisons
from kdsweep.orchestrator.summary import RunSummary
from tests.conftest import kdsweep
from tests.orchestrator.test_html_report import _summary as final_stage_summary


def _summary(sweep_file: Path, finals: dict[str, tuple[str, list[float]]], mode: str = "max") -> RunSummary:
    """A summary by hand with the final stage ``finals`` (``test_html_report``'s builder)."""
    return final_stage_summary(sweep_file, mode, finals)


def _headline(summary: RunSummary) -> headline.Headline:
    return headline.headline(summary, analyses.of(summary).significance_top(10))


def test_final_comparisons_are_holm_adjusted_over_configurations_times_fixed_points(sweep_file: Path) -> None:
    finals = {
        "t0003": ("tpe", [0.930, 0.935, 0.94]),
        "t0004": ("tpe", [0.905, 0.915, 0.91]),
        "t0000": ("fixed", [0.900, 0.905, 0.91]),
        "t0001": ("fixed", [0.880, 0.890, 0.87]),
    }
    rows = final_comparisons(_summary(sweep_file, finals))
    raw = [stats.ttest_ind(finals[c.config][1], finals[c.fixed][1], equal_var=False).pvalue for c in rows]
    assert [c.p_value for c in rows] == pytest.approx(raw, rel=1e-9)
    assert [c.p_adjusted for c in rows] == pytest.approx(list(multipletests(raw, method="holm")[1]), rel=1e-9)
    for c in rows:
        assert c.verdict == (("better" if c.difference > 0 else "worse") if c.p_adjusted < 0.05 else NOT_DISTINGUISHABLE)
    # t0004 vs t0000 alone would be "better" at p < 0.05 unadjusted? Whatever it is, the
    # adjusted value is never smaller than the raw one.
    assert all(c.p_adjusted >= c.p_value for c in rows)


def test_the_search_beats_the_baseline_only_when_one_configuration_beats_every_fixed_point(sweep_file: Path) -> None:
    better = _summary(sweep_file, {
        "t0003": ("tpe", [0.95, 0.951, 0.952]),
        "t0004": ("tpe", [0.80, 0.95, 0.60]),
        "t0000": ("fixed", [0.90, 0.901, 0.902]),
        "t0001": ("fixed", [0.85, 0.851, 0.853]),
    })  # fmt: skip
    h = _headline(better)
    rows = {(c.config, c.fixed): c for c in analyses.of(better).comparisons}
    assert (h.stage, h.verdict, h.config, h.metric, h.command) == ("final", "better", "t0003", "test_acc", None)
    assert h.p_adjusted == max(rows["t0003", "t0000"].p_adjusted, rows["t0003", "t0001"].p_adjusted)
    assert "the search beats the baseline" in h.sentence and "Holm-adjusted over 4 comparisons" in h.sentence

    # Better than one fixed point but not the other: not a win over the baseline.
    partial = _summary(sweep_file, {"t0003": ("tpe", [0.95, 0.951, 0.952]), "t0000": ("fixed", [0.90, 0.901, 0.902]), "t0001": ("fixed", [0.96, 0.90, 0.99])})
    assert _headline(partial).verdict == NOT_DISTINGUISHABLE

    worse = _summary(sweep_file, {"t0003": ("tpe", [0.80, 0.801, 0.802]), "t0000": ("fixed", [0.90, 0.901, 0.902])})
    h = _headline(worse)
    assert (h.stage, h.verdict, h.config, h.fixed) == ("final", "worse", "t0003", "t0000") and h.p_adjusted is not None and h.p_adjusted < 0.05


def test_zero_spread_on_both_sides_is_not_testable_never_p_zero(sweep_file: Path) -> None:
    summary = _summary(sweep_file, {"t0003": ("tpe", [0.95, 0.95, 0.95]), "t0000": ("fixed", [0.90, 0.90, 0.90])})
    (row,) = analyses.of(summary).comparisons
    assert row.verdict == NO_SPREAD and math.isnan(row.p_value) and math.isnan(row.p_adjusted) and math.isnan(row.t)
    h = _headline(summary)
    assert h.verdict == NOT_DISTINGUISHABLE and h.p_adjusted is None and "no spread" in h.sentence
    # One side varying is an ordinary Welch test.
    (row,) = analyses.of(_summary(sweep_file, {"t0003": ("tpe", [0.95, 0.96, 0.97]), "t0000": ("fixed", [0.90, 0.90, 0.90])})).comparisons
    assert row.verdict == "better" and 0 < row.p_value < 0.05


def test_before_a_final_stage_the_headline_says_not_settled_and_settling_it_works(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live").returncode == 0
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    h = doc["headline"]
    best = next(r["trial_id"] for r in doc["leaderboard"] if r["origin"] != "fixed")
    assert (h["stage"], h["verdict"], h["config"], h["fixed"]) == ("search", "not settled", best, "t0000")
    assert h["command"] == f"kdsweep retrain {run} --top 0 --trial {best} --trial t0000 --repeats 3"
    assert h["command"] in h["sentence"]
    table = " ".join(kdsweep("report", str(run)).stdout.split())
    assert table.endswith(h["command"]) and "headline (search stage): not settled" in table

    # The printed command settles it (run here with fewer epochs, which it allows).
    words = shlex.split(h["command"])
    done = kdsweep(*words[1:], "--epochs", "3", "--no-live")
    assert done.returncode == 0, done.stderr
    assert "headline (final stage)" in done.stdout
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    h = doc["headline"]
    assert h["stage"] == "final" and h["verdict"] in ("better", "worse", NOT_DISTINGUISHABLE) and h["command"] is None
    rows = [c for c in doc["final_comparisons"] if c["config"] == best]
    assert rows and h["p_adjusted"] in [c["p_adjusted"] for c in rows] + [None]
    # The same answer in every format.
    text = " ".join(kdsweep("report", str(run)).stdout.split())
    assert text.endswith(f"headline (final stage): {' '.join(h['sentence'].split())}")
    records = list(csv.DictReader(io.StringIO(kdsweep("report", str(run), "--format", "csv").stdout)))
    assert {(r["headline_stage"], r["headline_verdict"]) for r in records} == {("final", h["verdict"])}
    page = tmp_path / "r.html"
    assert kdsweep("report", str(run), "--html", str(page)).returncode == 0
    assert f"Headline (final stage): {h['verdict']}" in page.read_text()


def test_no_fixed_point_no_baseline(sweep_file: Path) -> None:
    summary = _summary(sweep_file, {"t0003": ("tpe", [0.9, 0.91])})
    h = _headline(summary)
    assert (h.verdict, h.p_adjusted, h.command) == (headline.NO_BASELINE, None, None)
    console = Console(width=400, record=True, file=io.StringIO())
    render_table(summary, console)
    assert console.export_text().rstrip().splitlines()[-1].startswith("headline (search stage): no fixed point")
    assert json.loads(to_json(summary))["headline"]["verdict"] == headline.NO_BASELINE
    assert "no fixed point" in build_html(summary)
    assert {r["headline_verdict"] for r in csv.DictReader(io.StringIO(to_csv(summary)))} == {headline.NO_BASELINE}


def test_the_json_report_is_strict_json_with_missing_statistics_as_null(sweep_file: Path) -> None:
    """One run a side and repeats without spread leave NaN statistics; strict readers refuse
    a bare NaN, so the report writes null."""
    summary = _summary(sweep_file, {"t0003": ("tpe", [0.95]), "t0004": ("tpe", [0.9, 0.9]), "t0000": ("fixed", [0.90, 0.90])})
    text = to_json(summary)

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    doc = json.loads(text, parse_constant=refuse)
    rows = {c["config"]: c for c in doc["final_comparisons"]}
    assert rows["t0003"]["p_value"] is None and rows["t0004"]["p_adjusted"] is None and rows["t0004"]["verdict"] == NO_SPREAD
