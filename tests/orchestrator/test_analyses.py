"""The report's statistics are kept per state of the results (``analyses.py``): a report of
unchanged results reads them back and says exactly what a fresh computation says; a change to
the results recomputes them; a cache file that is bad or cannot be written changes nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from kdsweep.orchestrator import analyses, layout, report
from kdsweep.orchestrator.report import RunSummary, summarize
from kdsweep.orchestrator.significance import analyse
from tests.conftest import SMALL_SWEEP, kdsweep
from tests.orchestrator.test_significance import built  # noqa: F401 - a fixture: paired data, a fixed point

#: A synthetic sweep large enough for parameter tendencies (20 trials at a rung), with the
#: research baseline of synthetic.toml as a fixed point.
TENDENCIES = ["--set", "num_trials=24", "--set", "settings.sleep_s=0"]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sweep with its leader and fixed point retrained (final comparisons)."""
    tmp = tmp_path_factory.mktemp("analyses")
    (tmp / "small.toml").write_text(SMALL_SWEEP)
    run = tmp / "run"
    assert kdsweep("launch", str(tmp / "small.toml"), "--out", str(run), "--no-live").returncode == 0
    done = kdsweep("retrain", str(run), "--top", "2", "--trial", "t0000", "--repeats", "2", "--epochs", "3", "--no-live")
    assert done.returncode == 0, done.stderr
    return run


@pytest.fixture(scope="module")
def with_tendencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("analyses") / "run"
    done = kdsweep("launch", "synthetic", "--out", str(run), "--no-live", *TENDENCIES)
    assert done.returncode == 0, done.stderr
    return run


def _as_json(found: analyses.Analyses) -> str:
    return json.dumps(dataclasses.asdict(found))


def _outputs(summary: RunSummary) -> list[str]:
    """What the report prints of ``summary`` in every format (top 3 and everything)."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    report.render_table(summary, console, top=3)
    return [console.export_text(), report.to_json(summary, 3), report.to_json(summary), report.to_csv(summary)]


def _no_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(summary: RunSummary) -> Any:
        raise AssertionError("computed although the cache holds these results")

    monkeypatch.setattr(analyses, "compute", refuse)


@pytest.mark.parametrize("which", ["built", "retrained", "with_tendencies"])
def test_a_report_of_unchanged_results_reads_the_statistics_back_unchanged(which: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    run: Path = request.getfixturevalue(which)
    cache = run / layout.CACHE / layout.ANALYSES
    cache.unlink(missing_ok=True)
    first = summarize(str(run))
    fresh = analyses.compute(first)
    # Each run exercises its part: paired tests, the final stage, the tendencies.
    part = {"built": fresh.significance.fixed, "retrained": fresh.comparisons, "with_tendencies": fresh.tendencies}[which]
    assert part, f"the {which} run has nothing to check in its part"
    expected = _outputs(first)  # computes again, and keeps the result
    assert cache.is_file()
    _no_computing(monkeypatch)
    again = summarize(str(run))
    assert _as_json(analyses.of(again)) == _as_json(fresh)
    assert _outputs(again) == expected
    # Cut to a leaderboard's length, the cached comparisons are what analyse(summary, top) says.
    for top in (1, 2, 5, None):
        expected_sig = analyse(first, len(first.trials) if top is None else top)
        assert json.dumps(dataclasses.asdict(analyses.of(again).significance_top(top))) == json.dumps(dataclasses.asdict(expected_sig))


def test_changed_results_are_analysed_afresh(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    summary = summarize(str(built))
    assert analyses.of(summary) is not None  # computed and kept
    calls: list[RunSummary] = []
    compute = analyses.compute
    monkeypatch.setattr(analyses, "compute", lambda s: calls.append(s) or compute(s))
    analyses.of(summarize(str(built)))
    assert calls == []
    # Results read from other files (a new fragment, a compaction), one row less in a summary
    # edited by hand (no file identity: its rows are hashed by value), another trial status,
    # a space resolved otherwise (a trainer generates its space, and the document alone does
    # not fix it): another digest.
    assert summary.results_identity
    other_files = dataclasses.replace(summary, results_identity=summary.results_identity + ";part-new.parquet:1")
    fewer = dataclasses.replace(summary, rows=summary.rows[:-1], results_identity=None)
    paused = dataclasses.replace(summary, trials=[dataclasses.replace(summary.trials[0], status="paused"), *summary.trials[1:]])
    lr, *others = summary.cfg.space
    narrower = dataclasses.replace(summary, cfg=dataclasses.replace(summary.cfg, space=(dataclasses.replace(lr, high=0.5), *others)))
    for changed in (other_files, fewer, paused, narrower):
        assert analyses.digest(changed) != analyses.digest(summary)
        analyses.of(changed)
    assert calls == [other_files, fewer, paused, narrower]
    assert analyses.digest(dataclasses.replace(fewer, rows=summary.rows)) != analyses.digest(fewer)


@pytest.mark.parametrize("bad", ["not json", '{"digest": 1}', "shape"])
def test_a_bad_cache_file_is_ignored_and_replaced(built: Path, bad: str) -> None:  # noqa: F811
    summary = summarize(str(built))
    cache = built / layout.CACHE / layout.ANALYSES
    cache.parent.mkdir(exist_ok=True)
    if bad == "shape":  # the right digest over a document of another shape
        bad = json.dumps({"digest": analyses.digest(summary), "analyses": {"significance": {"leader": 1}}})
    cache.write_text(bad)
    assert _as_json(analyses.of(summarize(str(built)))) == _as_json(analyses.compute(summary))
    assert json.loads(cache.read_text())["digest"] == analyses.digest(summary)


def test_a_cache_that_cannot_be_written_is_left_out(built: Path) -> None:  # noqa: F811
    cache = built / layout.CACHE / layout.ANALYSES
    cache.unlink(missing_ok=True)
    cache.mkdir(parents=True)  # a directory where the file would go: the rename fails
    summary = summarize(str(built))
    assert _as_json(analyses.of(summary)) == _as_json(analyses.compute(summary))
    assert sorted(p.name for p in cache.parent.iterdir()) == [layout.ANALYSES]  # no temporary left behind
