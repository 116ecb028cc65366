"""`kdsweep export RUN --optuna FILE`: the run as an Optuna journal, read back with Optuna's own API."""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.dataset as ds
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.conftest import kdsweep

POINTS = "points_to_evaluate=[{ lr = 0.1, momentum = 0.9, width = 64 }, { lr = 2.0, momentum = 0.9, width = 64 }]"


def test_export_opens_in_optuna_with_every_trial_param_curve_and_state(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A baseline outside the space (lr 2.0 > 1.0) and proposals the trainer rejects (width 128).
    sets = [POINTS, "settings.max_width=64", "num_trials=10"]
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "run.journal"
    out = kdsweep("export", str(run), "--optuna", str(journal))
    assert out.returncode == 0, out.stderr
    assert "exported" in out.stdout and not out.stderr

    study = optuna.load_study(study_name="small", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.metric_names == ["val_acc"]
    rows = ds.dataset(run / "results").to_table().to_pylist()
    by_trial: dict[str, list[dict]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    assert [t.user_attrs["kdsweep.trial_id"] for t in study.trials] == sorted(by_trial)
    expected_state = {"completed": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "rejected": TrialState.FAIL}
    seen = set()
    for trial in study.trials:
        trows = by_trial[trial.user_attrs["kdsweep.trial_id"]]
        last = trows[-1]
        assert trial.state == expected_state[last["event"]]
        seen.add(last["event"])
        curve = {r["epoch"]: r["val_acc"] for r in trows if r["event"] == "report"}
        assert trial.intermediate_values == curve
        if curve:
            assert trial.value == curve[max(curve)] and trial.last_step == max(curve)
        else:
            assert trial.value is None and "exceeds settings.max_width 64" in trial.user_attrs["kdsweep.error"]
        params = {k.removeprefix("param."): v for k, v in last.items() if k.startswith("param.")}
        if params["lr"] > 1.0:  # the baseline outside the space: kept as a user attribute
            assert trial.params == {"momentum": 0.9, "width": 64} and trial.user_attrs["param.lr"] == 2.0
            assert trial.user_attrs["kdsweep.origin"] == "fixed"
        else:
            assert trial.params == params
        # Optuna hands times back naive, in local time, as it records its own trials.
        end = last["reported_at"].astimezone().replace(tzinfo=None)
        assert trial.datetime_start is not None and trial.datetime_start <= end == trial.datetime_complete
    assert seen == {"completed", "stopped", "rejected"}

    again = kdsweep("export", str(run), "--optuna", str(journal))
    assert again.returncode == 2 and "a new file, or --force to replace it" in again.stderr


def test_promote_sweep_exports_paused_trials_as_pruned(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", "asha.variant=promote").returncode == 0
    journal = tmp_path / "sub" / "run.journal"
    missing = kdsweep("export", str(run), "--optuna", str(journal))
    assert missing.returncode == 2 and "a file in an existing directory" in missing.stderr and not journal.exists()
    journal.parent.mkdir()
    assert kdsweep("export", str(run), "--optuna", str(journal)).returncode == 0
    study = optuna.load_study(study_name="small", storage=JournalStorage(JournalFileBackend(str(journal))))
    states = {t.user_attrs["kdsweep.status"]: t.state for t in study.trials}
    assert states == {"paused": TrialState.PRUNED, "completed": TrialState.COMPLETE}
    assert [p.name for p in journal.parent.iterdir()] == ["run.journal"]  # no temporary or lock file left
