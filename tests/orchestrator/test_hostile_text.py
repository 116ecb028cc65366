"""Text is data (issue 21): a choice value and a trainer's error made of rich markup, control
characters and HTML are shown as written, and nothing in them acts — in the table, the live
view, the warning lines and the HTML page, which a headless Chromium draws without an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from kdsweep.orchestrator import analyses, cli, live
from kdsweep.orchestrator.driver import Snapshot
from kdsweep.orchestrator.html_report import _json
from kdsweep.orchestrator.report import render_table, summarize
from kdsweep.orchestrator.safe_text import visible
from tests.conftest import kdsweep
from tests.orchestrator.test_html_report import Browser, browser  # noqa: F401 - the fixture

#: Closes a tag never opened (rich raised MarkupError), links, restyles, retitles the terminal
#: (OSC 0 ... BEL), and opens an HTML comment and a script inside the page's figure script.
HOSTILE = "[/x][link=http://evil]a[/link][bold red]b\x1b]0;pwned\x07<!--<script>"
#: How it is shown: as written, its control characters as Python escapes.
SHOWN = "[/x][link=http://evil]a[/link][bold red]b\\x1b]0;pwned\\x07<!--<script>"
#: The synthetic trainer's error for a momentum it cannot read: markup again, and the value's repr.
ERROR = f"ValueError: could not convert string to float: {HOSTILE!r}"


def _sweep(value: str) -> str:
    """A random sweep whose ``decoy`` (ignored by the trainer) may be ``value`` and whose
    ``momentum`` may be too, which fails the trial with :data:`ERROR`; the fixed point has
    both, so one trial fails for sure. 30 trials: more than the 20 at rung 0 that the
    parameter tendencies (and their figures, which hold the values) need."""
    q = json.dumps(value)  # a JSON string is a TOML basic string (\\u escapes included)
    return f"""
name = "hostile"
trainer = "synthetic"
searcher = "random"
num_trials = 30
seed = 3
points_to_evaluate = [{{ lr = 0.1, decoy = {q}, momentum = {q} }}]

[space]
lr = {{ type = "loguniform", low = 1e-3, high = 1.0 }}
decoy = {{ type = "choice", values = ["plain", {q}] }}
momentum = {{ type = "choice", values = ["0.9", "0.8", "0.85", "0.95", "0.7", "0.75", "0.6", {q}] }}

[asha]
metric = "val_acc"
mode = "max"
min_epochs = 1
max_epochs = 3
reduction_factor = 3

[backend]
kind = "local"
max_concurrent = 2
max_retries = 0

[settings]
sleep_s = 0.0
"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The sweep launched with ``--html`` through the real CLI; the run and launch's stdout."""
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "hostile.toml").write_text(_sweep(HOSTILE))
    run = tmp / "run"
    result = kdsweep("launch", str(tmp / "hostile.toml"), "--out", str(run), "--no-live", "--html")
    assert result.returncode == 0, result.stderr
    return run, result.stdout


def test_visible_escapes_every_control_character_and_script_json_every_angle_bracket() -> None:
    assert visible(HOSTILE) == SHOWN
    assert visible("tab\tnew\nline\x9b1m\u202eevil") == "tab\\tnew\\nline\\x9b1m\\u202eevil"
    assert visible("a\nb\x1b", lines=True) == "a\nb\\x1b"
    assert visible("ünïcode ± [b] <i> 0.05") == "ünïcode ± [b] <i> 0.05"
    value = {"v": "</script><!--<script>&amp;\u2028\u2029"}
    embedded = _json(value)
    assert not set("<>&\u2028\u2029") & set(embedded) and json.loads(embedded) == value


def test_launch_and_report_show_the_values_and_errors_as_written(hostile_run: tuple[Path, str]) -> None:
    run, launched = hostile_run
    reported = kdsweep("report", str(run))
    assert reported.returncode == 0, reported.stderr
    for out in (launched, reported.stdout):
        assert "\x1b" not in out and "\x07" not in out, "a control character reached the terminal"
        # The failed trials' error, markup and all, on its line (the repr escapes it already).
        assert f"failed t0000 after 1 attempts: {ERROR}" in out
        assert "[/link][bold" in out and "headline (search stage)" in out
    # Every cell whole, on a terminal wide enough not to fold the decoy column.
    summary = summarize(str(run))
    assert analyses.of(summary).tendencies is not None, "too few trials reached rung 0 for the tendencies"
    console = Console(record=True, width=400, color_system="truecolor", force_terminal=True)
    render_table(summary, console, top=len(summary.trials))
    styled = console.export_text(styles=True, clear=False)
    text = console.export_text()
    assert text.count(SHOWN) >= 2 and "\x07" not in styled
    # Styles are there (the terminal is forced), but no OSC sequence: neither the title nor
    # a hyperlink made of [link=...]; and "b" is not restyled bold red.
    assert "\x1b[" in styled and "\x1b]" not in styled and "\x1b[1;31m" not in styled
    status = kdsweep("status", str(run))
    assert status.returncode == 0 and "\x1b" not in status.stdout


def test_the_live_view_and_warnings_show_the_values_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = Snapshot({"completed": 1}, 2, 1.0, "t0000", 0.5, {"decoy": HOSTILE}, "val_acc")
    console = Console(record=True, width=300, force_terminal=True)
    console.print(live.render(snapshot))
    assert f"decoy={SHOWN}" in console.export_text(clear=False) and "\x1b]" not in console.export_text(styles=True)
    cli._show_warning(UserWarning(f"store: {HOSTILE}"), UserWarning, "store.py", 1)
    err = capsys.readouterr().err
    assert f"warning: store: {SHOWN}" in err and "\x1b" not in err


def test_the_html_report_draws_its_figures_and_shows_the_values_as_text(hostile_run: tuple[Path, str], tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    run, _ = hostile_run
    page = tmp_path / "report.html"
    result = kdsweep("report", str(run), "--html", str(page))
    assert result.returncode == 0, result.stderr
    source = page.read_text()
    # The page holds only its own two scripts (plotly.js, the figures) and no comment.
    assert source.count("<script") == 2 and "<!--" not in source
    assert (run / "report.html").read_text().count("<script") == 2  # launch --html's page
    browser.load(page.as_uri())
    assert browser.problems() == []

    def evaluate(expression: str) -> object:
        return browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)["result"]["value"]

    figures = evaluate("Array.from(document.querySelectorAll('div.fig')).map(d => d.querySelector('.main-svg') !== null)")
    assert isinstance(figures, list) and len(figures) >= 4 and all(figures), "a figure was not drawn"
    # In the tables, and in the figures as plotly draws them (an axis's categories).
    assert SHOWN in browser.text()
    drawn = evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join('\\n')")
    assert isinstance(drawn, str) and SHOWN in drawn
    assert evaluate("document.scripts.length") == 2 and evaluate("document.querySelectorAll('svg a').length") == 0
