"""The final-stage comparison with the fixed points (Welch, checked against scipy) and the HTML
report, loaded in a real headless Chromium over the DevTools protocol: no console error, no
network request, the leaderboard in its text."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from scipy import stats

from kdsweep.orchestrator.config import load_sweep
from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.significance import NOT_DISTINGUISHABLE, final_comparisons
from kdsweep.orchestrator.summary import FinalResult, RunSummary, TrialSummary
from tests.conftest import kdsweep

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic sweep launched with ``--html``, its two best configurations and the
    fixed point t0000 retrained three times each."""
    from tests.conftest import SMALL_SWEEP

    tmp = tmp_path_factory.mktemp("html")
    (tmp / "small.toml").write_text(SMALL_SWEEP)
    run = tmp / "run"
    result = kdsweep("launch", str(tmp / "small.toml"), "--out", str(run), "--no-live", "--html")
    assert result.returncode == 0, result.stderr
    assert f"html report: {run / 'report.html'}" in result.stdout
    result = kdsweep("retrain", str(run), "--top", "2", "--trial", "t0000", "--repeats", "3", "--epochs", "9", "--no-live")
    assert result.returncode == 0, result.stderr
    return run


def test_comparisons_with_the_fixed_point_match_scipy(retrained: Path) -> None:
    rows = [r for r in ds.dataset(retrained / "results").to_table().to_pylist() if r["stage"] == "final" and r["event"] == "completed"]
    by_source: dict[str, list[float]] = {}
    for r in sorted(rows, key=lambda r: r["trial_id"]):
        by_source.setdefault(r["trial_id"].split(".r")[0], []).append(r["test_acc"])
    origin = {r["trial_id"].split(".r")[0]: r["origin"] for r in rows}
    doc = json.loads(kdsweep("report", str(retrained), "--format", "json").stdout)
    leader = doc["leaderboard"][0]["trial_id"]
    expected = {(s, "t0000") for s in by_source if s != "t0000" and (origin[s] != "fixed" or s == leader)}
    got = {(c["config"], c["fixed"]): c for c in doc["final_comparisons"]}
    assert set(got) == expected and expected
    for (config, fixed), c in got.items():
        x, y = by_source[config], by_source[fixed]
        res = stats.ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(0.95)
        assert c["metric"] == "test_acc" and (c["n_config"], c["n_fixed"]) == (3, 3)
        assert c["difference"] == pytest.approx(sum(x) / 3 - sum(y) / 3, abs=1e-12)
        assert (c["low"], c["high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
        assert (c["t"], c["df"], c["p_value"]) == pytest.approx((res.statistic, res.df, res.pvalue), rel=1e-9)
        assert c["leader"] == (config == leader)
        significant = "better" if c["difference"] > 0 else "worse"
        assert c["verdict"] == (significant if res.pvalue < 0.05 else NOT_DISTINGUISHABLE)
    table = kdsweep("report", str(retrained)).stdout
    assert "retrained configurations vs fixed points on test_acc" in table
    assert all(c["verdict"] in table for c in got.values())


def _summary(sweep_file: Path, mode: str, finals: dict[str, tuple[str, list[float]]]) -> RunSummary:
    """A summary by hand: the given final stage (source -> (origin, test_acc per run)); the
    first source leads the search leaderboard."""
    cfg = load_sweep(sweep_file, [f'asha.mode="{mode}"'])
    trials = [TrialSummary(s, origin, "completed", 9, 0.5, {}, 1, None) for s, (origin, _) in finals.items()]
    final = [
        FinalResult(s, origin, {}, 9, len(v), len(v), {"test_acc": (sum(v) / len(v), math.nan, len(v))}, {"test_acc": v})
        for s, (origin, v) in finals.items()
    ]  # fmt: skip
    return RunSummary(cfg, trials, [], None, [], final=final)


@pytest.mark.parametrize("mode, verdicts", [("max", ("better", "worse")), ("min", ("worse", "better"))])
def test_verdicts_follow_the_mode_and_need_two_runs_a_side(sweep_file: Path, mode: str, verdicts: tuple[str, str]) -> None:
    summary = _summary(sweep_file, mode, {
        "t0003": ("tpe", [0.90, 0.91, 0.92]),
        "t0004": ("tpe", [0.50, 0.52, 0.51]),
        "t0005": ("tpe", [0.70, 0.60, 0.80]),
        "t0006": ("tpe", [0.99]),
        "t0000": ("fixed", [0.70, 0.71, 0.69, 0.70]),
        "t0001": ("fixed", [0.71]),
    })  # fmt: skip
    got = {(c.config, c.fixed): c for c in final_comparisons(summary)}
    # Every configuration against every fixed point; fixed points are not compared among
    # themselves (t0000 is not the leader here); the leader's rows come first.
    assert set(got) == {(c, f) for c in ("t0003", "t0004", "t0005", "t0006") for f in ("t0000", "t0001")}
    assert [c.config for c in final_comparisons(summary)][:2] == ["t0003", "t0003"] and got["t0003", "t0000"].leader
    assert got["t0003", "t0000"].verdict == verdicts[0]
    assert got["t0004", "t0000"].verdict == verdicts[1]
    assert got["t0005", "t0000"].verdict == NOT_DISTINGUISHABLE
    # One run on either side: no variance to test against; the difference is still shown.
    for pair in (("t0006", "t0000"), ("t0003", "t0001")):
        assert got[pair].verdict == NOT_DISTINGUISHABLE and math.isnan(got[pair].p_value) and math.isnan(got[pair].low)
    assert got["t0006", "t0000"].difference == pytest.approx(0.99 - 0.70)


def test_a_fixed_leader_is_compared_with_the_other_fixed_points(sweep_file: Path) -> None:
    summary = _summary(sweep_file, "max", {"t0000": ("fixed", [0.9, 0.91, 0.92]), "t0001": ("fixed", [0.5, 0.51, 0.52]), "t0002": ("tpe", [0.6, 0.61, 0.6])})
    assert {(c.config, c.fixed, c.leader) for c in final_comparisons(summary)} == {("t0000", "t0001", True), ("t0002", "t0000", False), ("t0002", "t0001", False)}


def test_report_html_is_one_self_contained_page_and_bad_paths_are_refused(retrained: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    result = kdsweep("report", str(retrained), "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    # plotly.js once, nothing loaded from elsewhere.
    assert text.count("<script") == 2 and text.count("plotly.js v") == 1
    assert "src=\"http" not in text and "<link" not in text
    for section in ("Leaderboard", "Learning curves", "Rung survival", "Parameter tendencies", "Final evaluation", "95 % interval"):
        assert section in text
    # The page written by `launch --html` is the same report (before the final stage).
    assert "Learning curves" in (retrained / "report.html").read_text()
    for bad, why in ((tmp_path / "missing" / "r.html", "existing directory"), (tmp_path / "r.txt", "ending in .html")):
        result = kdsweep("report", str(retrained), "--html", str(bad))
        assert result.returncode == 2 and str(bad) in result.stderr and why in result.stderr, result.stderr
        assert not bad.exists()


def test_the_launch_refresher_rewrites_at_most_once_a_period_and_never_raises(retrained: Path, tmp_path: Path) -> None:
    from kdsweep.orchestrator.html_report import HtmlRefresher

    page = tmp_path / "live.html"
    refresh = HtmlRefresher(retrained, page, period_s=3600)
    refresh(None)
    assert "Leaderboard" in page.read_text()
    page.unlink()
    refresh(None)
    assert not page.exists()
    broken = HtmlRefresher(tmp_path / "not-a-run", tmp_path / "x.html", period_s=0)
    with pytest.warns(UserWarning, match="x.html not updated"):
        broken(None)


def test_reading_a_run_for_html_never_imports_torch(retrained: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from kdsweep.orchestrator.html_report import write_html_report; "
        f"write_html_report({str(retrained)!r}, Path({str(tmp_path / 'r.html')!r})); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def trainer_pages(tmp_path: Path) -> tuple[Path, Path]:
    """HTML reports of hand-built summaries of a student-topology and a graph-gates sweep
    (the trainer tests' report fixtures)."""
    from kdsweep.orchestrator.html_report import write_html
    from tests.trainers.test_student_topology import ROOT, report_rows

    cfg = load_sweep(ROOT / "search_spaces/student_topology_vgg.toml", ["data.dataset=digits"])
    topology = tmp_path / "topology.html"
    write_html(RunSummary(cfg, trials=[], rungs=[], driver=None, skipped=[], rows=report_rows(cfg)), topology)
    cfg = load_sweep("graph_gates", ["data.dataset=digits"])
    through, kd, _ = (dict(p) for p in cfg.points_to_evaluate)
    ranked = [("t0003", "random", {**through, "gate_0_1": "linear"}, 0.95), ("t0001", "fixed", kd, 0.92), ("t0000", "fixed", through, 0.90)]
    trials = [TrialSummary(tid, origin, "completed", 8, value, params, 1, None) for tid, origin, params, value in ranked]
    rows = [{"trial_id": tid, "event": "report", "epoch": 8, "val_acc": v, "node1_val_acc": v} for tid, _, _, v in ranked]
    graphs = tmp_path / "graphs.html"
    write_html(RunSummary(cfg, trials, [], None, [], rows=rows), graphs)
    return topology, graphs


def test_the_trainer_section_is_embedded_with_its_figure(tmp_path: Path) -> None:
    topology, graphs = (p.read_text() for p in trainer_pages(tmp_path))
    # Student topology: its text section and its matplotlib figure (front, limit curve) as a PNG.
    assert "Pareto-optimal students" in topology and "limit curve" in topology
    assert topology.count('<img class="trainer" alt="student_topology figure" src="data:image/png;base64,') == 1
    # Graph gates: no figure of its own; the winning graphs drawn as the terminal section does
    # (compared with runs of spaces collapsed: the drawing aligns its columns).
    graphs = " ".join(graphs.split())
    assert "#1 t0003 (random)" in graphs and "0 label -&gt; 1 resnet32 linear" in graphs and '<img class="trainer"' not in graphs


class Browser:
    """Headless Chromium driven over the DevTools protocol (a page target, flat session)."""

    def __init__(self, profile: Path) -> None:
        import websocket  # websocket-client, of the test extra

        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--remote-debugging-port=0", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) == 2):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"chromium did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        """Call ``method`` (on the page's session with ``session``) and return its result;
        events that arrive meanwhile are kept in ``events``."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found is not None:
                return found
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def load(self, url: str) -> float:
        """Open ``url`` with console, log and network events on; seconds until its load event."""
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session=True)
        start = time.perf_counter()
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")
        return time.perf_counter() - start

    def text(self) -> str:
        return str(self.send("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True}, session=True)["result"]["value"])

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and requests for anything
        but the page itself and inline data."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(f"console.{p['type']}: {p['args']}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']}")
            elif method == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file://", "data:")):
                out.append(f"request: {p['request']['url']}")
        return out

    def close(self) -> None:
        """Shut the browser down gracefully (its helper processes with it), else kill it."""
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - the connection may drop before the reply
            pass
        self.ws.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def test_html_report_loads_in_headless_chromium_without_errors_or_network(retrained: Path, tmp_path: Path, browser: Browser) -> None:
    page = tmp_path / "report.html"
    assert kdsweep("report", str(retrained), "--html", str(page)).returncode == 0
    browser.load(page.as_uri())
    text = browser.text()
    assert browser.problems() == []
    first = summarize(str(retrained)).trials[0].trial_id
    assert first in text and "Leaderboard" in text
    # The figures were drawn (plotly's SVG roots), not left as empty divs.
    drawn = browser.send("Runtime.evaluate", {"expression": "document.querySelectorAll('.main-svg').length", "returnByValue": True}, session=True)
    assert drawn["result"]["value"] >= 3


def test_a_trainer_page_with_its_png_loads_without_errors(tmp_path: Path, browser: Browser) -> None:
    topology, _ = trainer_pages(tmp_path)
    browser.load(topology.as_uri())
    width = browser.send("Runtime.evaluate", {"expression": "document.querySelector('img.trainer').naturalWidth", "returnByValue": True}, session=True)
    assert browser.problems() == [] and width["result"]["value"] > 500
