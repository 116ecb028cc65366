"""The backend contract, run against the SLURM backend on a real (one-node) SLURM cluster,
plus what only SLURM has: job arrays, job records and adoption by a relaunched driver,
submitit's checkpoint-and-requeue on SIGUSR2.

The cluster is ``slurm/testcluster/start.sh``'s. Without one these tests skip, except under
CI (``CI=true``), where a cluster that cannot start is a failure.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from kdsweep.orchestrator.backends import Backend
from kdsweep.orchestrator.backends.slurm import SlurmBackend, TrialJob, job_records
from kdsweep.orchestrator.config import SweepConfig
from kdsweep.orchestrator.rundir import RunDir
from tests.orchestrator.backends.contract import *  # noqa: F403 - the shared contract tests
from tests.orchestrator.backends.contract import make_run, run_one, spec, store_rows, wait_all

START = Path(__file__).resolve().parents[3] / "slurm" / "testcluster" / "start.sh"

pytestmark = pytest.mark.slow


def cluster_ready() -> bool:
    """sinfo answers and some node can take jobs."""
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.rstrip("*") in ("idle", "mix", "alloc") for s in out.stdout.split())


#: What the test cluster's slurm.conf (written by start.sh) sets and these tests rely on.
TEST_CLUSTER = {"ClusterName": "kdsweep-test", "KillWait": "2 sec", "JobRequeue": "1"}


def not_the_test_cluster() -> str | None:
    """Why the answering cluster is not start.sh's test cluster (None when it is): tests
    submit jobs and requeue them, which must never happen on anyone else's cluster."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=False)
    config = dict(line.split("=", 1) for line in out.stdout.splitlines() if " = " in line)
    found = {k: next((v.strip() for key, v in config.items() if key.strip() == k), "(unset)") for k in TEST_CLUSTER}
    wrong = {k: v for k, v in found.items() if v != TEST_CLUSTER[k]}
    return None if not wrong else f"the SLURM cluster answering here is not kdsweep's test cluster ({wrong}; expected {TEST_CLUSTER})"


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """start.sh's test cluster: the running one, else started here. Another cluster that
    answers (a real login node) is never submitted to: the tests skip, or fail under CI."""
    why: str | None
    if cluster_ready():
        why = not_the_test_cluster()
    else:
        try:
            started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900, check=False)
            ok = started.returncode == 0 and cluster_ready()
            why = not_the_test_cluster() if ok else f"no SLURM cluster and {START} could not start one:\n{started.stderr.strip()[-3000:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"no SLURM cluster and {START} could not start one: {exc!r}"
    if why is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


def fast(backend: SlurmBackend) -> SlurmBackend:
    """Notice dead jobs within seconds: the test cluster's squeue is cheap and its files local."""
    backend.squeue_interval_s = 1.0
    backend.result_grace_s = 1.0
    return backend


@pytest.fixture
def backend_factory(slurm_cluster: None) -> object:
    def make(cfg: SweepConfig, slots: int) -> Backend:
        return fast(SlurmBackend(cfg, slots))

    return make


def wait_for_rows(run: RunDir, n: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(store_rows(run)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} rows after {timeout_s}s"
        time.sleep(0.2)


def test_a_relaunched_driver_adopts_the_jobs_of_the_one_that_died(slurm_cluster: None, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path, "settings.sleep_s=0.5", "asha.max_epochs=3")
    first = fast(SlurmBackend(cfg, 3))
    specs = [spec(run, "t0000"), spec(run, "t0001", lr=0.06)]
    for s in specs:
        first.submit(s)
    assert first.wait(0.0) == []  # submits the queued pair as one array
    # The first driver dies here: no close(), its jobs go on. A new one adopts them.
    second = fast(SlurmBackend(cfg, 3))
    try:
        assert second.adopt(specs[0]) and second.adopt(specs[1])
        assert not second.adopt(spec(run, "t0002")), "never submitted: nothing to adopt"
        done = wait_all(second, 2)
    finally:
        second.close()
    # Which of the two ASHA stops at rung 0 depends on which reports first; both end.
    assert sorted(f.spec.trial_id for f in done if f.outcome and f.outcome.event in ("completed", "stopped")) == ["t0000", "t0001"]
    records = job_records(run.path)
    assert sorted(records) == [("t0000", 0, None), ("t0001", 0, None)]
    ids = [subs[0]["job_id"] for subs in records.values()]
    assert all(len(subs) == 1 for subs in records.values()), "each attempt was submitted once"
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1"], f"not one array: {ids}"
    assert len(list((run.path / "slurm" / "jobs").glob("*.json"))) == 1


def test_a_job_cancelled_while_no_driver_watched_is_not_adopted(slurm_cluster: None, tmp_path: Path) -> None:
    # E.g. the driver's own close() on Ctrl-C: the attempt runs again, costing no retry.
    cfg, run = make_run(tmp_path, "settings.sleep_s=1.0")
    first = fast(SlurmBackend(cfg, 1))
    first.submit(spec(run, "t0000"))
    first.close()  # submits nothing: the queued attempt is dropped
    assert job_records(run.path) == {}
    first.submit(spec(run, "t0000"))
    first.wait(0.0)
    first.close()  # cancels the job
    second = fast(SlurmBackend(cfg, 1))
    assert not second.adopt(spec(run, "t0000"))


def test_a_job_signalled_with_usr2_checkpoints_requeues_and_resumes(slurm_cluster: None, tmp_path: Path) -> None:
    # SIGUSR2 is what SLURM sends signal_delay_s before the time limit: submitit calls
    # TrialJob.checkpoint, requeues the job, and the job restarts from the rung checkpoint.
    cfg, run = make_run(tmp_path, "settings.sleep_s=0.6")
    backend = fast(SlurmBackend(cfg, 1))
    try:
        backend.submit(spec(run, "t0000"))
        backend.wait(0.0)
        (job_id,) = [subs[0]["job_id"] for subs in job_records(run.path).values()]
        wait_for_rows(run, 4)  # past rung 1 (epoch 3): its checkpoint is on disk
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        (finished,) = wait_all(backend, 1)
    finally:
        backend.close()
    assert finished.error is None and finished.outcome is not None and finished.outcome.event == "completed"
    rows = store_rows(run)
    reports = Counter(r["epoch"] for r in rows if r["event"] == "report")
    assert sorted(reports) == list(range(1, 10)) and set(reports.values()) == {1}, reports
    assert [r["event"] for r in rows].count("completed") == 1
    log = (run.path / "slurm" / f"{job_id}_0_log.out").read_text()
    assert "Calling checkpoint method" in log and f"Requeued job {job_id}" in log, log[-2000:]
    assert log.count("Starting with JobEnvironment") == 2, "the job ran twice: before and after its requeue"


def test_a_job_failure_names_its_log(slurm_cluster: None, tmp_path: Path) -> None:
    cfg, run = make_run(tmp_path, "settings.crash_at_epoch=1")
    finished = run_one(fast(SlurmBackend(cfg, 1)), spec(run, "t0000"))
    error = finished.error or ""
    assert "InjectedCrash: injected crash at epoch 1" in error
    log = Path(error.rsplit("log: ", 1)[1].strip())
    assert log.is_file() and log.parent == run.path / "slurm", error


def test_a_requeued_job_whose_trial_already_ended_does_not_train_again(slurm_cluster: None, tmp_path: Path) -> None:
    # The signal (or kill) may land after the trial's last row and before the job exits.
    cfg, run = make_run(tmp_path, "asha.max_epochs=3")
    finished = run_one(fast(SlurmBackend(cfg, 1)), spec(run, "t0000"))
    before = store_rows(run)
    again = TrialJob()(spec(run, "t0000"))  # what the requeued job would run
    assert finished.outcome is not None
    assert (again.trial_id, again.event, again.epoch, again.value) == ("t0000", "completed", 3, finished.outcome.value)
    assert len(store_rows(run)) == len(before)
