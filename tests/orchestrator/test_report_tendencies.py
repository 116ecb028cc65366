"""Parameter tendencies in `kdsweep report`: importance, direction and best quarter at one
rung, checked where the truth is known (the synthetic trainer's closed form and its `decoy`,
which has no effect) and against scipy."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from scipy import stats

from kdsweep.orchestrator.report import summarize
from kdsweep.orchestrator.tendencies import MIN_TRIALS, tendencies
from tests.conftest import kdsweep

#: The baseline of synthetic.toml plus one outside the space (lr 2.0 > 1.0).
POINTS = "points_to_evaluate=[{ lr = 0.1, momentum = 0.9, width = 64, decoy = 0.5 }, { lr = 2.0, momentum = 0.9, width = 64, decoy = 0.5 }]"


def _launch(run: Path, *sets: str) -> None:
    # One trial at a time: TPE then sees the same history every time, so the run is reproducible.
    args = ["--set", "num_trials=200", "--set", "settings.sleep_s=0", "--set", "backend.max_concurrent=1"]
    result = kdsweep("launch", "synthetic", "--out", str(run), "--no-live", *args, *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr


def _order(run: Path) -> list[str]:
    t = tendencies(summarize(str(run)))
    assert t is not None
    return [p.name for p in t.params]


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


@pytest.mark.slow
def test_tendencies_at_the_highest_rung_with_enough_trials_match_scipy_and_mark_fixed_points(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _launch(run, POINTS)
    rows = ds.dataset(run / "results").to_table().to_pylist()
    at = [{r["trial_id"]: r for r in rows if r["event"] == "report" and r["rung"] == k} for k in range(4)]
    rung = max(k for k in range(4) if len(at[k]) >= MIN_TRIALS)
    t = tendencies(summarize(str(run)))
    assert t is not None and (t.rung, t.epoch) == (rung, (1, 3, 9, 27)[rung])
    order = [p.name for p in t.params]
    print(f"importance among the trials at rung {rung}:", [(p.name, round(p.importance, 3)) for p in t.params])
    assert order.index("decoy") > order.index("lr") and order.index("decoy") > order.index("momentum")
    assert math.isclose(sum(p.importance for p in t.params), 1.0)

    # The baseline outside the space is marked and kept out; the one inside is counted.
    inside = {tid: r for tid, r in at[rung].items() if r["param.lr"] <= 1.0}
    assert t.trials == len(inside)
    fixed = {f.trial_id: f for f in t.fixed}
    lr_of = {r["trial_id"]: r["param.lr"] for r in rows if r["origin"] == "fixed"}
    assert {tid: f.outside for tid, f in fixed.items()} == {tid: ({"lr": 2.0} if lr > 1.0 else {}) for tid, lr in lr_of.items()}
    for tid, f in fixed.items():
        if tid in at[rung]:
            better = sum(1 for r in inside.values() if r["val_acc"] > at[rung][tid]["val_acc"])
            assert f.value == at[rung][tid]["val_acc"] and f.rank == 1 + better
        else:
            assert f.value is None and f.rank is None

    # Direction, strength and best quarter, recomputed here from the store with scipy.
    ranked = sorted(inside.values(), key=lambda r: (-r["val_acc"], r["trial_id"]))
    best = ranked[: math.ceil(len(ranked) / 4)]
    for p in t.params:
        xs = [r[f"param.{p.name}"] for r in ranked]
        rho, pv = stats.spearmanr(xs, [r["val_acc"] for r in ranked])
        assert p.rho == pytest.approx(rho) and p.p_value == pytest.approx(pv)
        assert p.direction == ("no clear direction" if pv >= 0.05 else "higher is better" if rho > 0 else "lower is better")
        assert p.best == [min(r[f"param.{p.name}"] for r in best), max(r[f"param.{p.name}"] for r in best)]

    table = kdsweep("report", str(run)).stdout
    assert f"parameter tendencies for val_acc at rung {rung} (epoch {t.epoch}, the highest rung with {MIN_TRIALS}+ trials)" in table
    (baseline,) = [tid for tid, lr in lr_of.items() if lr > 1.0]
    assert f"fixed point {baseline}: outside the space (lr=2), kept out of the statistics" in table
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)["tendencies"]
    assert doc["rung"] == rung and [p["name"] for p in doc["params"]] == order
    out = tmp_path / "tendencies.csv"
    assert kdsweep("export", str(run), "--tendencies", str(out)).returncode == 0
    records = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["parameter"] for r in records] == order and {r["rung"] for r in records} == {str(rung)}


def test_no_tendencies_without_a_rung_of_enough_trials(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live").returncode == 0
    assert "parameter tendencies: no rung has 20 trials inside the space yet (trials per rung: 12, " in kdsweep("report", str(run)).stdout
    doc = json.loads(kdsweep("report", str(run), "--format", "json").stdout)["tendencies"]
    assert doc["rung"] is None and doc["trials_per_rung"][0] == 12
