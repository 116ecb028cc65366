"""Sweep-file validation: every kind of mistake is named (source, field, value, what is
allowed), all at once, with exit code 2 and no run directory created."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kdsweep.orchestrator.config import ConfigError, load_sweep, load_sweep_text, to_toml
from kdsweep.orchestrator.rundir import RunDir
from tests.conftest import SMALL_SWEEP, kdsweep


def issues_of(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, "bad.toml", overrides)
    return [str(i) for i in info.value.issues]


def replace(old: str, new: str) -> str:
    assert old in SMALL_SWEEP, old
    return SMALL_SWEEP.replace(old, new)


def test_valid_file_round_trips_through_frozen_toml() -> None:
    cfg = load_sweep_text(SMALL_SWEEP, "small.toml")
    assert cfg.num_trials == 12 and cfg.asha.max_epochs == 9 and cfg.backend.max_retries == 1
    again = load_sweep_text(to_toml(cfg.document), "frozen")
    assert again.document == cfg.document
    assert again.config_hash == cfg.config_hash


def test_hash_ignores_backend_and_budget_but_not_the_experiment() -> None:
    base = load_sweep_text(SMALL_SWEEP, "x").config_hash
    assert load_sweep_text(SMALL_SWEEP, "x", ("backend.max_concurrent=7", "num_trials=99")).config_hash == base
    assert load_sweep_text(SMALL_SWEEP, "x", ("asha.max_epochs=27",)).config_hash != base


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1\n" + SMALL_SWEEP, "bad.toml: bogus = 1: unknown key; valid top-level keys: name"),
        (replace('trainer = "synthetic"', 'trainer = "magic"'), "trainer = 'magic': one of "),
        (replace("num_trials = 12", 'num_trials = "ten"'), "num_trials = 'ten': must be int"),
        (replace("num_trials = 12", "num_trials = 0"), "num_trials = 0: must be an integer >= 1"),
        (replace("num_trials = 12\n", ""), "num_trials = (missing): required (int)"),
        (replace('searcher = "tpe"', 'searcher = "grid"'), "searcher = 'grid': one of tpe, random, gp, ga"),
        (replace('mode = "max"', 'mode = "maximize"'), "asha.mode = 'maximize': must be one of 'max', 'min'"),
        (replace("reduction_factor = 3", "reduction_factor = 1"), "asha.reduction_factor = 1: an integer >= 2"),
        (replace("max_epochs = 9", "max_epochs = 0"), "asha.max_epochs = 0: an integer from asha.min_epochs (1) to 1000000"),
        (replace("max_epochs = 9", "max_epochs = 1000001"), "asha.max_epochs = 1000001: an integer from asha.min_epochs (1) to 1000000"),
        (replace('metric = "val_acc"', 'metric = "accuracy"'), "asha.metric = 'accuracy': a metric trainer 'synthetic' reports: train_loss, val_acc, val_loss"),
        (replace('metric = "val_acc"\n', ""), "asha.metric = (missing): required (a string)"),
        (replace("max_concurrent = 2", "max_concurrent = -1"), "backend.max_concurrent = -1: an integer from 1 to 10000"),
        (replace("max_concurrent = 2", "max_concurrent = 10001"), "backend.max_concurrent = 10001: an integer from 1 to 10000"),
        (replace('kind = "local"', 'kind = "k8s"'), "backend.kind = 'k8s': must be one of 'local', 'ray', 'slurm'"),
        (replace("max_retries = 1", "max_retry = 1"), "backend.max_retry = 1: unknown key; valid: kind, device, max_concurrent, max_retries"),
        (replace("sleep_s = 0.0", "sleep = 0.0"), "settings.sleep = 0.0: unknown key; valid: sleep_s, epoch_s, epoch_s_spread, noise_std, crash_at_epoch"),
        (replace("sleep_s = 0.0", 'sleep_s = "fast"'), "settings.sleep_s = 'fast': must be a finite number"),
        (replace("sleep_s = 0.0", "sleep_s = inf"), "settings.sleep_s = inf: must be a finite number"),
        (replace("sleep_s = 0.0", "sleep_s = nan"), "settings.sleep_s = nan: must be a finite number"),
        (replace("sleep_s = 0.0", "sleep_s = 1" + "0" * 400), "settings.sleep_s = 1" + "0" * 400 + ": an integer from -2**63 to 2**63 - 1 (TOML's integers are 64-bit"),
        (replace("sleep_s = 0.0", "sleep_s = -1"), "settings.sleep_s = -1.0: a number >= 0"),
        (SMALL_SWEEP + "\n[data]\ndataset = 'digits'\n", "data = {'dataset': 'digits'}: trainer 'synthetic' reads no dataset"),
        (SMALL_SWEEP + "\n[objective]\nr_t = 10\n", "objective = {'r_t': 10}: trainer 'synthetic' has no objective; remove the [objective] table"),
        (replace("[space]", "[space]\nnodes = 3"), "space.nodes = 3: a table with 'type' and its bounds or values"),
        (replace('type = "loguniform", low = 1e-4', 'type = "lognormal", low = 1e-4'), "space.lr.type = 'lognormal': one of uniform, loguniform, quniform, int, choice"),
        (replace("low = 0.0, high = 0.99", "low = 0.99, high = 0.5"), "space.momentum.high = 0.5: greater than low (0.99)"),
        (replace("low = 1e-4, high = 1.0", "low = 0.0, high = 1.0"), "space.lr.low = 0.0: > 0 for type 'loguniform'"),
        (replace("low = 0.0, high = 0.99", "low = 0.0, high = 1" + "0" * 400), "space.momentum.high = 1" + "0" * 400 + ": an integer from -2**63 to 2**63 - 1 (TOML's integers are 64-bit"),
        (replace("values = [16, 32, 64, 128]", "values = []"), "space.width.values = []: a non-empty list"),
        (replace("values = [16, 32, 64, 128]", 'values = [16, "wide"]'), "space.width.values = [16, 'wide']: scalars of one type"),
        (replace("low = 0.0, high = 0.99", "low = 0.0"), "space.momentum.high = (missing): required for type 'uniform'"),
        (replace("low = 0.0, high = 0.99", "low = 0.0, high = 0.99, step = 2"), "space.momentum.step = 2: unknown key for type 'uniform'"),
        (replace("width = 64 }]", "width = 48 }]"), "points_to_evaluate[0].width = 48: one of [16, 32, 64, 128]"),
        (replace("width = 64 }]", "width = 64, depth = 3 }]"), "points_to_evaluate[0].depth = 3: not a searched parameter"),
        (replace("momentum = 0.9, width = 64 }]", "width = 64 }]"), "points_to_evaluate[0].momentum = (missing): every searched parameter needs a value"),
        ("name = [", "bad.toml: (syntax) = (missing): not valid TOML"),
    ],
)
def test_each_kind_of_mistake_is_named(text: str, expected: str) -> None:
    found = issues_of(text)
    assert any(expected in line for line in found), found


def test_all_mistakes_reported_at_once() -> None:
    text = replace("num_trials = 12", "num_trials = -3").replace("reduction_factor = 3", "reduction_factor = 1")
    text = text.replace('searcher = "tpe"', 'searcher = "grid"')
    found = issues_of(text)
    assert len(found) == 3, found


def test_set_overrides_are_typed_validated_and_attributed() -> None:
    cfg = load_sweep_text(SMALL_SWEEP, "x", ("asha.max_epochs=27", "settings.noise_std=0.05", "name=renamed"))
    assert cfg.asha.max_epochs == 27 and cfg.settings.noise_std == 0.05 and cfg.name == "renamed"
    found = issues_of(SMALL_SWEEP, ("asha.reduction_factor=1",))
    assert found == ["--set: asha.reduction_factor = 1: an integer >= 2"]
    found = issues_of(SMALL_SWEEP, ("num_trials.deep=1",))
    assert "num_trials" in found[0] and "is not a table" in found[0]


def test_embedded_demo_and_names_resolve() -> None:
    assert load_sweep(None).trainer
    assert load_sweep("synthetic").name == "synthetic"


def test_cli_bad_config_exits_2_names_everything_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(replace("reduction_factor = 3", "reduction_factor = 1").replace("num_trials = 12", "num_trials = 0"))
    out = tmp_path / "run"
    result = kdsweep("launch", str(bad), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert f"{bad}: asha.reduction_factor = 1: an integer >= 2" in result.stderr
    assert f"{bad}: num_trials = 0: must be an integer >= 1" in result.stderr
    assert not out.exists()


def test_cli_missing_file_and_bad_set(tmp_path: Path) -> None:
    result = kdsweep("launch", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "nope.toml" in result.stderr and "cannot be read" in result.stderr
    result = kdsweep("launch", "synthetic", "--set", "asha.variant=sometimes", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "--set: asha.variant = 'sometimes': must be one of 'stop', 'promote'" in result.stderr
    assert not (tmp_path / "run").exists()


def test_cli_report_on_non_run_directory(tmp_path: Path) -> None:
    result = kdsweep("report", str(tmp_path))
    assert result.returncode == 2 and "not a run directory" in result.stderr


# -- searcher options -------------------------------------------------------------------------


def test_searcher_options_default_and_enter_the_document_only_for_their_searcher() -> None:
    cfg = load_sweep_text(SMALL_SWEEP, "x")
    assert (cfg.searcher, cfg.searcher_options) == ("tpe", {"n_startup_trials": 4})
    ga = load_sweep_text(replace('searcher = "tpe"', 'searcher = "ga"').replace("n_startup_trials = 4\n", ""), "x")
    assert ga.searcher_options == {"population_size": 20}
    assert ga.document["population_size"] == 20 and "n_startup_trials" not in ga.document
    assert load_sweep_text(to_toml(ga.document), "frozen").config_hash == ga.config_hash


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (replace("n_startup_trials = 4", "n_startup_trials = 4\npopulation_size = 20"), (),
         "bad.toml: population_size = 20: not an option of searcher 'tpe'; its options: n_startup_trials"),
        (replace('searcher = "tpe"', 'searcher = "random"'), (),
         "bad.toml: n_startup_trials = 4: not an option of searcher 'random'; its options: none"),
        (SMALL_SWEEP, ('searcher="ga"', "n_startup_trials=8"),
         "--set: n_startup_trials = 8: not an option of searcher 'ga'; its options: population_size"),
        (SMALL_SWEEP, ('searcher="ga"', "population_size=1"),
         "--set: population_size = 1: an integer >= 2 (individuals per generation (NSGA-II needs 2 parents))"),
        (replace("n_startup_trials = 4", "n_startup_trials = 0"), (),
         "bad.toml: n_startup_trials = 0: an integer >= 1"),
    ],
)  # fmt: skip
def test_an_option_the_searcher_does_not_take_is_named(text: str, overrides: tuple[str, ...], expected: str) -> None:
    found = issues_of(text, overrides)
    assert any(line.startswith(expected) for line in found), found


def test_set_searcher_leaves_the_files_options_of_the_old_searcher_behind() -> None:
    """The file's n_startup_trials configures its TPE; --set searcher=ga replaces both, while
    gp, which takes n_startup_trials too, keeps it."""
    ga = load_sweep_text(SMALL_SWEEP, "x", ('searcher="ga"', "population_size=6"))
    assert ga.searcher_options == {"population_size": 6}
    gp = load_sweep_text(SMALL_SWEEP, "x", ('searcher="gp"',))
    assert gp.searcher_options == {"n_startup_trials": 4}


def test_wrong_option_exits_2_on_the_command_line(tmp_path: Path) -> None:
    result = kdsweep("launch", "synthetic", "--set", "population_size=20", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "--set: population_size = 20: not an option of searcher 'tpe'; its options: n_startup_trials" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_frozen_with_an_option_its_searcher_ignored_still_resumes(tmp_path: Path) -> None:
    """Before options were checked per searcher, every frozen file held n_startup_trials, a
    random search's too; such a run resumes, and an edit of it is still caught."""
    text = replace('searcher = "tpe"', 'searcher = "random"').replace("n_startup_trials = 4\n", "")
    cfg = load_sweep_text(text, "x")
    old = dataclasses.replace(cfg, document={**cfg.document, "n_startup_trials": 10})
    run = RunDir.create(tmp_path / "run", old)
    assert "n_startup_trials = 10" in run.frozen.read_text()
    resumed = run.load_config()
    assert (resumed.searcher, resumed.searcher_options) == ("random", {})
    run.frozen.write_text(run.frozen.read_text().replace("n_startup_trials = 10", "n_startup_trials = 11"))
    with pytest.raises(ConfigError, match="unchanged since the run began"):
        run.load_config()
