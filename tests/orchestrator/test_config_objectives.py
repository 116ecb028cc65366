"""``[asha] objectives``: several objectives instead of metric/mode, validated like every field."""

from __future__ import annotations

import pytest

from kdsweep.orchestrator.config import ConfigError, Objective, load_sweep_text, to_toml
from tests.conftest import SMALL_SWEEP

SINGLE = 'metric = "val_acc"\nmode = "max"\n'
TWO = 'objectives = [{ metric = "val_acc", mode = "max" }, { metric = "latency_s", mode = "min" }]\n'


def sweep(asha_keys: str) -> str:
    assert SINGLE in SMALL_SWEEP
    return SMALL_SWEEP.replace(SINGLE, asha_keys)


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, "bad.toml")
    return [str(i) for i in info.value.issues]


def test_objectives_load_and_round_trip() -> None:
    cfg = load_sweep_text(sweep(TWO), "mo.toml")
    a = cfg.asha
    assert a.objectives == (Objective("val_acc", "max"), Objective("latency_s", "min"))
    assert (a.metric, a.mode, a.metrics, a.modes, a.multi_objective) == ("val_acc", "max", ("val_acc", "latency_s"), ("max", "min"), True)
    assert "metric" not in cfg.document["asha"] and "mode" not in cfg.document["asha"]
    again = load_sweep_text(to_toml(cfg.document), "frozen")
    assert again.asha == a and again.config_hash == cfg.config_hash


def test_single_objective_document_and_hash_are_unchanged() -> None:
    cfg = load_sweep_text(SMALL_SWEEP, "small.toml")
    assert cfg.asha.objectives == (Objective("val_acc", "max"),) and not cfg.asha.multi_objective
    assert "objectives" not in cfg.document["asha"]
    # One objective written as a list is the same experiment as metric/mode.
    listed = load_sweep_text(sweep('objectives = [{ metric = "val_acc", mode = "max" }]\n'), "x")
    assert listed.document == cfg.document and listed.config_hash == cfg.config_hash


@pytest.mark.parametrize(
    ("asha_keys", "expected"),
    [
        (SINGLE + TWO, "asha.metric = 'val_acc': remove it: asha.objectives is given"),
        (SINGLE + TWO, "asha.mode = 'max': remove it: asha.objectives is given"),
        ('mode = "min"\n' + TWO, "asha.mode = 'min': remove it"),
        ("", "asha.metric = (missing): required (a string), or asha.objectives"),
        ('mode = "max"\n', "asha.metric = (missing): required (a string)"),
        ("objectives = []\n", "asha.objectives = []: at least one objective"),
        ('objectives = "val_acc"\n', "asha.objectives = 'val_acc': must be a list of tables with keys: metric, mode"),
        ('objectives = [{ metric = "val_acc", mode = "max" }, { metric = "latency" , mode = "min" }]\n', "asha.objectives[1].metric = 'latency': a metric trainer 'synthetic' reports: "),
        ('objectives = [{ metric = "val_acc" }, { metric = "latency_s", mode = "min" }]\n', "asha.objectives[0].mode = (missing): required (one of 'max', 'min')"),
        ('objectives = [{ metric = "val_acc", mode = "best" }, { metric = "latency_s", mode = "min" }]\n', "asha.objectives[0].mode = 'best': must be one of 'max', 'min'"),
        ('objectives = [{ metric = "val_acc", mode = "max", weight = 2 }]\n', "asha.objectives[0].weight = 2: unknown key; valid: metric, mode"),
        ('objectives = [{ metric = "val_acc", mode = "max" }, { metric = "val_acc", mode = "min" }]\n', "asha.objectives[1].metric = 'val_acc': a metric not named by an earlier objective"),
    ],
)
def test_objective_mistakes_are_named(asha_keys: str, expected: str) -> None:
    found = issues_of(sweep(asha_keys))
    assert any(expected in line for line in found), found
