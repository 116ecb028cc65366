"""The scheduler interface: every registered policy is a variant the sweep file accepts, and
ASHA's two variants answer its two questions with ASHA's own rules (the Ray Tune and Syne
Tune differential tests check those rules; a 300-trial simulated sweep of each variant wrote
the very same rows before and after the interface, see the issue 22 note)."""

from __future__ import annotations

import json
import random
import typing

import pytest

from kdsweep.orchestrator import asha, schedulers
from kdsweep.orchestrator.config import AshaConfig, load_sweep_text
from kdsweep.orchestrator.policies import job_source
from kdsweep.orchestrator.rundir import TrialRecord
from kdsweep.orchestrator.schedulers import SCHEDULERS, Decision, scheduler_of
from kdsweep.orchestrator.store import Store
from tests.conftest import SMALL_SWEEP, kdsweep
from tests.orchestrator.test_store import SCHEMA, row


def _asha(variant: str) -> AshaConfig:
    return load_sweep_text(SMALL_SWEEP, "small", [f"asha.variant='{variant}'", "asha.max_epochs=27"]).asha


def test_every_registered_policy_is_a_variant_the_sweep_file_accepts_and_builds() -> None:
    variants = typing.get_args(typing.get_type_hints(AshaConfig)["variant"])
    assert set(variants) == set(SCHEDULERS)
    for name in SCHEDULERS:
        policy = scheduler_of(_asha(name), 0)
        assert policy.ladder == (1, 3, 9, 27)
        assert policy.target(None) == 27


def test_stop_asks_asha_at_the_rung_and_never_pauses(tmp_path: typing.Any) -> None:
    store = Store(tmp_path, SCHEMA)
    for i, value in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
        store.append([row(f"t{i}", 1, rung=0, val_acc=value)])
    policy = scheduler_of(_asha("stop"), 0)
    values = store.rung_points(0, ("val_acc",))
    for tid, (value,) in values.items():
        expected = asha.decide(values, tid, (value,), 3, ("max",))
        assert policy.on_result(store, tid, 0, (value,)) is expected
    assert [policy.on_result(store, f"t{i}", 0, (v,)) for i, v in enumerate([0.1, 0.6])] == [Decision.STOP, Decision.CONTINUE]
    assert not policy.pauses and policy.first_target("t0") is None


def test_promote_pauses_at_the_first_rung_and_hands_out_asha_get_job_with_its_next_epoch() -> None:
    policy = scheduler_of(_asha("promote"), 0)
    assert policy.pauses and policy.first_target("t0") == 1
    rungs = [{f"t{i}": (0.1 * i,) for i in range(6)}, {}, {}, {}]
    promoted: list[set[str]] = [set(), set(), set(), set()]
    assert policy.next_job(rungs, promoted, set()) == ("t5", 3)
    assert policy.next_job(rungs, promoted, {"t5"}) == ("t4", 3)
    assert policy.next_job(rungs, [{"t5", "t4"}, set(), set(), set()], set()) is None


@pytest.mark.parametrize("variant, until, end", [("stop", 27, "completed"), ("promote", 1, "paused")])
def test_a_search_record_gets_its_policy_target_as_its_work_order(variant: str, until: int, end: str, tmp_path: typing.Any) -> None:
    cfg = load_sweep_text(SMALL_SWEEP, "small", [f"asha.variant='{variant}'", "asha.max_epochs=27"])
    source = job_source(cfg, tmp_path)
    record = source.new_record("t0000", {"lr": 0.1, "momentum": 0.9, "width": 64}, "fixed")
    order = source.order(record)
    assert (order.until_epoch, order.end, order.milestones) == (until, end, (1, 3, 9, 27))
    promoted = source.order(TrialRecord("t0000", {}, "tpe", until_epoch=9))
    assert (promoted.until_epoch, promoted.end) == ((27, "completed") if variant == "stop" else (9, "paused"))


def _curve_rows(trial: str, values: list[float]) -> list[dict[str, typing.Any]]:
    return [row(trial, epoch, val_acc=value) for epoch, value in enumerate(values, start=1)]


def test_pasha_restored_from_its_saved_state_decides_as_the_policy_that_saved_it(tmp_path: typing.Any) -> None:
    """A driver killed after a job resumes from ``scheduler.json``: the restored policy folds
    the next results into the same budget and ε and hands out the same jobs as the policy
    that never stopped."""
    cfg = _asha("pasha")
    store = Store(tmp_path, SCHEMA)
    rng = random.Random(5)
    curves = {f"t{i:02d}": [rng.uniform(0, 1) for _ in range(27)] for i in range(30)}
    progress: dict[str, int] = {}
    running = schedulers.scheduler_of(cfg, 0)
    restored: typing.Any = None
    for step, (tid, curve) in enumerate(curves.items()):
        # Each trial reports up to a rung; the driver observes after each attempt.
        until = (1, 3, 9)[step % 3]
        store.append(_curve_rows(tid, curve[:until]))
        progress[tid] = until
        running.observe(store, progress)
        if step == 14:
            schedulers.save(running, tmp_path, None)
            restored = schedulers.load(cfg, 0, tmp_path, Store(tmp_path, SCHEMA))
        elif restored is not None:
            restored.observe(store, progress)
            assert restored.state() == running.state()
    ladder = running.ladder
    rungs = [store.rung_points(k, ("val_acc",)) for k in range(len(ladder))]
    promoted = [{t for t, e in progress.items() if e > m} for m in ladder]
    assert restored.next_job(rungs, promoted, set()) == running.next_job(rungs, promoted, set())
    assert running.state()["top"] > 2, "the budget never grew: nothing was compared"


def test_a_simulated_pasha_sweep_saves_its_budget_and_the_report_reads_it(tmp_path: typing.Any) -> None:
    out = tmp_path / "run"
    sim = kdsweep("simulate", "synthetic", "--out", str(out), "--workers", "6", "--format", "json",
                  "--set", "num_trials=60", "--set", "asha.variant='pasha'", "--set", "searcher='random'")  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    state = json.loads((out / "scheduler.json").read_text())
    assert len(state["folded"]) == 60 and state["top"] >= 2
    status = kdsweep("status", str(out))
    assert status.returncode == 0, status.stderr
    assert "finished: all 60 trials proposed and none left to run" in status.stdout
