"""Nothing lost, nothing repeated — driven through the CLI as a user would: the driver killed
alone (SIGKILL, SIGTERM, SIGHUP) and resumed at once, an orphaned attempt racing its
replacement, runs read without write access, a full disk, and every bad input ending in one
message with exit code 2 and nothing written."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from kdsweep.orchestrator.checkpoint import UnsafeCheckpointError, load_checkpoint
from kdsweep.orchestrator.config import load_sweep_text
from kdsweep.orchestrator.policies import order_of
from kdsweep.orchestrator.rundir import RunDir, TrialRecord
from kdsweep.orchestrator.schema import TERMINAL_EVENTS
from kdsweep.orchestrator.worker import TrialSpec, run_trial
from tests.conftest import SMALL_SWEEP, kdsweep, small_tmpfs

pytestmark = pytest.mark.slow

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def all_rows(run: Path) -> list[dict]:
    return ds.dataset(run / "results").to_table().to_pylist()


def assert_nothing_repeated(run: Path, num_trials: int) -> tuple[int, int]:
    """No (trial, epoch) report twice, exactly one terminal event per trial, every trial
    ended; read with plain pyarrow, as any tool would. Returns (reports, trials)."""
    rows = all_rows(run)
    reports = Counter((r["trial_id"], r["epoch"]) for r in rows if r["event"] == "report")
    assert [k for k, n in reports.items() if n > 1] == []
    ends = Counter(r["trial_id"] for r in rows if r["event"] in TERMINAL_EVENTS)
    assert set(ends.values()) == {1}
    assert len(ends) == num_trials
    return len(reports), len(ends)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), excluding zombies."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdsweep.orchestrator.cli", *args]


@pytest.mark.parametrize(
    ("sig", "target"),
    [(signal.SIGKILL, "driver"), (signal.SIGTERM, "driver"), (signal.SIGHUP, "driver"), (signal.SIGINT, "driver"), (signal.SIGINT, "group")],
    ids=["SIGKILL", "SIGTERM", "SIGHUP", "SIGINT", "Ctrl-C"],
)
def test_the_driver_stopped_by_a_signal_takes_its_workers_and_resume_repeats_nothing(
    sweep_file: Path, tmp_path: Path, sig: signal.Signals, target: str
) -> None:
    """A signal to the driver alone (as from a scheduler, `timeout` or a closed SSH session;
    the driver runs in a new session) or SIGINT to its process group (Ctrl-C at a terminal):
    no worker outlives it; but for SIGKILL it exits 128 + signal with one line naming the
    resume command; a resume at once repeats nothing."""
    run = tmp_path / "run"
    driver = subprocess.Popen(
        cli("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", "settings.sleep_s=0.15", "--set", "num_trials=16"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((run / "results").glob("part-*"))) < 8:
        time.sleep(0.1)
    workers = descendants(driver.pid)
    assert workers, "the driver has no worker processes"
    if target == "group":
        os.killpg(driver.pid, sig)
    else:
        driver.send_signal(sig)
    _, stderr = driver.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert driver.returncode == -sig
    else:
        assert driver.returncode == 128 + sig, stderr
        message = f"interrupted ({sig.name}); every attempt stopped; continue with: kdsweep launch --resume {run}"
        assert [line for line in stderr.splitlines() if line.strip()] == [message]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.05)
    assert [p for p in workers if alive(p)] == [], "worker processes outlived the driver"
    # Resume at once: no orphan may append beside the new driver's attempts.
    resumed = kdsweep("launch", "--resume", str(run), "--no-live")
    assert resumed.returncode == 0, resumed.stderr
    reports, trials = assert_nothing_repeated(run, 16)
    assert reports >= 16 and trials == 16


def test_on_ray_the_attempts_of_a_killed_driver_end_with_it(sweep_file: Path, tmp_path: Path) -> None:
    """kill -9 of the driver alone on the Ray backend (a local Ray instance the driver
    started): its trial actors stop appending, and a resume at once repeats nothing."""
    run = tmp_path / "run"
    sets = ["--set", "settings.sleep_s=0.3", "--set", "num_trials=16", "--backend", "ray"]
    driver = subprocess.Popen(cli("launch", str(sweep_file), "--out", str(run), "--no-live", *sets), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list((run / "results").glob("part-*"))) < 6 and driver.poll() is None:
            time.sleep(0.2)
        if driver.poll() is not None:
            output = driver.communicate()[0]
            if CI:
                pytest.fail(f"Ray did not start: {output[-2000:]}")
            pytest.skip(f"Ray did not start here: {output[-500:]}")
        driver.kill()
        driver.wait(timeout=30)
        time.sleep(5)  # Ray notices its driver's death and ends the job's actors
        count = len(all_rows(run))
        time.sleep(3)  # an attempt still running would report an epoch every 0.3 s
        assert len(all_rows(run)) == count, "Ray actors kept appending after their driver died"
    finally:
        # Ray's own agents of the local instance outlive a SIGKILLed driver; they hold no trial.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    resumed = kdsweep("launch", "--resume", str(run), "--no-live", "--backend", "local")
    assert resumed.returncode == 0, resumed.stderr
    assert_nothing_repeated(run, 16)


def _attempt(run_dir: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    record = TrialRecord("t0000", {"lr": 0.1, "momentum": 0.9, "width": 64}, "fixed")
    run_trial(TrialSpec.of(run_dir, record, order_of(RunDir(run_dir).load_config(), record)))


def test_two_attempts_of_one_trial_at_once_record_every_row_once(tmp_path: Path) -> None:
    """The guarantee that holds even if a process outlives its driver: an orphaned attempt
    racing its replacement (same trial, same epochs) records each report and the terminal
    event once, whatever the interleaving."""
    cfg = load_sweep_text(SMALL_SWEEP, "small", ["settings.sleep_s=0.02", "asha.max_epochs=27"])
    run = RunDir.create(tmp_path / "run", cfg)
    run.write_trial(TrialRecord("t0000", {"lr": 0.1, "momentum": 0.9, "width": 64}, "fixed"))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_attempt, args=(str(run.path), barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    rows = all_rows(run.path)
    assert sorted(r["epoch"] for r in rows if r["event"] == "report") == list(range(1, 28))
    assert [r["event"] for r in rows if r["event"] in TERMINAL_EVENTS] == ["completed"]


@pytest.fixture
def finished_run(sweep_file: Path, tmp_path: Path) -> Path:
    run = tmp_path / "done"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", "num_trials=6")
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Makes a read-only bind mount of a directory (root only; skipped elsewhere, except CI)."""
    mounts: list[Path] = []

    def mount(source: Path) -> Path:
        target = tmp_path / f"ro-{len(mounts)}"
        target.mkdir()
        done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
        if done.returncode == 0:
            mounts.append(target)
            done = subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            if CI:
                pytest.fail(f"cannot make a read-only bind mount: {done.stderr}")
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
        return target

    yield mount
    for target in reversed(mounts):
        subprocess.run(["umount", str(target)], check=False)


def test_reading_commands_work_on_a_run_they_cannot_write(finished_run: Path, read_only: callable) -> None:  # type: ignore[valid-type]
    before = {p: p.lstat().st_mtime_ns for p in finished_run.rglob("*")}
    ro = read_only(finished_run)
    for args in (["status", str(ro)], ["report", str(ro)], ["report", str(ro), "--format", "json"], ["report", str(ro), "--format", "csv"], ["launch", "--resume", str(ro), "--dry-run"]):
        result = kdsweep(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert "t0000" in kdsweep("report", str(ro)).stdout
    compact = kdsweep("compact", str(ro))
    assert compact.returncode == 2 and "Read-only file system" in compact.stderr and "Traceback" not in compact.stderr
    # --debug adds the traceback, before the command or after it, and keeps the exit code.
    for debug in (kdsweep("--debug", "compact", str(ro)), kdsweep("compact", str(ro), "--debug")):
        assert debug.returncode == 2 and "Traceback" in debug.stderr and "OSError" in debug.stderr and "Read-only file system" in debug.stderr
    assert {p: p.lstat().st_mtime_ns for p in finished_run.rglob("*")} == before


def test_a_name_outside_the_basic_multilingual_plane_makes_a_working_run(sweep_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "emoji"
    result = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", 'name="run😀 \\u007f"', "--set", "num_trials=3")
    assert result.returncode == 0, result.stderr
    for args in (["status", str(run)], ["report", str(run)], ["launch", "--resume", str(run), "--no-live"]):
        again = kdsweep(*args)
        assert again.returncode == 0, again.stderr
    assert "run😀" in kdsweep("status", str(run)).stdout


def snapshot(root: Path) -> dict[Path, tuple[int, int, bytes | str]]:
    """Every path under ``root`` (hidden ones too) with its mode, mtime and content (a link's
    target): what a command that changes nothing leaves identical."""
    found = {}
    for p in [root, *root.rglob("*")]:
        st = p.lstat()
        content: bytes | str = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else ""
        found[p] = (st.st_mode, st.st_mtime_ns, content)
    return found


@pytest.mark.parametrize("refusal", ["driver running", "bad record"])
def test_a_refused_resume_changes_nothing(finished_run: Path, refusal: str) -> None:
    """Refused for a driver already running or for a bad trial record, ``launch --resume``
    with ``--set`` leaves the run byte for byte as it was: sweep.toml, the lock file and its
    holder, results/ (a junk fragment is not quarantined), trials/."""
    (finished_run / "results" / "part-junk.parquet").write_bytes(b"PAR1 not really")
    record = finished_run / "trials" / "t0001.json"
    if refusal == "bad record":
        record.write_text("{not json")
        lock = None
    else:
        lock = RunDir(finished_run).acquire_driver_lock()
    try:
        before = snapshot(finished_run)
        result = kdsweep("launch", "--resume", str(finished_run), "--set", "num_trials=7", "--no-live")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert ("not already being driven" if lock else f"{record}: (content)") in result.stderr
        assert snapshot(finished_run) == before
    finally:
        if lock is not None:
            lock.close()


def test_every_bad_trial_record_is_one_message_naming_its_file_field_and_value(finished_run: Path) -> None:
    """A record that is not UTF-8, not JSON, or well-formed JSON with a bad field: each
    reading or driving command says which file, which field, the value and what is allowed,
    with exit code 2 and one line per problem."""
    record = finished_run / "trials" / "t0001.json"
    good = json.loads(record.read_text())
    # Each case: the file's content, then per expected line the parts it contains.
    cases: list[tuple[bytes, list[str | tuple[str, ...]]]] = [
        (json.dumps({**good, "params": {}, "attempt": "x"}).encode(), ["params = {}: values for exactly the sweep's parameters lr, momentum, width", "attempt = 'x': an integer from 0 to 2147483647"]),
        (json.dumps({**good, "trial_id": "../x"}).encode(), ["trial_id = '../x': the file's own name ('t0001')"]),
        (json.dumps({**good, "origin": "tpe", "params": {**good["params"], "lr": 5.0}}).encode(), [("params = {'lr': 5.0, ", "values inside the sweep's space for a proposed trial (lr outside)")]),
        (json.dumps({**good, "until_epoch": 0, "stage": "final", "extra": 1}).encode(), ["extra = 1: unknown field", "until_epoch = 0: null or an integer from 1 to 1000000", "stage = 'final'"]),
        (json.dumps({k: v for k, v in good.items() if k != "origin"}).encode(), ["origin = (missing): one of fixed, tpe, random, gp, ga"]),
        (b"[1, 2]", ["(content) = [1, 2]: a JSON object"]),
        (b"{\"trial_id\": \"t0001\xff\"}", ["(encoding) = 'byte 19 (0xff)': UTF-8 text"]),
    ]
    for content, expected in cases:
        record.write_bytes(content)
        for args in (["status", str(finished_run)], ["report", str(finished_run)], ["launch", "--resume", str(finished_run), "--no-live"]):
            result = kdsweep(*args)
            assert result.returncode == 2, (content, args, result.stderr)
            lines = result.stderr.splitlines()
            assert lines[0] == "error: invalid input" and len(lines) == 1 + len(expected), (content, result.stderr)
            for line, wanted in zip(lines[1:], expected):
                parts = (wanted,) if isinstance(wanted, str) else wanted
                assert line.startswith(f"  {record}: ") and all(w in line for w in parts) and "move it out of the run" in line, (content, line)


def test_an_output_path_or_run_folder_that_is_a_file_is_an_input_error(finished_run: Path, tmp_path: Path) -> None:
    """One check for every output file a command writes, and for the run's own folders: a
    path under a regular file, or results/ or trials/ replaced by a file, is exit code 2 with
    a message naming the path and what to do, and nothing is written."""
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    for option, name in (("--tendencies", "t.csv"), ("--optuna", "j.log")):
        result = kdsweep("export", str(finished_run), option, str(a_file / name))
        assert result.returncode == 2 and f"{option} = '{a_file / name}': a file in an existing directory ({a_file} is a file)" in result.stderr, result.stderr
    result = kdsweep("report", str(finished_run), "--html", str(a_file / "r.html"))
    assert result.returncode == 2 and f"({a_file} is a file)" in result.stderr
    for folder, commands in (("results", [["status"], ["report"], ["compact"], ["launch", "--no-live", "--resume"]]), ("trials", [["launch", "--no-live", "--resume"], ["status"]])):
        run = tmp_path / f"no-{folder}"
        shutil.copytree(finished_run, run, symlinks=True)
        shutil.rmtree(run / folder)
        (run / folder).write_text("not a directory")
        before = snapshot(run)
        for command in commands:
            result = kdsweep(*command, str(run))
            assert result.returncode == 2, (command, result.stderr)
            assert f"{run / folder}: (layout) = 'not a directory': the directory of the run's" in result.stderr and "restore the directory" in result.stderr
            assert "Traceback" not in result.stderr
        assert snapshot(run) == before


def bad_inputs(tmp_path: Path, sweep_file: Path, finished_run: Path) -> list[tuple[str, list[str], str]]:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(SMALL_SWEEP.replace('name = "small"', 'name = "sm\xe4ll"').encode("latin-1"))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    record = finished_run / "trials" / "t0002.json"
    record.write_text("{not json")
    new = str(tmp_path / "o4")
    return [
        ("latin1", ["launch", str(latin1), "--out", str(tmp_path / "o1")], f"{latin1}: (encoding)"),
        ("out-is-file", ["launch", str(sweep_file), "--out", str(a_file)], "is an existing file"),
        ("out-under-file", ["launch", str(sweep_file), "--out", str(a_file / "run")], f"{a_file} is a file"),
        ("corrupt-record", ["launch", "--resume", str(finished_run), "--no-live"], f"{record}: (content)"),
        ("huge-budget", ["launch", str(sweep_file), "--out", str(tmp_path / "o2"), "--set", f"num_trials={10**12}"], "--set: num_trials = 1000000000000: an integer from 1 to 10000000"),
        ("huge-budget-option", ["launch", str(sweep_file), "--out", new, "--num-trials", str(10**12)], "--num-trials: num_trials = 1000000000000: an integer from 1 to 10000000"),
        ("negative-sleep", ["launch", str(sweep_file), "--out", new, "--set", "settings.sleep_s=-1"], "--set: settings.sleep_s = -1.0: a number >= 0"),
        ("infinite-sleep", ["launch", str(sweep_file), "--out", new, "--set", "settings.sleep_s=inf"], "--set: settings.sleep_s = inf: must be a finite number"),
        ("nan-sleep", ["launch", str(sweep_file), "--out", new, "--set", "settings.sleep_s=nan"], "--set: settings.sleep_s = nan: must be a finite number"),
        ("infinite-limit", ["launch", str(sweep_file), "--out", new, "--set", "settings.max_width=-inf"], "--set: settings.max_width = -inf: must be a finite number or none"),
        ("huge-concurrency", ["launch", str(sweep_file), "--out", new, "--max-concurrent", "100000000"], "--max-concurrent: backend.max_concurrent = 100000000: an integer from 1 to 10000"),
        ("huge-epochs", ["launch", str(sweep_file), "--out", new, "--set", "asha.max_epochs=100000000000"], "--set: asha.max_epochs = 100000000000: an integer from asha.min_epochs (1) to 1000000"),
        ("huge-workers", ["simulate", "--out", new, "--workers", "20000"], "--workers: backend.max_concurrent = 20000: an integer from 1 to 10000"),
        ("zero-top", ["report", str(finished_run), "--top", "0"], "--top = 0: an integer >= 1"),
        ("negative-top", ["launch", str(sweep_file), "--out", new, "--top", "-1"], "--top = -1: an integer >= 1"),
        ("bad-bytes", ["launch", str(sweep_file), "--out", str(tmp_path / "o3"), "--set", "name=a\udcffb"], "not UTF-8"),
    ]


def test_every_bad_input_is_one_message_with_exit_code_2_and_nothing_written(sweep_file: Path, tmp_path: Path, finished_run: Path) -> None:
    for label, args, expected in bad_inputs(tmp_path, sweep_file, finished_run):
        listing = sorted(tmp_path.rglob("*"))
        if label == "bad-bytes":  # an argument whose bytes are not UTF-8 (surrogate-escaped)
            env = {**os.environ, "COLUMNS": "200"}
            result = subprocess.run([os.fsencode(a) for a in cli(*args)], env=env, capture_output=True, text=True)
        else:
            result = kdsweep(*args)
        assert result.returncode == 2, (label, result.stdout, result.stderr)
        assert expected in result.stderr, (label, result.stderr)
        assert "Traceback" not in result.stderr, label
        assert sorted(tmp_path.rglob("*")) == listing, label


def test_out_on_a_read_only_file_system_is_an_input_error(sweep_file: Path, tmp_path: Path, read_only: callable) -> None:  # type: ignore[valid-type]
    (tmp_path / "src").mkdir()
    ro = read_only(tmp_path / "src")
    result = kdsweep("launch", str(sweep_file), "--out", str(ro / "run"))
    assert result.returncode == 2 and "--out" in result.stderr and "Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr and not any((tmp_path / "src").iterdir())


def test_a_full_disk_stops_the_sweep_with_a_message_and_resume_finishes_it(sweep_file: Path, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "400k") as disk:
        run = disk / "run"
        full = kdsweep("launch", str(sweep_file), "--out", str(run), "--no-live", "--set", "num_trials=40")
        assert full.returncode == 1, full.stderr
        assert f"no space left on the file system mounted at {disk}" in full.stderr
        assert f"continue with: kdsweep launch --resume {run}" in full.stderr
        assert "Traceback" not in full.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = kdsweep("launch", "--resume", str(run), "--no-live")
        assert resumed.returncode == 0, resumed.stderr
        assert_nothing_repeated(run, 40)


def test_a_corrupt_fragment_is_quarantined_at_the_next_launch(finished_run: Path) -> None:
    junk = finished_run / "results" / "part-junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    with pytest.raises(pa.ArrowException):
        pq.read_table(finished_run / "results")
    resumed = kdsweep("launch", "--resume", str(finished_run), "--no-live")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("part-junk.parquet") == 1 and "quarantine" in resumed.stderr
    assert (finished_run / "quarantine" / "part-junk.parquet").read_bytes() == b"PAR1 not really"
    assert pq.read_table(finished_run / "results").num_rows > 0


def test_compact_says_what_it_moved_to_quarantine(finished_run: Path) -> None:
    """Each file moved once, with its reason (instead of the store's warning that it will
    be moved); --debug is taken after the command too."""
    junk = finished_run / "results" / "part-junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    result = kdsweep("compact", str(finished_run), "--debug")
    assert result.returncode == 0, result.stderr
    moved = [line for line in result.stdout.splitlines() if line.startswith("moved ")]
    assert moved == [line for line in moved if line.startswith(f"moved {junk} to {finished_run / 'quarantine' / 'part-junk.parquet'} (reason beside it in part-junk.parquet.reason): not a readable Parquet file")]
    assert len(moved) == 1 and "part-junk" not in result.stderr
    reason = (finished_run / "quarantine" / "part-junk.parquet.reason").read_text()
    assert reason.strip() in moved[0]
    assert pq.read_table(finished_run / "results").num_rows > 0


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/kdsweep-pwned",))


def test_a_malicious_checkpoint_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "t0000.pt"
    torch.save({"trainer": _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "weights_only" not in str(caught.value)
    assert not Path("/tmp/kdsweep-pwned").exists()


def test_a_setting_added_since_a_run_began_does_not_make_it_look_edited(tmp_path: Path) -> None:
    """A run frozen by a kdsweep without ``settings.epoch_s_spread`` (as a run of any older
    version lacks settings added since) still loads, and its rows keep its recorded hash."""
    import json

    import tomllib

    from kdsweep.orchestrator.config import _hash, to_toml

    cfg = load_sweep_text(SMALL_SWEEP, "small")
    run = RunDir.create(tmp_path / "old", cfg)
    text = "\n".join(line for line in run.frozen.read_text().splitlines() if not line.startswith("epoch_s_spread"))
    run.frozen.write_text(text + "\n")
    core = {k: v for k, v in tomllib.loads(text).items() if k not in ("backend", "num_trials")}
    old_hash = _hash(tomllib.loads(to_toml(core)))
    run.meta.write_text(json.dumps({**json.loads(run.meta.read_text()), "config_hash": old_hash}))
    loaded = run.load_config()
    assert loaded.config_hash == old_hash and loaded.settings.epoch_s_spread == 0.5
    run.frozen.write_text(text.replace("seed = 3", "seed = 4") + "\n")
    with pytest.raises(Exception, match="unchanged since the run began"):
        run.load_config()
