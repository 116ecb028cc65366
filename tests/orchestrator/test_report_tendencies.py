"""Parameter tendencies in `kdsweep report`: importance, direction and best quarter at rung 0
(the searcher's sample) and among ASHA's survivors, checked where the truth is known (the
synthetic trainer's closed form and its `decoy`, which has no effect) and against
statsmodels (the F-tests, Holm)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.tendencies import MIN_TRIALS, analyses, tendencies
from tests.conftest import kdsweep

#: The baseline of synthetic.toml plus one outside the space (lr 2.0 > 1.0).
POINTS = "points_to_evaluate=[{ lr = 0.1, momentum = 0.9, width = 64, decoy = 0.5 }, { lr = 2.0, momentum = 0.9, width = 64, decoy = 0.5 }]"


def _launch(run: Path, *sets: str) -> None:
    # One trial at a time: TPE then sees the same history every time, so the run is reproducible.
    args = ["--set", "num_trials=200", "--set", "settings.sleep_s=0", "--set", "backend.max_concurrent=1"]
    result = kdsweep("launch", "synthetic", "--out", str(run), "--no-live", *args, *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_importance_ranks_lr_first_and_the_decoy_below_lr_and_momentum_at_one_budget(tmp_path: Path) -> None:
    """Every trial trained for 9 epochs (one rung): the population covers the space as the
    search sampled it, and the closed form makes lr dominant, decoy null."""
    run = tmp_path / "run"
    _launch(run, "asha.min_epochs=9", "asha.max_epochs=9")
    t = tendencies(summarize(str(run)))
    assert t is not None and (t.rung, t.epoch, t.trials) == (0, 9, 200)
    order = [p.name for p in t.params]
    print("importance at one 9-epoch budget:", [(p.name, round(p.importance, 3)) for p in t.params])
    assert order[0] == "lr" and order.index("decoy") > order.index("momentum")
    assert t.params[0].importance > 0.5


def _design(xs_by_name: dict[str, list], name: str) -> tuple[np.ndarray, np.ndarray]:
    """The test's regression written out again (tendencies.py's module docstring): the other
    (here all ordered) parameters as a cubic in their scaled ranks with the products of every
    two, or, when those columns would leave fewer than three quarters of the trials as degrees
    of freedom, the cubics alone, or the ranks alone; and this parameter's rank and its
    square."""
    n = len(xs_by_name[name])

    def u(xs: list) -> np.ndarray:
        return (stats.rankdata([float(x) for x in xs]) - 1) / (n - 1) - 0.5

    ranks = [u(xs) for other, xs in xs_by_name.items() if other != name]
    cubic = [np.ones(n)] + [r**k for r in ranks for k in (1, 2, 3)]
    pairs = [a * b for i, a in enumerate(ranks) for b in ranks[i + 1 :]]
    linear = [np.ones(n)] + ranks
    others = next((t for t in (cubic + pairs, cubic) if len(t) <= n // 4), linear)
    mine = u(xs_by_name[name])
    return np.column_stack(others), np.column_stack([mine, mine**2])


@pytest.mark.slow
def test_tendencies_of_the_searchers_sample_and_of_the_survivors_match_statsmodels(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _launch(run, POINTS)
    rows = ds.dataset(run / "results").to_table().to_pylist()
    at = [{r["trial_id"]: r for r in rows if r["event"] == "report" and r["rung"] == k} for k in range(4)]
    summary = summarize(str(run))
    t, high = analyses(summary)
    assert t is not None and (t.rung, t.epoch, t.selected) == (0, 1, False)
    rung = max(k for k in range(1, 4) if len(at[k]) >= MIN_TRIALS)
    assert high is not None and (high.rung, high.epoch, high.selected) == (rung, (1, 3, 9, 27)[rung], True)
    raw: dict[tuple[int, str], float] = {}
    for found, k in ((t, 0), (high, rung)):
        order = [p.name for p in found.params]
        print(f"rung {k}:", [(p.name, round(p.importance, 3), p.direction, p.p_adjusted) for p in found.params])
        assert math.isclose(sum(p.importance for p in found.params), 1.0)
        # The baseline outside the space is marked and kept out; the one inside is counted.
        inside = {tid: r for tid, r in at[k].items() if r["param.lr"] <= 1.0}
        assert found.trials == len(inside)
        fixed = {f.trial_id: f for f in found.fixed}
        lr_of = {r["trial_id"]: r["param.lr"] for r in rows if r["origin"] == "fixed"}
        assert {tid: f.outside for tid, f in fixed.items()} == {tid: ({"lr": 2.0} if lr > 1.0 else {}) for tid, lr in lr_of.items()}
        for tid, f in fixed.items():
            if tid in at[k]:
                better = sum(1 for r in inside.values() if r["val_acc"] > at[k][tid]["val_acc"])
                assert f.value == at[k][tid]["val_acc"] and f.rank == 1 + better
            else:
                assert f.value is None and f.rank is None

        # The F-test of each parameter given the others, by statsmodels on the design written
        # out above; Holm by statsmodels; the best quarter from the store.
        ranked = sorted(inside.values(), key=lambda r: (-r["val_acc"], r["trial_id"]))
        best = ranked[: math.ceil(len(ranked) / 4)]
        xs_by_name = {p.name: [r[f"param.{p.name}"] for r in ranked] for p in found.params}
        y = (stats.rankdata([r["val_acc"] for r in ranked]) - 1) / (len(ranked) - 1)
        expected = {}
        for p in found.params:
            others, mine = _design(xs_by_name, p.name)
            reduced, full = sm.OLS(y, others).fit(), sm.OLS(y, np.column_stack([others, mine])).fit()
            f, pv, _ = full.compare_f_test(reduced)
            expected[p.name] = pv
            assert p.p_value == pytest.approx(pv, rel=1e-6, abs=1e-12)
            assert p.best == [min(r[f"param.{p.name}"] for r in best), max(r[f"param.{p.name}"] for r in best)]
        for p in found.params:
            raw[k, p.name] = expected[p.name]
        assert order.index("decoy") > order.index("lr")
    # Holm over every test of both analyses (the report states directions in both tables).
    holm = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1]))
    for found, k in ((t, 0), (high, rung)):
        for p in found.params:
            assert p.p_adjusted == pytest.approx(holm[k, p.name], rel=1e-6, abs=1e-12)
            if holm[k, p.name] >= 0.05:
                assert p.direction == "no clear direction"
            elif p.direction in ("higher is better", "lower is better"):
                assert p.p_slope < 0.05 and (p.direction == "higher is better") == (p.rho > 0)
            elif p.direction == "best inside the range":
                assert p.curvature_peak is not None and p.best is not None

    table = kdsweep("report", str(run)).stdout
    flat = " ".join(table.split())
    assert "parameter tendencies for val_acc at rung 0 (epoch 1), every trial that reached it: the sample the searcher drew" in flat
    assert f"parameter tendencies for val_acc among ASHA's survivors at rung {rung}" in flat and "a selected sample" in flat
    (baseline,) = [tid for tid, lr in lr_of.items() if lr > 1.0]
    assert f"fixed point {baseline}: outside the space (lr=2), kept out of the statistics" in table
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    assert doc["tendencies"]["rung"] == 0 and [p["name"] for p in doc["tendencies"]["params"]] == [p.name for p in t.params]
    assert doc["tendencies_survivors"]["rung"] == rung and doc["tendencies_survivors"]["selected"] is True
    out = tmp_path / "tendencies.csv"
    assert kdsweep("export", str(run), "--tendencies", str(out)).returncode == 0
    records = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["parameter"] for r in records] == [p.name for p in t.params] + [p.name for p in high.params]
    assert [r["rung"] for r in records] == ["0"] * len(t.params) + [str(rung)] * len(high.params)


def test_no_tendencies_without_enough_trials_at_rung_0(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live").returncode == 0
    assert "parameter tendencies: fewer than 20 trials inside the space reached rung 0 (trials per rung: 12, " in kdsweep("report", str(run)).stdout
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)
    assert doc["tendencies"]["rung"] is None and doc["tendencies"]["trials_per_rung"][0] == 12
    assert doc["tendencies_survivors"]["rung"] is None
