"""Exports write only where they may (issue 21): never inside a run directory — reached
directly, through a symbolic link, or deep below it — and never over an existing file
without --force; ``report --html/--plot`` likewise, except the run's own report.html. A
refused command exits 2, names the option and the path, and writes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import kdsweep


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SMALL_SWEEP

    tmp = tmp_path_factory.mktemp("outputs")
    (tmp / "small.toml").write_text(SMALL_SWEEP)
    run = tmp / "run"
    sets = ["num_trials=3", "asha.max_epochs=3"]
    result = kdsweep("launch", str(tmp / "small.toml"), "--out", str(run), "--no-live", *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    return run


def _files(run: Path) -> dict[Path, bytes | str]:
    """Every entry under ``run``: a file's bytes, a link's target."""
    return {p: str(p.readlink()) if p.is_symlink() else p.read_bytes() for p in sorted(run.rglob("*")) if p.is_symlink() or p.is_file()}


def _refused(result: subprocess.CompletedProcess[str], option: str, path: Path, why: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"command line: {option} = '{path}': {why}" in result.stderr, result.stderr


def test_export_refuses_every_file_inside_the_run(run: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(run)  # a directory that is the run under another name
    (tmp_path / "link.csv").symlink_to(run / "sweep.toml")  # a file outside that points in
    before = _files(run)
    inside = "a file outside the run directory"
    for option, path in (
        ("--tendencies", run / "sweep.toml"),
        ("--optuna", run / "results" / "x.journal"),
        ("--tendencies", run / "checkpoints" / "new.csv"),
        ("--tendencies", tmp_path / "alias" / "new.csv"),
        ("--tendencies", tmp_path / "link.csv"),
    ):
        # With --force: the run's files are refused for what they are, not for existing.
        _refused(kdsweep("export", str(run), option, str(path), "--force"), option, path, inside)
    assert _files(run) == before and (tmp_path / "link.csv").is_symlink()


def test_export_replaces_an_existing_file_only_with_force(run: Path, tmp_path: Path) -> None:
    for option, name in (("--tendencies", "t.csv"), ("--optuna", "s.journal")):
        old = tmp_path / name
        old.write_text("mine\n")
        _refused(kdsweep("export", str(run), option, str(old)), option, old, "a new file, or --force to replace it")
        assert old.read_text() == "mine\n"
        result = kdsweep("export", str(run), option, str(old), "--force")
        assert result.returncode == 0, result.stderr
        assert old.read_text() != "mine\n" and not old.is_symlink()
    assert (tmp_path / "t.csv").read_text().startswith("parameter,")


def test_report_writes_into_the_run_only_its_own_report_page(run: Path) -> None:
    before = {p: b for p, b in _files(run).items() if p.name != "report.html"}
    for option, path in (("--html", run / "results" / "r.html"), ("--html", run / "trials" / "report.html"), ("--plot", run / "x.png")):
        _refused(kdsweep("report", str(run), option, str(path)), option, path, "a file outside the run directory")
        assert not path.exists()
    result = kdsweep("report", str(run), "--html", str(run / "report.html"))
    assert result.returncode == 0, result.stderr
    assert "Leaderboard" in (run / "report.html").read_text()
    assert {p: b for p, b in _files(run).items() if p.name != "report.html"} == before
