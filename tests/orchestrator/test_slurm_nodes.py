"""SLURM as researchers have it: several nodes, GPUs as gres and shards, a node lost mid-sweep.

On ``slurm/testcluster/start.sh --nodes 2``'s cluster (CI starts that one): two ``slurmd``
on this machine as nodes ``kd1`` and ``kd2``, each with one stand-in GPU (a character device
declared in ``gres.conf``), kd1's in four shards, kd2's in none (alone in partition
``noshard``). SLURM itself hands out the devices and
shards and kills and requeues the jobs of a node set down; nothing here is mocked. Without
a two-node cluster these tests skip, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from kdsweep.orchestrator.backends.slurm import shards_per_gpu
from kdsweep.orchestrator.schema import TERMINAL_EVENTS
from tests.conftest import kdsweep
from tests.orchestrator.backends.test_slurm import slurm_cluster  # noqa: F401 - the fixture
from tests.orchestrator.test_sweep_slurm import ON_SLURM, assert_each_attempt_submitted_once, launch_cmd, rows, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def gres_of(sinfo_gres: str) -> list[str]:
    """One unit of each GRES kind sinfo lists (``gpu:1,shard:4`` -> gpu:1, shard:1)."""
    return [f"{item.split(':')[0]}:1" for item in sinfo_gres.split(",") if ":" in item]


def cluster_nodes() -> dict[str, str]:
    """Node name -> its GRES as sinfo shows it (``gpu:1,shard:4``)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%G"], capture_output=True, text=True, timeout=30, check=True).stdout
    return dict(line.split("|", 1) for line in sorted(set(out.split())))


@pytest.fixture
def two_nodes() -> list[str]:
    """The cluster's nodes, when it has at least two with a GPU, one of them with shards."""
    nodes = cluster_nodes()
    gpu_nodes = [n for n, gres in nodes.items() if "gpu:" in gres]
    if len(gpu_nodes) >= 2 and any("shard:" in gres for gres in nodes.values()):
        return gpu_nodes
    why = f"the test cluster has {len(gpu_nodes)} node(s) with a GPU ({nodes}); start it with 'bash slurm/testcluster/start.sh --nodes 2'"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


def accepts(node: str, gres: str) -> bool:
    """Whether slurmctld would run a one-CPU job asking for ``gres`` on ``node`` now
    (``sbatch --test-only``): a node set down and resumed answers "idle" before its GRES are
    usable again."""
    done = subprocess.run(["sbatch", "--test-only", "-w", node, f"--gres={gres}", "--mem=100M", "--wrap", "true"], capture_output=True, text=True, timeout=30)
    return done.returncode == 0


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_a_node_lost_mid_sweep_requeues_its_trials_onto_the_other(two_nodes: list[str], sweep_file: Path, tmp_path: Path) -> None:
    """One node set down while trials run on it: SLURM kills their jobs and requeues them,
    they finish on the other node from their last rung checkpoint; every trial ends once,
    no epoch is reported twice, and the driver says which node was lost and what was
    requeued."""
    run = tmp_path / "run"
    # Rungs (and checkpoints) at 1, 2, 4 of 8 epochs, 1.5 s each: a trial runs about 12 s.
    sets = ("--set", "settings.sleep_s=1.5", "--set", "asha.reduction_factor=2", "--set", "asha.max_epochs=8")
    driver = subprocess.Popen(launch_cmd(str(sweep_file), "--out", str(run), "--num-trials", "4", "--max-concurrent", "4", *sets, *ON_SLURM), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    try:

        def running_on_a_node_past_a_checkpoint() -> bool:
            nonlocal victim
            if not (run / "results").is_dir():
                return False
            found = rows(run)
            ended = {r["trial_id"] for r in found if r["event"] in TERMINAL_EVENTS}
            live = [r for r in found if r["event"] == "report" and r["epoch"] >= 2 and r["trial_id"] not in ended]
            if live:
                victim = live[0]["node"]
            return victim is not None

        wait_until(running_on_a_node_past_a_checkpoint, 180, "a trial past its epoch-2 checkpoint")
        assert victim in two_nodes
        before = rows(run)
        subprocess.run(["scontrol", "update", f"nodename={victim}", "state=down", "reason=kdsweep test: node lost"], check=True)
        _, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
        if victim is not None:
            subprocess.run(["scontrol", "update", f"nodename={victim}", "state=resume"], check=False)
            wait_until(lambda: node_state(victim) in ("idle", "mix", "alloc"), 60, f"node {victim} back")
            back = victim
            wait_until(lambda: all(accepts(back, g) for g in gres_of(cluster_nodes()[back])), 60, f"node {victim}'s GPU usable")
    assert driver.returncode == 0, err
    all_rows = rows(run)
    assert Counter(r["trial_id"] for r in all_rows if r["event"] in TERMINAL_EVENTS) == Counter({f"t{i:04d}": 1 for i in range(4)})
    reports = Counter((r["trial_id"], r["epoch"]) for r in all_rows if r["event"] == "report")
    assert max(reports.values()) == 1, reports
    ended_before = {r["trial_id"] for r in before if r["event"] in TERMINAL_EVENTS}
    hit = {r["trial_id"] for r in before if r["node"] == victim} - ended_before
    assert hit, "no trial was running on the node that was lost"
    for trial in hit:
        mine = [r for r in all_rows if r["trial_id"] == trial]
        epochs = sorted(r["epoch"] for r in mine if r["event"] == "report")
        assert epochs == list(range(1, epochs[-1] + 1)), f"{trial}: every epoch once, none skipped: {epochs}"
        # On the lost node (until SLURM killed its job, maybe an epoch after the order), then
        # on the other one to the end: resumed from its checkpoint there.
        where = [r["node"] for r in sorted(mine, key=lambda r: (r["event"] != "report", r["epoch"]))]
        moved = next(i for i, node in enumerate(where) if node != victim)
        assert where[0] == victim and set(where[moved:]) == set(two_nodes) - {victim}, f"{trial} ran on {where}"
    # The jobs were requeued by SLURM (the same job, started again), not resubmitted.
    records = assert_each_attempt_submitted_once(run)
    restarted = [subs[0]["job_id"] for (trial, _, _), subs in records.items() if trial in hit]
    for job_id in restarted:
        log = (run / "slurm" / f"{job_id}_0_log.out").read_text()  # submitit's: <job>_<task of the step>
        assert log.count("Starting with JobEnvironment") == 2, f"job {job_id} was not restarted"
    assert f"node {victim}" in err and "requeued" in err, err


def _seen(path: Path) -> list[dict[str, str]]:
    """The lines trial jobs wrote before their trial (``backend.slurm.setup``)."""
    return [dict(kv.split("=", 1) for kv in line.split()) for line in path.read_text().splitlines()]


#: A setup line (``backend.slurm.setup``) recording what SLURM gave the job, before its trial runs.
SEEN = 'echo "job=${{SLURM_JOB_ID}} node=${{SLURMD_NODENAME}} cuda=${{CUDA_VISIBLE_DEVICES:-none}} shards=${{SLURM_SHARDS_ON_NODE:-0}} gpus=${{SLURM_GPUS_ON_NODE:-0}}" >> {path}'


def test_a_whole_gpu_trial_gets_its_device_from_slurm(two_nodes: list[str], sweep_file: Path, tmp_path: Path) -> None:
    run, seen = tmp_path / "run", tmp_path / "seen.txt"
    setup = SEEN.format(path=seen).replace('"', '\\"')
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--num-trials", "2", *ON_SLURM, "--set", "backend.gpus_per_trial=1", "--set", f'backend.slurm.setup=["{setup}"]', timeout=300)
    assert result.returncode == 0, result.stderr
    lines = _seen(seen)
    assert len(lines) == 2 and all(line["cuda"] == "0" and line["gpus"] == "1" for line in lines), lines


def test_quarter_gpu_trials_share_one_device_four_at_a_time_through_shards(two_nodes: list[str], sweep_file: Path, tmp_path: Path) -> None:
    """``gpus_per_trial = 0.25``: each trial asks for one shard of four, so four trials run
    at once on one stand-in GPU (all on kd1 here, by ``extra.nodelist``) and a fifth waits:
    SLURM never lets more trials share the device than the fraction allows."""
    run, seen = tmp_path / "run", tmp_path / "seen.txt"
    node = next(n for n, gres in cluster_nodes().items() if "shard:4" in gres)
    setup = SEEN.format(path=seen).replace('"', '\\"')
    sets = (
        "--set", "backend.gpus_per_trial=0.25", "--set", f'backend.slurm.setup=["{setup}"]',
        "--set", f'backend.slurm.extra={{nodelist = "{node}"}}', "--set", "settings.sleep_s=1.0",
        "--set", "asha.min_epochs=6", "--set", "asha.max_epochs=6",
    )  # fmt: skip
    driver = subprocess.Popen(launch_cmd(str(sweep_file), "--out", str(run), "--num-trials", "5", "--max-concurrent", "5", *ON_SLURM, *sets), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most = 0
    try:
        while driver.poll() is None:
            out = subprocess.run(["squeue", "--me", "-h", "-t", "RUNNING", "-o", "%N|%b|%j"], capture_output=True, text=True, timeout=30, check=True).stdout
            running = [line for line in out.splitlines() if line.endswith("kdsweep-small")]
            most = max(most, len(running))
            assert len(running) <= 4, f"more trials than shards on one GPU: {running}"
            time.sleep(0.3)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    assert most == 4, f"at most {most} trials ran at once on the GPU's four shards"
    lines = _seen(seen)
    assert len(lines) == 5 and {line["node"] for line in lines} == {node}
    assert all(line["cuda"] == "0" and line["shards"] == "1" for line in lines), lines


def test_a_fraction_of_a_gpu_where_no_gpu_has_shards_names_the_setting(two_nodes: list[str], sweep_file: Path, tmp_path: Path) -> None:
    """A quarter GPU on partition ``noshard`` (a GPU without shards): the launch stops
    before anything is written, naming ``backend.slurm.gres``; a whole GPU there is fine."""
    run = tmp_path / "run"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", *ON_SLURM, "--set", "backend.gpus_per_trial=0.25", "--set", 'backend.slurm.partition="noshard"', timeout=120)
    assert result.returncode == 2, result.stderr
    assert "backend.gpus_per_trial = 0.25" in result.stderr and "backend.slurm.gres" in result.stderr and "partition noshard" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not run.exists()
    dry = kdsweep("launch", str(sweep_file), "--out", str(run), "--dry-run", *ON_SLURM, "--set", "backend.gpus_per_trial=1", "--set", 'backend.slurm.partition="noshard"', timeout=120)
    assert dry.returncode == 0 and "--gres=gpu:1" in dry.stdout, dry.stderr


@pytest.mark.parametrize(
    ("gres", "per_gpu"),
    [
        (["gpu:1,shard:4"], 4),
        (["gpu:a100:2(S:0-1),shard:8", "gpu:1,shard:4"], 4),  # the fewest: a job fits on either
        (["gpu:1", "(null)"], 0),
        (["gpu:1,shard:4", "gpu:2"], 4),  # a node without shards does not count
        ([], 0),
    ],
)
def test_shards_per_gpu_reads_sinfos_gres(gres: list[str], per_gpu: int) -> None:
    assert shards_per_gpu(gres) == per_gpu
