"""Values at and past what kdsweep's dependencies take: every one is refused before anything
is created (exit 2, one line naming the source, field, value and what is allowed, no run
directory), and the limits themselves are accepted and searched."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kdsweep.orchestrator.config import MAX_NESTING, MAX_SEED, load_sweep_text
from kdsweep.orchestrator.search import Searcher
from kdsweep.orchestrator.search_options import GP_MAX_GRID
from kdsweep.orchestrator.space import INT64_MAX, INT64_MIN, MAX_EXACT_INT, ParamSpec
from kdsweep.trainers.synthetic import MAX_EPOCH_S
from tests.conftest import SMALL_SWEEP, kdsweep

#: SMALL_SWEEP without its fixed point, so that a space entry can be replaced freely.
FREE = SMALL_SWEEP.replace("points_to_evaluate = [{ lr = 0.1, momentum = 0.9, width = 64 }]\n", "")
MOMENTUM = 'momentum = { type = "uniform", low = 0.0, high = 0.99 }'
WIDTH = 'width = { type = "choice", values = [16, 32, 64, 128] }'


def swap(old: str, new: str) -> str:
    assert old in FREE, old
    return FREE.replace(old, new)


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# (file text, extra arguments, the start of the one line expected after "error: invalid input";
# {file} is the sweep file's path)
CASES = [
    (swap("seed = 3", "seed = -1"), [], "{file}: seed = -1: an integer from 0 to 4294967295"),
    (FREE, ["--set", f"seed={MAX_SEED + 1}"], "--set: seed = 4294967296: an integer from 0 to 4294967295"),
    (swap(MOMENTUM, 'momentum = { type = "uniform", low = -1.7e308, high = 1.7e308 }'), [],
     "{file}: space.momentum = {'type': 'uniform', 'low': -1.7e+308, 'high': 1.7e+308}: parameter 'momentum': high - low must be a finite number"),
    (swap(MOMENTUM, 'momentum = { type = "uniform", low = 0.0, high = 5e-324 }'), [], "{file}: space.momentum = {'type': 'uniform', 'low': 0.0, 'high': 5e-324}: parameter 'momentum': high - low must be a finite number >= 2.2250738585072014e-308"),
    (swap(MOMENTUM, 'momentum = { type = "loguniform", low = 1e300, high = 1.0000000000000002e300 }'), [], "{file}: space.momentum = {'type': 'loguniform', 'low': 1e+300, 'high': 1.0000000000000002e+300}: parameter 'momentum': loguniform needs log(low) < log(high)"),
    (swap(MOMENTUM, 'momentum = { type = "int", low = 0, high = 9007199254740993 }'), [], "{file}: space.momentum = {'type': 'int', 'low': 0, 'high': 9007199254740993}: parameter 'momentum': int bounds must lie in [-2**53, 2**53]"),
    (swap(MOMENTUM, 'momentum = { type = "quniform", low = 0.0, high = 1e300, q = 1e-300 }'), [], "{file}: space.momentum = {'type': 'quniform', 'low': 0.0, 'high': 1e+300, 'q': 1e-300}: parameter 'momentum': quniform low / q and high / q must lie in [-2**53, 2**53]"),
    (swap(MOMENTUM, 'momentum = { type = "int", low = 0, high = 1000000 }'), ["--set", 'searcher="gp"'],
     "{file}: space.momentum = {'low': 0, 'high': 1000000}: at most 1000000 values under searcher 'gp'"),
    (swap(WIDTH, "width = { type = \"choice\", values = [16, 9223372036854775808] }"), [],
     "{file}: space.width.values[1] = 9223372036854775808: an integer from -2**63 to 2**63 - 1 (TOML's integers are 64-bit"),
    (swap(WIDTH, "width = { type = \"choice\", values = [0.5, inf] }"), [], "{file}: space.width.values = [0.5, inf]: parameter 'width': choice numbers must be finite"),
    (swap("seed = 3", f"seed = 3\ndeep = {nested(5000)}"), [], "{file}: (nesting) = 'nested deeper than 16 levels': tables and arrays nested at most 16 levels deep"),
    (FREE, ["--set", f"backend.slurm.extra.x={nested(MAX_NESTING)}"], "--set: backend.slurm.extra.x[0][0][0][0][0][0][0][0][0][0][0][0][0] = 'nested deeper than 16 levels'"),
    (FREE, ["--set", "settings.sleep_s=1e300"], "--set: settings.sleep_s = 1e+300: a number >= 0 and <= 604800 (seconds: a week)"),
    (FREE, ["--set", "settings.epoch_s_spread=1000"], "--set: settings.epoch_s_spread = 1000.0: a number >= 0 and <= 10"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "args", "expected"), CASES)
def test_a_hostile_value_is_one_line_exit_2_and_creates_nothing(tmp_path: Path, text: str, args: list[str], expected: str) -> None:
    sweep = tmp_path / "bad.toml"
    sweep.write_text(text)
    out = tmp_path / "run"
    result = kdsweep("launch", str(sweep), "--out", str(out), "--no-live", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "error: invalid input" and len(lines) == 2, result.stderr
    assert lines[1].startswith("  " + expected.replace("{file}", str(sweep))), lines[1]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected", "rule"),
    [
        (["--out", "{tmp}/" + "a" * 300], "--out: (run directory) = '{tmp}/aaaa", "a path whose names have at most 255 bytes each"),
        (["--set", 'data.dataset="cifar10"', "--set", 'data.root="{tmp}/' + "r" * 300 + '"'], "--set: data.root = '{tmp}/rrrr", "(a path whose names have at most 255 bytes each"),
        (["--set", 'settings.teacher_cache="{tmp}/' + "c" * 300 + '"'], "--set: settings.teacher_cache = '{tmp}/cccc", "a path whose names have at most 255 bytes each"),
        (["--set", "settings.teacher_seed=-1"], "--set: settings.teacher_seed = -1: ", "an integer from 0 to 4294967295"),
        (["--set", "data.split_seed=4294967296"], "--set: data.split_seed = 4294967296: ", "an integer from 0 to 4294967295"),
        (["--set", "settings.lr=-0.1"], "--set: settings.lr = -0.1: ", "a number >= 0 (torch's SGD refuses a negative one)"),
    ],
)
def test_paths_and_trainer_settings_the_os_or_torch_would_refuse(tmp_path: Path, args: list[str], expected: str, rule: str) -> None:
    """A name longer than NAME_MAX made ``exists()`` raise ENAMETOOLONG (exit 1); a torch
    trainer's seeds and SGD settings failed every trial."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "run"
    if "--out" not in args:
        args += ["--out", str(out)]
    result = kdsweep("launch", "loss_weights", "--set", 'data.dataset="digits"', *args, "--no-live")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith("  " + expected.replace("{tmp}", str(tmp_path))) and rule in lines[1], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_limits_themselves_are_accepted() -> None:
    text = swap("seed = 3", f"seed = {MAX_SEED}")
    text = text.replace(MOMENTUM, 'momentum = { type = "uniform", low = -8.9e307, high = 8.9e307 }')
    text = text.replace(WIDTH, f"width = {{ type = \"choice\", values = [{INT64_MIN}, {INT64_MAX}] }}")
    text = text.replace('[space]\n', f'[space]\nk = {{ type = "int", low = {-MAX_EXACT_INT}, high = {MAX_EXACT_INT} }}\n')
    text = text.replace("[backend]\n", f"[backend]\nslurm = {{ extra = {{ x = {nested(MAX_NESTING - 4)} }} }}\n")
    cfg = load_sweep_text(text, "limits.toml", (f"settings.sleep_s={MAX_EPOCH_S}", "settings.epoch_s_spread=10"))
    assert cfg.seed == MAX_SEED and cfg.settings.sleep_s == MAX_EPOCH_S
    assert load_sweep_text(text, "x", ('searcher="gp"', f'space.k={{type="int",low=1,high={GP_MAX_GRID}}}')).searcher == "gp"


#: A space at the limits, with every kind.
EXTREMES = [
    ParamSpec("u", "uniform", low=-8.9e307, high=8.9e307),
    ParamSpec("n", "uniform", low=0.0, high=2.2250738585072014e-308),
    ParamSpec("l", "loguniform", low=5e-324, high=1.7e308),
    ParamSpec("c", "choice", values=(INT64_MIN, 0, INT64_MAX)),
    ParamSpec("f", "choice", values=(-1.7e308, 0.0, 1.7e308)),
]
#: The widest int and quniform parameters: ``gp`` lists their values, so its are the most it takes.
WIDEST = [ParamSpec("i", "int", low=-MAX_EXACT_INT, high=MAX_EXACT_INT), ParamSpec("q", "quniform", low=-(2.0**52), high=2.0**52, q=0.5)]
GP_WIDEST = [ParamSpec("i", "int", low=1, high=GP_MAX_GRID), ParamSpec("q", "quniform", low=0.0, high=(GP_MAX_GRID - 1) * 0.5, q=0.5)]
OPTIONS: dict[str, dict[str, Any]] = {"random": {}, "tpe": {"n_startup_trials": 2}, "ga": {"population_size": 2}, "gp": {"n_startup_trials": 2}}


# TPE's Gaussian densities overflow at ±8.9e307 (its model degenerates there; what is
# tested is that its proposals stay valid).
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("algorithm", list(OPTIONS))
def test_every_searcher_proposes_inside_a_space_at_the_limits(algorithm: str) -> None:
    """Measured before the limits were set: past them numpy's and Optuna's uniform draws
    overflow, TPE asserts, hyperopt's log bounds meet, int64 columns overflow, and GPSampler
    runs out of memory. At them, every searcher's model proposals (after two told trials)
    lie in the space and fit the results' Arrow types."""
    space = [*EXTREMES, *(GP_WIDEST if algorithm == "gp" else WIDEST)]
    searcher = Searcher(space, algorithm, MAX_SEED, "max", options=OPTIONS[algorithm])
    for i in range(5):
        params = searcher.ask(f"t{i}")
        for spec in space:
            assert spec.contains(params[spec.name]), (spec, params[spec.name])
            pa.array([params[spec.name]], type=spec.arrow_type())
        searcher.tell(f"t{i}", float(i % 3))


def test_gp_refuses_a_range_it_would_list_in_full() -> None:
    spec = ParamSpec("i", "int", low=0, high=GP_MAX_GRID)
    with pytest.raises(ValueError, match=r"space\.i.*at most 1000000 values under searcher 'gp'.*has 1000001"):
        Searcher([spec], "gp", 0, "max")
    Searcher([spec], "tpe", 0, "max")  # the others draw it as a float


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="choice", values=(1.5, 10**400)), r"choice integers must lie in \[-2\*\*63"),
        (dict(kind="choice", values=(1.5, -math.inf)), "must be finite"),
        (dict(kind="uniform", low=0, high=10**400), "finite number high"),
        (dict(kind="quniform", low=-1e308, high=1e308, q=1e300), "high - low must be a finite number"),
    ],
)
def test_param_specs_past_the_limits(kwargs: dict[str, Any], match: str) -> None:
    """Raised as ValueError naming the rule (10**400 used to escape as OverflowError)."""
    with pytest.raises(ValueError, match=match):
        ParamSpec("p", **kwargs)


def _run(tmp_path: Path, *extra: str) -> Path:
    sweep = tmp_path / "small.toml"
    sweep.write_text(SMALL_SWEEP)
    run = tmp_path / "run"
    result = kdsweep("launch", str(sweep), "--out", str(run), "--no-live", "--set", "asha.max_epochs=1", *extra)
    assert result.returncode == 0, result.stderr
    return run


def test_resume_refuses_a_budget_below_the_trials_already_started(tmp_path: Path) -> None:
    """Four trials started, and the proposals over settings.max_width rejected (they do not
    count, as for the driver): a budget below four is refused by --set and by --num-trials
    alike, and nothing is written; four itself is accepted."""
    run = _run(tmp_path, "--set", "num_trials=4", "--set", "points_to_evaluate=[]", "--set", "settings.max_width=16")
    records = sorted((run / "trials").glob("*.json"))
    frozen = (run / "sweep.toml").read_bytes()
    assert len(records) > 4  # some were rejected and replaced
    for args, source in ((["--set", "num_trials=3"], "--set"), (["--num-trials", "3"], "--num-trials")):
        result = kdsweep("launch", "--resume", str(run), *args, "--no-live")
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[1:] == [f"  {source}: num_trials = 3: at least 4 (trials already started; a resume runs them all)"]
        assert (run / "sweep.toml").read_bytes() == frozen
        assert sorted((run / "trials").glob("*.json")) == records
    assert kdsweep("launch", "--resume", str(run), "--num-trials", "4", "--dry-run").returncode == 0
