"""The run directory: its paths, its frozen config, and the trial records.

The layout itself is ``orchestrator/layout.py``.

Trial records exist so that a trial proposed by a driver that was then killed is resumed
with the same id and parameters instead of being proposed again: "no lost and no
duplicated trial". Every file here is written with ``atomic.write_atomic``. Reading a run
(``kdsweep report``, ``status``) needs no write access: no lock is taken for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.config import (
    MAX_EPOCHS,
    MISSING,
    RESUMABLE_FIELDS,
    PATH_ROOM,
    ConfigError,
    ConfigIssue,
    SweepConfig,
    load_sweep_text,
    parse_override,
    path_problem,
    to_toml,
)
from kdsweep.orchestrator import layout
from kdsweep.orchestrator.atomic import PlantedLinkError, open_lock, read_bytes, real_dir, write_atomic
from kdsweep.orchestrator.search_options import OPTION_NAMES, SEARCHER_OPTIONS, SEARCHERS
from kdsweep.orchestrator.schema import Stage, kdsweep_version
from kdsweep.orchestrator.space import Codec


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """What the driver decided about a trial, independent of what it has reported."""

    trial_id: str
    params: Mapping[str, Any]
    origin: str
    #: Crashed attempts so far; the next attempt has this index.
    attempt: int = 0
    #: Train up to this epoch, then pause (promote variant); None: to ``max_epochs``. In the
    #: final stage: the epoch budget of the run.
    until_epoch: int | None = None
    #: "search" (a trial of the sweep) or "final" (a ``kdsweep retrain`` run).
    stage: str = "search"


def _without_stale_options(text: str) -> str:
    """A frozen sweep file's ``text`` without the searcher options its searcher does not take.

    Before options were checked per searcher, every frozen file got ``n_startup_trials`` (a
    random search ignored it); such a run must still resume. Its hash is taken over the file
    as written (``load_config``), so dropping the key here hides no edit.
    """
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return text  # load_sweep_text reports it
    searcher = doc.get("searcher")
    takes = SEARCHER_OPTIONS.get(searcher) if isinstance(searcher, str) else None
    stale = [k for k in OPTION_NAMES if k in doc and takes is not None and k not in takes]
    return to_toml({k: v for k, v in doc.items() if k not in stale}) if stale else text


class RunDir:
    """Paths and records of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.results = self.path / layout.RESULTS
        self.trials = self.path / layout.TRIALS
        self.final = self.path / layout.FINAL
        self.checkpoints = self.path / layout.CHECKPOINTS
        self.cache = self.path / layout.CACHE
        self.frozen = self.path / layout.FROZEN
        self.meta = self.path / layout.META
        self.warm_start = self.path / layout.WARM_START
        self.lock = self.path / layout.DRIVER_LOCK
        self.report_html = self.path / layout.REPORT_HTML

    @classmethod
    def create(cls, path: str | os.PathLike[str], cfg: SweepConfig, warm_start: bytes | None = None) -> RunDir:
        """Make a new run directory holding the frozen config and, for a warm start, the
        observations its searcher starts from (``warm_start`` as ``warm_start.WarmStart.
        to_bytes`` gives them). Refuses a non-empty directory and a path that cannot be a
        directory or cannot be written (ConfigError naming ``--out``); on any failure,
        nothing it created is left behind."""
        run = cls(path)
        # Before any file system call: exists() itself raises for a name that is too long.
        problem = path_problem(run.path, PATH_ROOM)
        if problem is not None:
            raise ConfigError([ConfigIssue("--out", "(run directory)", str(run.path), problem)])
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError([ConfigIssue("--out", "(run directory)", str(run.path), "a directory to create; this path is an existing file")])
        if run.path.is_dir() and any(run.path.iterdir()):
            raise ConfigError([ConfigIssue("--out", "(run directory)", str(run.path), "an empty or new directory (use --resume to continue a run)")])
        # The outermost directory this call creates: removed again if anything fails.
        created = run.path
        while not created.parent.exists() and created.parent != created:
            created = created.parent
        fresh = not created.exists()
        try:
            for d in (run.path, run.results, run.trials, run.checkpoints, run.cache):
                d.mkdir(parents=True, exist_ok=True)
            # Before the files that make it a run (``is_run``): a create killed half-way
            # leaves no run that would start cold.
            if warm_start is not None:
                write_atomic(run.warm_start, warm_start)
            write_atomic(run.frozen, to_toml(cfg.document).encode())
            meta = {
                "config_hash": cfg.config_hash,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "kdsweep_version": kdsweep_version(),
                "source": cfg.source,
            }
            write_atomic(run.meta, json.dumps(meta, indent=2).encode())
        except BaseException as exc:  # a signal's SystemExit too: nothing half-made stays
            if fresh:
                shutil.rmtree(created, ignore_errors=True)
            else:
                for d in (run.results, run.trials, run.checkpoints, run.cache):
                    shutil.rmtree(d, ignore_errors=True)
                for f in (run.frozen, run.meta, run.warm_start):
                    f.unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            blocked = next((str(p) for p in [run.path, *run.path.parents] if p.exists() and not p.is_dir()), None)
            why = f"a path under a directory; {blocked} is a file" if blocked else f"a directory this user can create and write ({exc.strerror})"
            raise ConfigError([ConfigIssue("--out", "(run directory)", str(run.path), why)]) from None
        return run

    def is_run(self) -> bool:
        return self.frozen.is_file() and self.meta.is_file()

    def load_config(self, overrides: Sequence[str] = ()) -> SweepConfig:
        """The frozen config, with resume-time overrides of ``RESUMABLE_FIELDS`` only.

        Raises ConfigError if the directory is not a run, an override touches the experiment
        itself, or sweep.toml was edited since the run began (its hash no longer matches).
        """
        if not self.is_run():
            raise ConfigError([ConfigIssue(str(self.path), "(run directory)", str(self.path), f"a run directory made by 'kdsweep launch' (with {layout.FROZEN} and {layout.META})")])
        issues = []
        for item in overrides:
            keys, _ = parse_override(item)
            if keys[0] not in RESUMABLE_FIELDS:
                issues.append(ConfigIssue("--set", ".".join(keys), item, f"only {', '.join(RESUMABLE_FIELDS)} can change on resume; start a new run to change the experiment"))
        if issues:
            raise ConfigError(issues)
        text = _read_text(self.frozen)
        cfg = load_sweep_text(_without_stale_options(text), str(self.frozen), overrides)
        # The experiment is the frozen file as written, not as this version of kdsweep would
        # normalise it: a setting added since (with its default) must not make an old run
        # look edited, nor change the hash its new rows carry.
        legacy = cfg.legacy_hash
        frozen = tomllib.loads(text)
        document = {k: v for k, v in frozen.items() if k not in RESUMABLE_FIELDS}
        document.update({k: cfg.document[k] for k in RESUMABLE_FIELDS if k in cfg.document})
        cfg = dataclasses.replace(cfg, document=document)
        meta = _read_text(self.meta)  # its own message for a link or an unreadable file
        try:
            expected = json.loads(meta)["config_hash"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError([ConfigIssue(str(self.meta), "config_hash", "(unreadable)", "a run.json written by 'kdsweep launch'; restore it from a copy of the run")]) from None
        # A run made by kdsweep 0.1 recorded the hash of its normalised document.
        if cfg.config_hash != expected and expected != legacy:
            raise ConfigError([ConfigIssue(str(self.frozen), "(content)", cfg.config_hash, f"unchanged since the run began (hash {expected}); start a new run instead of editing it")])
        return cfg

    # -- trial records ---------------------------------------------------------------

    def _records(self, stage: str) -> Path:
        return self.final if stage == "final" else self.trials

    def write_trial(self, record: TrialRecord) -> None:
        folder = self._records(record.stage)
        real_dir(folder)
        write_atomic(folder / f"{record.trial_id}.json", json.dumps(dataclasses.asdict(record)).encode())

    def read_trials(self, stage: str = "search", cfg: SweepConfig | None = None) -> dict[str, TrialRecord]:
        """All trial records of ``stage``, by id in creation order.

        Every record is checked as the driver and the reports will use it (see
        :func:`_parse_record`); with ``cfg``, its parameters are also checked against the
        sweep's space. Raises ConfigError naming every bad record file, its field, the value
        and what is allowed. Reads only.
        """
        records, issues = [], []
        folder = self._records(stage)
        # Built once, not per record: a choice's codec scans its values (10 000 records of a
        # 4-parameter space spent a third of a second re-building them).
        codecs = None if cfg is None else {spec.name: Codec.of(spec) for spec in cfg.space}
        if folder.is_dir():
            for p in folder.glob("*.json"):
                record, problems = _parse_record(p, stage, codecs)
                issues += problems
                if record is not None:
                    records.append(record)
        if issues:
            raise ConfigError(sorted(issues, key=lambda i: i.source))
        records.sort(key=lambda r: trial_order(r.trial_id))
        return {r.trial_id: r for r in records}

    def check_trials(self, cfg: SweepConfig) -> None:
        """Read every trial record of both stages against ``cfg`` (:meth:`read_trials`), so
        that a command refuses a run with a bad record before it writes anything; ConfigError
        lists every problem."""
        issues = []
        for stage in (Stage.SEARCH.value, Stage.FINAL.value):
            try:
                self.read_trials(stage, cfg)
            except ConfigError as exc:
                issues += exc.issues
        if issues:
            raise ConfigError(issues)

    def layout_issues(self) -> list[ConfigIssue]:
        """The run's folders (results/, trials/, ...) that exist but are not directories, or
        are symbolic links (which may point out of the run): a command would fail on them
        half-way or write elsewhere; each issue says what to do."""
        issues = []
        for name, holds in _FOLDERS.items():
            path = self.path / name
            if path.is_symlink():
                issues.append(ConfigIssue(str(path), "(layout)", f"a symbolic link to {os.readlink(path)}", f"the directory of the run's {holds} itself (kdsweep never writes through a link in a run directory); remove the link and restore the directory from a copy of the run"))
            elif path.exists() and not path.is_dir():
                issues.append(ConfigIssue(str(path), "(layout)", "not a directory", f"the directory of the run's {holds}; move this file away and restore the directory from a copy of the run"))
        return issues

    # -- the driver lock -----------------------------------------------------------------

    def acquire_driver_lock(self) -> DriverLock:
        """Hold the run's driver lock until the returned lock is closed (or the process ends,
        ``kill -9`` included). A second driver on the same run gets ConfigError naming the
        holder; a symbolic link planted as ``.driver.lock`` gets PlantedLinkError.

        The lock is an exclusive ``flock`` on the run directory itself, which nobody can
        delete from under it while the run lives: a lock on a file would end the day someone
        removes the "stale" file, and a second driver would then run the same sweep beside
        the first. Where the file system refuses a lock on a directory (NFS emulates
        ``flock`` with byte-range locks, which need a file open for writing) the lock is on
        ``.driver.lock`` itself, opened without following a link. ``.driver.lock`` holds who
        drives (``pid N on HOST``).
        """
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        on_file = False
        try:
            locked = _try_lock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_DIRECTORY_LOCK:
                raise
            fd, on_file = open_lock(self.lock), True
            try:
                locked = _try_lock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        lock = DriverLock(fd)
        try:
            if not locked:
                raise self._driven()
            # Written in place, not renamed over: where the lock is on this file, a new file
            # would leave the lock on a name nobody can open any more.
            info = fd if on_file else open_lock(self.lock)
            try:
                os.ftruncate(info, 0)
                os.pwrite(info, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
            finally:
                if not on_file:
                    os.close(info)
        except BaseException:
            lock.close()
            raise
        return lock

    def _driven(self) -> ConfigError:
        holder = self._holder_text() or "unknown"
        return ConfigError([ConfigIssue(str(self.path), "(run directory)", f"driver {holder}", "not already being driven; wait for that driver or stop it")])

    def _holder_text(self) -> str | None:
        """What ``.driver.lock`` says (never read through a link), or None."""
        try:
            fd = os.open(self.lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
                return fh.read(200).strip() or None
        except OSError:  # none, a link, a directory in its place: it says nothing
            return None

    def driver_holder(self) -> str | None:
        """Who holds the driver lock, or None when no driver is running. Needs only read
        access: it tries a shared lock on a read-only handle of what a driver locks (the run
        directory, or ``.driver.lock`` where directories cannot be locked), which a driver's
        exclusive lock refuses; a lock this user cannot take says nothing, and counts as none."""
        for path, flags in ((self.path, os.O_DIRECTORY), (self.lock, os.O_NOFOLLOW)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
            except OSError:
                continue
            try:
                if not _try_lock(fd, fcntl.LOCK_SH):
                    return self._holder_text() or "unknown"
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                continue
            finally:
                os.close(fd)
        return None


class DriverLock:
    """The driver lock of one run (:meth:`RunDir.acquire_driver_lock`), held until
    :meth:`close`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> DriverLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: errno values of a file system that cannot ``flock`` a directory (NFS: EBADF).
_NO_DIRECTORY_LOCK = (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP)


def _try_lock(fd: int, kind: int) -> bool:
    """Take ``flock`` lock ``kind`` on ``fd`` without waiting: False when another process
    holds a conflicting one; other errors propagate."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_text(path: Path, remedy: str = "restore it from a copy of the run") -> str:
    """A run file's text; ConfigError naming it, what it must be and ``remedy`` when it is
    not UTF-8 or cannot be read."""
    try:
        return read_bytes(path).decode("utf-8")
    except PlantedLinkError as exc:
        raise ConfigError([ConfigIssue(str(path), "(file)", "a symbolic link", f"{exc.strerror}; {remedy}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(str(path), "(encoding)", f"byte {exc.start} ({exc.object[exc.start]:#04x})", f"UTF-8 text written by kdsweep; {remedy}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), "(file)", exc.strerror, f"a readable file written by kdsweep; {remedy}")]) from None


#: The run's folders and what each holds (:meth:`RunDir.layout_issues`).
_FOLDERS = {
    layout.RESULTS: "results (Parquet)",
    layout.TRIALS: "trial records",
    layout.FINAL: "retraining records",
    layout.CHECKPOINTS: "checkpoints",
    layout.CACHE: "shared cache",
    layout.QUARANTINE: "quarantined result files",
    layout.SLURM: "SLURM job files",
}

#: What to do about a bad run file: the one remedy every record message ends with.
_RESTORE = "restore it from a copy of the run, or move it out of the run to drop that trial's record (its results stay)"

#: A trial id per stage: ``t<index>`` (at least 4 digits), and ``<source>.r<repeat>`` for
#: ``kdsweep retrain``'s runs.
_IDS = {Stage.SEARCH.value: re.compile(r"t[0-9]{4,}"), Stage.FINAL.value: re.compile(r"t[0-9]{4,}\.r[0-9]+")}
_ID_FORMS = {Stage.SEARCH.value: "t0000, t0001, ...", Stage.FINAL.value: "<trial>.r<repeat>, e.g. t0003.r0"}

#: The store's ``attempt`` column is a 32-bit integer.
_MAX_ATTEMPT = 2**31 - 1


def _parse_record(path: Path, stage: str, codecs: Mapping[str, Codec] | None) -> tuple[TrialRecord | None, list[ConfigIssue]]:
    """The record in ``path`` (a file under ``stage``'s folder) and the problems found.

    A record is a JSON object with the fields of :class:`TrialRecord`: ``trial_id`` the
    file's own name and of the stage's form, ``params`` an object of scalars, ``origin``
    "fixed" or a searcher's name, ``attempt`` from 0, ``until_epoch`` null or from 1 to
    ``MAX_EPOCHS``, ``stage`` the folder's. With ``codecs`` (the sweep's space, by
    parameter), ``params`` names exactly the space's parameters, and a proposed (not "fixed")
    trial's values lie inside the space, as the searcher that replays it requires. Returns
    (None, issues) when any is found.
    """
    try:
        doc = json.loads(_read_text(path, _RESTORE))
    except ConfigError as exc:
        return None, exc.issues
    except ValueError as exc:
        return None, [ConfigIssue(str(path), "(content)", f"not JSON: {exc}", f"a trial record written by kdsweep; {_RESTORE}")]
    if not isinstance(doc, dict):
        return None, [ConfigIssue(str(path), "(content)", doc, f"a JSON object (a trial record written by kdsweep); {_RESTORE}")]
    issues: list[ConfigIssue] = []

    def bad(field: str, allowed: str) -> None:
        issues.append(ConfigIssue(str(path), field, doc.get(field, MISSING), f"{allowed}; {_RESTORE}"))

    names = [f.name for f in dataclasses.fields(TrialRecord)]
    for key in doc:
        if key not in names:
            bad(key, f"unknown field; a record has {', '.join(names)}")
    tid = doc.get("trial_id")
    if not (isinstance(tid, str) and _IDS[stage].fullmatch(tid) and tid == path.stem):
        bad("trial_id", f"the file's own name ({path.stem!r}), a {stage} trial id ({_ID_FORMS[stage]})")
    params = doc.get("params")
    if not (isinstance(params, dict) and all(isinstance(v, (str, int, float)) for v in params.values())):
        bad("params", "an object of parameter values (numbers, strings, booleans)")
    elif codecs is not None:
        if sorted(params) != sorted(codecs):
            bad("params", f"values for exactly the sweep's parameters {', '.join(codecs)}")
        elif doc.get("origin") != "fixed":
            outside = [name for name, codec in codecs.items() if not codec.contains(params[name])]
            if outside:
                bad("params", f"values inside the sweep's space for a proposed trial ({', '.join(outside)} outside)")
    origins = ("fixed", *SEARCHERS)
    if doc.get("origin") not in origins:
        bad("origin", f"one of {', '.join(origins)}")
    attempt = doc.get("attempt", 0)
    # type() rather than isinstance: JSON's true is no attempt count.
    if not (type(attempt) is int and 0 <= attempt <= _MAX_ATTEMPT):
        bad("attempt", f"an integer from 0 to {_MAX_ATTEMPT}")
    until = doc.get("until_epoch")
    if until is not None and not (type(until) is int and 1 <= until <= MAX_EPOCHS):
        bad("until_epoch", f"null or an integer from 1 to {MAX_EPOCHS}")
    if doc.get("stage", Stage.SEARCH.value) != stage:
        bad("stage", f"{stage!r}, the stage of the folder it is in")
    if issues:
        return None, issues
    return TrialRecord(**doc), []


def trial_id_of(index: int) -> str:
    return f"t{index:04d}"


def trial_index(trial_id: str) -> int:
    return int(trial_id[1:])


def final_id(source: str, repeat: int) -> str:
    """Id of repeat ``repeat`` of ``kdsweep retrain`` for search trial ``source``."""
    return f"{source}.r{repeat}"


def source_of(trial_id: str) -> str:
    """The search trial a final-stage id retrains (the id itself for a search trial)."""
    return trial_id.split(".r")[0]


def trial_order(trial_id: str) -> tuple[int, int]:
    """Sort key: creation order of search trials; final runs by source, then repeat."""
    source, _, repeat = trial_id.partition(".r")
    return trial_index(source), int(repeat or -1)
