"""End to end on the Ray backend: a real two-node Ray cluster on this machine (two `ray start`
processes with their own temp dirs and ports), the installed CLI as the driver.

Covers trials spread over both nodes, the death of a node mid-sweep (its trials retried from
their checkpoints on the other node), and the driver losing the whole cluster (a clear error
naming ``--resume``; resuming on a fresh local Ray instance finishes the sweep).

The cluster uses token authentication with a token of its own, so nothing else on a shared
machine can submit work to it, and it is torn down (every process of both nodes) whatever
the outcome. Under CI a Ray that cannot start fails these tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kdsweep.orchestrator.schema import TERMINAL_EVENTS

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
# Seconds a node gets to come up on a loaded two-core machine.
START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the fields after it are plain.
        fields = stat[stat.rindex(")") + 2 :].split()
        found.append((int(entry.name), int(fields[1]), int(fields[2])))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


@dataclasses.dataclass
class Node:
    """One `ray start --block` process; the node's processes share its process group."""

    proc: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path

    def raylet(self) -> tuple[int, str]:
        """The node's raylet: its pid and the Ray node id it serves."""
        for pid, _, group in _processes():
            args = _cmdline(pid) if group == self.proc.pid else []
            if args and args[0].endswith("/raylet"):
                node_id = next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
                return pid, node_id
        raise AssertionError(f"no raylet in the session of {self.proc.args!r}; log: {self.log.read_text()[-2000:]}")

    def crash(self) -> None:
        """Kill every process of the node at once, as a machine that dies: its session and the
        worker processes its raylet started (Ray puts each in a session of its own)."""
        if self.proc.poll() is not None:  # already down (an earlier test crashed it)
            return
        raylet, _ = self.raylet()
        for pid, parent, group in _processes():
            if group == self.proc.pid or parent == raylet:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclasses.dataclass
class Cluster:
    address: str
    env: dict[str, str]
    head: Node
    worker: Node
    root: Path


def _start_node(root: Path, name: str, env: dict[str, str], head_address: str | None) -> tuple[Node, str]:
    temp_dir = root / name
    log = root / f"{name}.log"
    args = [
        str(RAY), "start", "--block", "--num-cpus=1", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        # Loopback only: the test cluster's traffic never leaves this machine.
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
    ]  # fmt: skip
    if head_address is None:
        port = _free_port()
        args += ["--head", f"--port={port}", "--include-dashboard=false"]
        address = f"127.0.0.1:{port}"
    else:
        args += [f"--address={head_address}"]
        address = head_address
    with open(log, "wb") as out:
        # Its own session: the node's processes can be killed together, and only they.
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    node = Node(proc, temp_dir, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while b"Ray runtime started." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            node.kill()
            raise RuntimeError(f"ray start ({name}) did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return node, address


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not RAY.exists():
        pytest.fail(f"no `ray` executable next to {sys.executable}")
    # Short path: Ray's unix socket names must fit in 107 characters.
    root = Path(tempfile.mkdtemp(prefix="kdr-", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    nodes: list[Node] = []
    try:
        try:
            head, address = _start_node(root, "head", env, None)
            nodes.append(head)
            worker, _ = _start_node(root, "worker", env, address)
            nodes.append(worker)
        except RuntimeError as exc:
            if os.environ.get("CI", "").lower() == "true":
                raise  # CI must prove the backend; a Ray that cannot start is a failure there
            pytest.skip(str(exc))
        yield Cluster(address, env, head, worker, root)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


def _rows(run: Path) -> list[dict]:
    if not (run / "results").is_dir():
        return []
    return ds.dataset(run / "results").to_table().to_pylist()


def _launch(cluster: Cluster, run: Path, *sets: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    overrides = [x for s in sets for x in ("--set", s)]
    cmd = [
        sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "synthetic", "--backend", "ray", "--out", str(run),
        "--no-live", "--set", f"backend.ray.address={cluster.address}", *overrides,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, env=env or cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    """Kill what is left of a driver's session: the driver, if a test failed before it
    ended, and any local Ray it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def _wait_for(proc: subprocess.Popen[str], run: Path, what: str, ready: Callable[[list[dict]], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()[1][-3000:]}"
        if ready(_rows(run)):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _check_complete(rows: list[dict], num_trials: int) -> None:
    ends = Counter(r["trial_id"] for r in rows if r["event"] in TERMINAL_EVENTS)
    assert sorted(ends) == [f"t{i:04d}" for i in range(num_trials)] and set(ends.values()) == {1}, ends
    assert not [r for r in rows if r["event"] == "failed"]
    reports = Counter((r["trial_id"], r["epoch"]) for r in rows if r["event"] == "report")
    assert max(reports.values()) == 1, [k for k, n in reports.items() if n > 1]


# Rungs at epochs 1, 3, 9. Between rungs a trial is never stopped, so one seen reporting
# epoch 2 still trains for at least one more epoch (sleep_s) when the node is killed.
SWEEP = ("num_trials=8", "asha.max_epochs=9", "settings.sleep_s=0.5", "backend.max_concurrent=2", "backend.max_retries=2")


def test_trials_run_on_both_nodes_and_survive_the_death_of_one(cluster: Cluster, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _, worker_node = cluster.worker.raylet()
    driver = _launch(cluster, run, *SWEEP)
    try:

        def live_on_worker(rows: list[dict]) -> bool:
            ended = {r["trial_id"] for r in rows if r["event"] in TERMINAL_EVENTS}
            return any(r["node"] == worker_node and r["epoch"] == 2 and r["trial_id"] not in ended for r in rows)

        _wait_for(driver, run, "a trial between rungs on the second node", live_on_worker)
        cluster.worker.crash()
        _, err = driver.communicate(timeout=150)
    finally:
        _stop(driver)
    assert driver.returncode == 0, err[-3000:]
    rows = _rows(run)
    _check_complete(rows, 8)
    _, head_node = cluster.head.raylet()
    assert {r["node"] for r in rows if r["event"] == "report"} == {head_node, worker_node}
    retried = {r["trial_id"] for r in rows if r["attempt"] >= 1}
    assert retried, "no trial was retried: the node died between trials"
    for tid in retried:
        first = {r["node"] for r in rows if r["trial_id"] == tid and r["attempt"] == 0}
        later = {r["node"] for r in rows if r["trial_id"] == tid and r["attempt"] >= 1}
        # The attempt that died ran on the killed node (it may have died before its first
        # report); its retry ran on the node that is left.
        assert first <= {worker_node} and later == {head_node}, (tid, first, later)


def test_losing_the_cluster_tells_how_to_resume_and_resume_finishes(cluster: Cluster, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # The driver declares the cluster lost after half of Ray's GCS reconnect timeout (Ray
    # terminates it at the whole): 10 s here instead of 30 s, with 10 s left to clean up.
    env = {**cluster.env, "RAY_gcs_rpc_server_reconnect_timeout_s": "20"}
    driver = _launch(cluster, run, *SWEEP, "num_trials=6", env=env)
    try:

        def under_way(rows: list[dict]) -> bool:
            return any(r["event"] in TERMINAL_EVENTS for r in rows) and any(r["epoch"] >= 2 for r in rows)

        _wait_for(driver, run, "the sweep to get under way", under_way)
        cluster.worker.crash()
        cluster.head.crash()
        _, err = driver.communicate(timeout=60)
    finally:
        _stop(driver)
    assert driver.returncode != 0
    assert f"kdsweep launch --resume {run}" in err, err[-3000:]
    before = _rows(run)
    assert 0 < len({r["trial_id"] for r in before if r["event"] in TERMINAL_EVENTS}) < 6

    # A fresh local Ray instance; the frozen config still names the dead cluster's address.
    resume = [sys.executable, "-m", "kdsweep.orchestrator.cli", "launch", "--resume", str(run), "--no-live", "--set", "backend.ray.address=local"]
    resumed = subprocess.Popen(resume, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = resumed.communicate(timeout=150)
    finally:
        _stop(resumed)
    assert resumed.returncode == 0, err[-3000:]
    after = _rows(run)
    _check_complete(after, 6)
    keys = {(r["trial_id"], r["event"], r["epoch"]) for r in after}
    assert all((r["trial_id"], r["event"], r["epoch"]) in keys for r in before), "a recorded row was lost"
