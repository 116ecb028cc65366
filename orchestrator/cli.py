"""The ``kdsweep`` command: parse, call, render. Logic lives in the modules it calls.

Exit codes: 0 success; 2 bad input (config, arguments, not a run directory, a path that
cannot be written), with every problem named; 1 a failure of the machine or the cluster (a
full disk, a lost Ray cluster), with how to continue; 128 + N when signal N stopped a
driver — 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (the run stays resumable). A traceback is
printed only with ``--debug`` or ``KDSWEEP_DEBUG=1``.
"""

from __future__ import annotations

# Before the imports below, which take a second or more: a signal in that second must end
# the command as one later does (a message and 128 + N), not silently.
import signal
import sys
import threading

#: The run being driven and the command that continues it, for messages about stopping early.
_driving: tuple[Path, str] | None = None
#: True while the driver runs: a signal then unwinds it (:class:`Interrupted`), stopping its
#: attempts; at any other time there is nothing to stop and the command ends at once.
_unwinding = False


#: The signal that ended the command outside the driver, once its message is printed.
_stopped_by: int | None = None


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT, SIGTERM and SIGHUP (Ctrl-C, a scheduler, ``timeout``, a closed SSH session)."""
    global _stopped_by
    if _unwinding:
        raise Interrupted(signum)
    # _driving is set once the run exists, long after this module imported ``visible``.
    again = f"; continue with: {visible(_driving[1])}" if _driving is not None else ""
    sys.stderr.write(f"interrupted ({signal.Signals(signum).name}){again}\n")
    _stopped_by = signum
    raise SystemExit(128 + signum)


def _stop_if_signalled() -> None:
    """End the command as :func:`_on_signal` meant to, where its SystemExit was swallowed: a
    signal that lands in an import's weakref callback is "ignored" by Python, and the command
    would run on (a whole sweep, exit 0). Called before the driver starts and at the end."""
    if _stopped_by is not None:
        raise SystemExit(128 + _stopped_by)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
    for _signum in _SIGNALS:
        signal.signal(_signum, _on_signal)

import dataclasses  # noqa: E402 - after the signal handlers, see above
import datetime as dt
import errno
import logging
import os
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from kdsweep.orchestrator import layout
from kdsweep.orchestrator.atomic import PlantedLinkError, unusable_output, write_atomic
from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig, load_sweep, to_toml
from kdsweep.orchestrator.rundir import DriverLock, RunDir, TrialRecord, source_of, trial_order
from kdsweep.orchestrator.safe_text import plain, visible

if TYPE_CHECKING:
    from kdsweep.orchestrator.summary import RunSummary

_DEBUG_HELP = "Show the traceback of any error (also KDSWEEP_DEBUG=1)."


def _set_debug(ctx: Any, param: Any, value: bool) -> None:
    """The ``--debug`` option's callback, wherever it is given (it never unsets the flag)."""
    global _debug
    _debug = _debug or value


class _Commands(TyperGroup):
    """The top command group: every command below it also takes the group's ``--debug``
    after its name (``kdsweep compact RUN --debug``), as well as before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The group's own option object, built by typer from ``_options``: its callback sets
        # the flag wherever it is parsed.
        debug = [p for p in self.params if p.name == "debug"]
        todo = list(self.commands.values())
        while todo:
            command = todo.pop()
            command.params.extend(debug)
            if isinstance(command, TyperGroup):
                todo.extend(command.commands.values())


app = typer.Typer(
    help="Sweeps over knowledge-distillation experiments: hyperopt proposals, ASHA early "
    "stopping read from Parquet results, local / Ray / SLURM backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Commands,
)
console = Console()
if not console.is_terminal:
    # Piped or captured output has no width to fit; 80 columns would fold the tables.
    console.width = 200
# Soft wrap: an error line that a terminal folds stays one line for a script or a log to match.
err = Console(stderr=True, soft_wrap=True)


#: Set by ``--debug`` or ``KDSWEEP_DEBUG=1``: errors propagate with their traceback.
_debug = os.environ.get("KDSWEEP_DEBUG", "") not in ("", "0")

@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help=_DEBUG_HELP, is_eager=True, callback=_set_debug, expose_value=False)] = False) -> None:
    """Options of every command (``--debug``), set by their callback."""


def _fail(exc: ConfigError, typed: Mapping[str, str] | None = None) -> NoReturn:
    """Report every issue of ``exc`` and exit 2. ``typed`` maps a field to the option that set
    it (:func:`_overrides`): a problem with it is named by what the user typed."""
    typed = typed or {}
    relabelled = [dataclasses.replace(i, source=typed[i.field]) if i.source == "--set" and i.field in typed else i for i in exc.issues]
    raise typer.Exit(_report_error(ConfigError(relabelled)))


def _overrides(set_: Sequence[str] | None, options: Sequence[tuple[str, str, object]]) -> tuple[list[str], dict[str, str]]:
    """The ``--set`` items followed by one for each given option (``(option, field, value)``,
    None when not given), so that an option wins over a ``--set`` of its field; and each
    given option's field mapped to the option, for :func:`_fail`."""
    items, typed = list(set_ or []), {}
    for option, field, value in options:
        if value is not None:
            items.append(f"{field}={value}")
            typed[field] = option
    return items, typed


def _run_dir(path: Path) -> RunDir:
    """The run in ``path``; exit 2 with a message when it is not a run, or a folder of it is
    not a directory (a command would fail on it half-way)."""
    run = RunDir(path)
    if not run.is_run():
        _error(f"{path}: not a run directory (no sweep.toml and run.json; made by 'kdsweep launch')")
        raise typer.Exit(2)
    issues = run.layout_issues()
    if issues:
        _fail(ConfigError(issues))
    return run


@app.command()
def launch(
    sweep: Annotated[Optional[str], typer.Argument(help="Sweep file (TOML), or the name of an embedded one (e.g. 'synthetic'). Omit it to run the embedded demo.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory to create (default: runs/<name>-<UTC time>).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Where trials run: an installed backend, e.g. local, ray or slurm (overrides backend.kind).")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="Trials in flight at once (overrides backend.max_concurrent).")] = None,
    num_trials: Annotated[Optional[int], typer.Option("--num-trials", help="Trials to run in total (overrides num_trials).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field by dotted path, e.g. --set asha.max_epochs=81; the value is read as a TOML literal, else as a string. Repeatable.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this directory: nothing recorded is repeated or lost. Only backend.* and num_trials may change.")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Show the live progress view.")] = True,
    top: Annotated[int, typer.Option("--top", help="Rows of the leaderboard printed at the end.")] = 10,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate, print what would run (SLURM: the sbatch script of a trial job, checked with 'sbatch --test-only'; else the normalised sweep) and exit; creates and submits nothing.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Keep RUN_DIR/report.html, the self-contained HTML report, up to date while the sweep runs (at most every 30 s, and at the end).")] = False,
    warm_start_runs: Annotated[Optional[list[Path]], typer.Option("--warm-start", help="Start the searcher from this earlier run's completed and stopped trials that lie in the space, each at the run's first rung epoch (same trainer and metric). Repeatable.")] = None,
) -> None:
    """Run a sweep (or resume one), then print its report."""
    from kdsweep.orchestrator import warm_start
    from kdsweep.orchestrator.report import render_table, summarize

    options = [("--backend", "backend.kind", backend), ("--max-concurrent", "backend.max_concurrent", max_concurrent), ("--num-trials", "num_trials", num_trials)]
    overrides, typed = _overrides(set_, options)
    try:
        if top < 1:
            raise ConfigError([ConfigIssue("command line", "--top", top, "an integer >= 1")])
        if resume is not None:
            if sweep is not None:
                raise ConfigError([ConfigIssue("command line", "SWEEP", sweep, "omit the sweep file with --resume: the run directory holds its frozen copy")])
            if warm_start_runs:
                raise ConfigError([ConfigIssue("command line", warm_start.OPTION, ", ".join(map(str, warm_start_runs)), f"not with --resume: a run keeps the observations it started from ({layout.WARM_START})")])
            run = _run_dir(resume)
            cfg = run.load_config(overrides)
            # Every record is read as the driver will, before anything is written: a
            # refused command (a bad record, a bad --set, a driver already running) changes
            # nothing. The driver reads them again under the lock taken next, and so the
            # warm start's observations.
            run.check_trials(cfg)
            warm = warm_start.read(run, cfg)
            _check_num_trials(run, cfg, overrides)
            _check_backend(cfg, run.path, dry_run)
            lock = run.acquire_driver_lock()
            if overrides:
                # Backend and budget may change on resume; the hash (the experiment) does not.
                write_atomic(run.frozen, to_toml(cfg.document).encode())
        else:
            cfg = load_sweep(sweep, overrides)
            # Resolved once, here, and kept in the run (warm_start.py): a bad path fails
            # before anything is created, a dry run included.
            warm = warm_start.resolve(cfg, warm_start_runs) if warm_start_runs else None
            out = out or _default_out(cfg)
            _check_backend(cfg, out, dry_run)
            run = RunDir.create(out, cfg, warm.to_bytes() if warm is not None else None)
            lock = run.acquire_driver_lock()
    except ConfigError as exc:
        _fail(exc, typed)
    global _driving
    again = f"kdsweep launch --resume {run.path}"
    _driving = (run.path, again)  # from here on, a signal's message says how to continue
    console.print(plain(f"run directory: {run.path}  ({cfg.num_trials} trials of {cfg.trainer}, {cfg.searcher}, ASHA {cfg.asha.variant}, backend {cfg.backend.kind})"))
    for source in warm.sources if warm is not None else ():
        console.print(plain(source.describe()))
    demo = sweep is None and resume is None
    # The demo writes the HTML page too: it is the quickest look at what a report shows.
    html = html or demo
    page = run.report_html
    refresher = None
    if html:
        from kdsweep.orchestrator.html_report import HtmlRefresher, write_html

        refresher = HtmlRefresher(run.path, page)
    _drive(cfg, run, lock, live, None, again, on_update=refresher)
    summary = summarize(str(run.path))
    if demo:
        summary = _demo_final_stage(cfg, run, summary, live)
    console.print(plain(f"results: {run.results} (Parquet; read with pyarrow, pandas, DuckDB or Polars)"))
    if html:
        try:
            write_html(summary, page)
            console.print(plain(f"html report: {page} (one self-contained file; open it in a browser, offline)"))
        except OSError as exc:  # the sweep is done and recorded: a page that cannot be written is not its failure
            warnings.warn(f"{page} not written ({exc.strerror}); write it later with: kdsweep report {run.path} --html {page}", stacklevel=1)
    # Last, so that the headline (does the search beat the baseline?) ends the output.
    render_table(summary, console, top=top)


def _check_num_trials(run: RunDir, cfg: SweepConfig, overrides: Sequence[str]) -> None:
    """ConfigError when a resumed run's ``num_trials`` is below the trials it has already
    started, counted as the driver counts them against the budget: every search trial record
    whose last result is not ``rejected``. The driver would start none and show "40 of 10
    trials". Reads the records and the store only."""
    from kdsweep.orchestrator.config import parse_override
    from kdsweep.orchestrator.schema import Event
    from kdsweep.orchestrator.store import Store, StoreWarning

    records = run.read_trials()
    with warnings.catch_warnings():
        # The driver reads the store next and warns about each file it skips: once is enough.
        warnings.simplefilter("ignore", StoreWarning)
        table = Store(run.path).table().select(["trial_id", "event"])
    # The driver's order (Store.rows), so the dict keeps each trial's last event as it sees it.
    last = dict(zip(table["trial_id"].to_pylist(), table["event"].to_pylist()))
    started = sum(last.get(tid) != Event.REJECTED.value for tid in records)
    if cfg.num_trials < started:
        given = any(parse_override(item)[0] == ["num_trials"] for item in overrides)
        source = "--set" if given else str(run.frozen)
        # Proposed but without a row yet (``status`` counts those with rows as started):
        # the resume runs them all the same.
        waiting = sum(tid not in last for tid in records)
        why = f"{started - waiting} started and {waiting} proposed, not yet run" if waiting else "trials already started"
        raise ConfigError([ConfigIssue(source, "num_trials", cfg.num_trials, f"at least {started} ({why}; a resume runs them all)")])


def _demo_final_stage(cfg: SweepConfig, run: RunDir, summary: RunSummary, live: bool) -> RunSummary:
    """The demo's final stage: the best searched configuration and every fixed point
    retrained ``headline.REPEATS`` times and tested on the held-out split, so that the demo
    ends with a headline that can say whether the search beat the baseline. Returns the
    run's summary after it (``summary`` unchanged when there is nothing to retrain)."""
    from kdsweep.orchestrator import headline
    from kdsweep.orchestrator.report import FIXED, summarize
    from kdsweep.orchestrator.retrain import plan_final

    best = next((t.trial_id for t in summary.trials if t.origin != FIXED and t.epochs > 0), None)
    fixed = [t.trial_id for t in summary.trials if t.origin == FIXED and t.epochs > 0]
    if best is None or not fixed:
        return summary
    plan = plan_final(run, summary, top=0, trials=[best, *fixed], repeats=headline.REPEATS, epochs=None)
    console.print(f"final stage: retraining {best} (the best searched configuration) and the fixed point{'s' if len(fixed) > 1 else ''} {', '.join(fixed)}, {headline.REPEATS} runs each, test split at the end", highlight=False)
    _drive(cfg, run, run.acquire_driver_lock(), live, plan, headline.retrain_command(summary, best, fixed))
    return summarize(str(run.path))


def _drive(
    cfg: SweepConfig, run: RunDir, lock: DriverLock, live: bool, plan: list[TrialRecord] | None, again: str, on_update: Callable[[Any], None] | None = None
) -> None:
    """Run the driver (the sweep, or with ``plan`` the final stage) on the configured backend,
    with the live view on a terminal; release the driver lock however it ends. ``again`` is
    the command that continues an interrupted run; ``on_update`` is called with the driver's
    snapshots too (after the live view's)."""
    from kdsweep.orchestrator.backends import make_backend
    from kdsweep.orchestrator.driver import Driver, RejectedSpaceError
    from kdsweep.orchestrator.live import LiveView

    global _driving
    _driving = (run.path, again)
    try:
        with _signals_interrupt():
            driver_backend = make_backend(cfg)
            if live and console.is_terminal:
                with LiveView() as view:

                    def update(snapshot: Any) -> None:
                        view.update(snapshot)
                        if on_update is not None:
                            on_update(snapshot)

                    Driver(cfg, run, driver_backend, plan=plan, on_update=update).run_sweep()
            else:
                Driver(cfg, run, driver_backend, plan=plan, on_update=on_update).run_sweep()
    except Interrupted as exc:
        # The backend was closed on the way out (the driver's finally): no attempt runs on.
        err.print(plain(f"interrupted ({exc.name}); every attempt stopped; continue with: {again}"))
        raise typer.Exit(128 + exc.signum) from None
    except (ConnectionError, RejectedSpaceError) as exc:  # the cluster went away / an untrainable space; resumable
        _error(str(exc))
        raise typer.Exit(1) from None
    finally:
        lock.close()
    _driving = None


class Interrupted(KeyboardInterrupt):
    """The driver was stopped by a signal; it unwinds as for Ctrl-C (attempts stopped)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While the driver runs, SIGINT, SIGTERM and SIGHUP unwind it (:class:`Interrupted`),
    closing the backend; the handlers are those installed at import (:func:`_on_signal`),
    installed again in case a library replaced one since."""
    global _unwinding
    _stop_if_signalled()
    for signum in _SIGNALS:
        signal.signal(signum, _on_signal)
    _unwinding = True
    try:
        yield
    finally:
        _unwinding = False


@app.command()
def retrain(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")],
    top: Annotated[int, typer.Option("--top", help="Retrain the best K configurations of the search (the leaderboard's order).")] = 1,
    trial: Annotated[Optional[list[str]], typer.Option("--trial", help="Also retrain this search trial (e.g. a baseline such as the all-through graph). Repeatable.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per configuration, each with its own seed.")] = 3,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs of each run (default: the sweep's asha.max_epochs).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Where runs go: an installed backend, e.g. local, ray or slurm (default: the run's backend).")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="Runs in flight at once.")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Show the live progress view.")] = True,
) -> None:
    """Retrain the best configurations for the full budget, R times each, and evaluate them
    on the held-out test split; report mean ± std. Rows go into the run's store marked
    stage = "final". Running it again resumes unfinished runs and skips finished ones."""
    from kdsweep.orchestrator import analyses, headline
    from kdsweep.orchestrator.report import render_final, summarize, trainer_section
    from kdsweep.orchestrator.retrain import plan_final

    overrides, typed = _overrides(None, [("--backend", "backend.kind", backend), ("--max-concurrent", "backend.max_concurrent", max_concurrent)])
    run = _run_dir(run_dir)
    try:
        cfg = run.load_config(overrides)
        # As for launch --resume: everything is checked before the lock and the rewrite.
        run.check_trials(cfg)
        plan = plan_final(run, summarize(str(run.path)), top=top, trials=list(trial or []), repeats=repeats, epochs=epochs)
        _check_backend(cfg, run.path, dry_run=False)
        lock = run.acquire_driver_lock()
        if overrides:
            write_atomic(run.frozen, to_toml(cfg.document).encode())
    except ConfigError as exc:
        _fail(exc, typed)
    sources = sorted({source_of(r.trial_id) for r in plan}, key=trial_order)
    console.print(f"retraining {', '.join(sources)}: {repeats} runs each, {plan[0].until_epoch} epochs, test split at the end (backend {cfg.backend.kind})", highlight=False)
    again = f"kdsweep retrain {run.path} --top {top} --repeats {repeats} --epochs {plan[0].until_epoch}" + "".join(f" --trial {t}" for t in trial or [])
    _drive(cfg, run, lock, live, plan, again)
    summary = summarize(str(run.path))
    render_final(summary, console)
    section = trainer_section(summary)
    if section is not None:
        section.render(summary, console)
    headline.render(summary, analyses.of(summary).significance_top(10), console)  # as a default report shows it


def _check_backend(cfg: SweepConfig, run_dir: Path, dry_run: bool) -> None:
    """Before anything is written: ask the backend whether it would take this sweep's trials
    (its ``BackendSpec.preflight``; SLURM: ``sbatch --test-only``, so a bad partition or time
    fails here, exit 2); with ``--dry-run``, print what would be submitted and exit 0."""
    from kdsweep.orchestrator.backends import backend_spec

    script = backend_spec(cfg.backend.kind).preflight(cfg, run_dir)
    if dry_run:
        sys.stdout.write(script if script is not None else to_toml(cfg.document))
        raise typer.Exit(0)


def _default_out(cfg: SweepConfig) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")],
    top: Annotated[int, typer.Option("--top", help="Leaderboard rows (table) or records (json/csv).")] = 10,
    format: Annotated[str, typer.Option("--format", help="table (terminal), json or csv (for scripts).")] = "table",
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the trainer's figure (e.g. the student-topology Pareto front and limit curve) into this PNG file.")] = None,
    html_path: Annotated[Optional[Path], typer.Option("--html", help="Also write the whole report as one self-contained HTML page (interactive figures; opens offline) into this file.")] = None,
) -> None:
    """Leaderboard, rung survival, final evaluation and the trainer's own section (Pareto
    front, best graphs) of a run; works while it runs."""
    from kdsweep.orchestrator.report import plot, plot_unavailable, render_table, summarize, to_csv, to_json

    if format not in ("table", "json", "csv"):
        _error(f"--format = {format!r}: one of table, json, csv")
        raise typer.Exit(2)
    run = _run_dir(run_dir)
    try:
        if top < 1:
            raise ConfigError([ConfigIssue("command line", "--top", top, "an integer >= 1")])
        # Checked before the store is read: a mistyped path fails at once, not after a large run's summary.
        _check_outputs([_Output("--html", html_path, ".html", run_file=layout.REPORT_HTML), _Output("--plot", plot_path, ".png")])
        summary = summarize(str(run.path))
        if plot_path is not None:
            why = plot_unavailable(summary)
            if why is not None:
                raise ConfigError([ConfigIssue("command line", "--plot", str(plot_path), why)])
    except ConfigError as exc:
        _fail(exc)
    if format == "json":
        sys.stdout.write(to_json(summary, top) + "\n")
    elif format == "csv":
        sys.stdout.write(to_csv(summary, top))
    else:
        render_table(summary, console, top=top)
    if plot_path is not None:
        plot(summary, plot_path)
        err.print(plain(f"plot: {plot_path}"))
    if html_path is not None:
        from kdsweep.orchestrator.html_report import write_html

        write_html(summary, html_path, top)
        err.print(plain(f"html report: {html_path}"))


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")]) -> None:
    """What is running, paused, stopped, failed; how far along the budget is."""
    from kdsweep.orchestrator.report import render_status, summarize

    run = _run_dir(run_dir)
    try:
        render_status(summarize(str(run.path)), console)
    except ConfigError as exc:
        _fail(exc)


@dataclasses.dataclass(frozen=True)
class _Output:
    """A file a command was asked to write: its ``option``, the ``path`` given (None: the
    option was not), the ``suffix`` its name must end in (None: any), whether an existing file
    may be replaced, and the one file of a run directory it may be (``run_file``, a name of
    ``layout``; None: none)."""

    option: str
    path: Path | None
    suffix: str | None = None
    replace: bool = True
    run_file: str | None = None


def _check_outputs(outputs: Sequence[_Output]) -> None:
    """ConfigError naming every given output that cannot be written (:func:`_unusable`): the
    one check of every path a user names for a command to write, made before any work."""
    issues = []
    for out in outputs:
        why = None if out.path is None else _unusable(out.path, out)
        if why is not None:
            issues.append(ConfigIssue("command line", out.option, str(out.path), why))
    if issues:
        raise ConfigError(issues)


def _unusable(path: Path, out: _Output) -> str | None:
    """Why ``path`` cannot be ``out``'s file (what it must be instead), or None.

    It must pass :func:`~kdsweep.orchestrator.atomic.unusable_output` (the suffix, a file in
    an existing directory this user can write); lie in no run directory (a replaced
    ``sweep.toml`` or a foreign file in ``results/`` would break the run for every later
    command), except as the run's own ``out.run_file``; and be new unless ``out.replace``.
    Where it lies is ``path`` with every symbolic link resolved (its directories', and its
    own when it is a link: the user meant its target; ``os.path.realpath`` leaves a link
    loop as it is); every directory above that is checked, so a file deep inside a run is
    refused too.
    """
    why = unusable_output(path, suffix=out.suffix)
    if why is not None:
        return why
    where = Path(os.path.realpath(path))
    run = next((d for d in where.parents if RunDir(d).is_run()), None)
    if run is not None and (out.run_file is None or where != run / out.run_file):
        only = f"; only its {out.run_file} may be written" if out.run_file is not None else ""
        return f"a file outside the run directory {run} (its files are the run's own{only})"
    if not out.replace and (path.exists() or path.is_symlink()):
        return "a new file, or --force to replace it"
    return None


@app.command()
def compact(run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")]) -> None:
    """Merge all the run's result fragments into one file, atomically, without changing a
    row; move the files no reader can use to RUN_DIR/quarantine/, and say which and why."""
    from kdsweep.orchestrator import store_maintenance
    from kdsweep.orchestrator.store import Store

    run = _run_dir(run_dir)
    store = Store(run.path)
    quarantine = run.path / layout.QUARANTINE
    # The store warns that an unusable file will be moved to quarantine/; compact moves it
    # now, so it says so once, with the reason, instead of that warning.
    with warnings.catch_warnings(record=True) as caught:
        try:
            merged, rows = store_maintenance.compact(store, everything=True)
        finally:
            moved = [(path, why) for path, why in store.skipped if not path.exists() and (quarantine / path.name).exists()]
            for w in caught:
                if not any(str(path) in str(w.message) for path, _ in moved):
                    _show_warning(w.message, w.category, w.filename, w.lineno)
    for path, why in moved:
        console.print(plain(f"moved {path} to {quarantine / path.name} (reason beside it in {path.name}.reason): {why}"), soft_wrap=True)
    console.print(plain(f"compacted {merged} fragments ({rows} rows) in {run.results}"))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")],
    optuna_file: Annotated[Optional[Path], typer.Option("--optuna", help="Write the search as an Optuna journal file (a new file), for 'optuna-dashboard FILE' or optuna.load_study.")] = None,
    tendencies_file: Annotated[Optional[Path], typer.Option("--tendencies", help="Write the report's parameter tendencies (importance, rank correlation, best-quarter range per parameter) as CSV (a new file).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file (never one inside a run directory).")] = False,
) -> None:
    """Open the run in other tools: its trials, parameters, per-epoch metric and states as an
    Optuna study; the parameter tendencies as CSV (works while the sweep runs: a snapshot).
    Files are written outside every run directory, and only new ones unless --force."""
    from kdsweep.orchestrator.export import write_journal
    from kdsweep.orchestrator.report import summarize

    run = _run_dir(run_dir)
    try:
        if optuna_file is None and tendencies_file is None:
            raise ConfigError([ConfigIssue("command line", "--optuna/--tendencies", None, "at least one file to write")])
        # Before the store is read, as for report's files.
        _check_outputs([_Output("--optuna", optuna_file, replace=force), _Output("--tendencies", tendencies_file, replace=force)])
        summary = summarize(str(run.path))
        if optuna_file is not None:
            n = write_journal(summary, optuna_file, replace=force)
            console.print(plain(f"exported {n} trials to {optuna_file} (Optuna journal; view with: optuna-dashboard {optuna_file})"))
    except ConfigError as exc:
        _fail(exc)
    if tendencies_file is not None:
        from kdsweep.orchestrator import analyses, tendencies

        found = analyses.of(summary)
        write_atomic(tendencies_file, tendencies.to_csv(summary, found.tendencies, found.survivors).encode())
        console.print(plain(f"exported the parameter tendencies to {tendencies_file} (CSV)"))


@app.command()
def simulate(
    sweep: Annotated[Optional[str], typer.Argument(help="Sweep file (TOML) of the synthetic trainer, or the name of an embedded one (default: synthetic).")] = None,
    replay: Annotated[Optional[Path], typer.Option("--replay", help="A run directory to replay instead: its own configurations, curves and epoch times, under other --set asha.*/backend.*/num_trials or --workers.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Simulated workers (trials in flight at once; default 30, or the replayed run's backend.max_concurrent).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory to create (default: runs/<name>-sim-<UTC time>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field by dotted path, as for launch (e.g. --set asha.reduction_factor=4). Repeatable.")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    warm_start_runs: Annotated[Optional[list[Path]], typer.Option("--warm-start", help="Start the searcher from an earlier run's trials, as for launch. Repeatable.")] = None,
) -> None:
    """Run a sweep on a virtual clock: the real driver, ASHA and Parquet store with the
    synthetic trainer's curves (or, with --replay, a recorded run's), so hours of cluster
    time pass in seconds. The run directory is an ordinary one ('kdsweep report' reads it)."""
    from kdsweep.orchestrator import simulate as sim
    from kdsweep.orchestrator import strict_json, warm_start

    # A replay defaults to the recorded run's backend.max_concurrent, a synthetic sweep to 30.
    overrides, typed = _overrides(set_, [("--workers", "backend.max_concurrent", workers if replay is not None else workers or 30)])
    try:
        issues = []
        if format not in ("table", "json"):
            issues.append(ConfigIssue("command line", "--format", format, "one of table, json"))
        if workers is not None and workers < 1:
            issues.append(ConfigIssue("command line", "--workers", workers, "an integer >= 1"))
        if replay is not None and sweep is not None:
            issues.append(ConfigIssue("command line", "SWEEP", sweep, "no sweep file with --replay (the replayed run's own sweep is used)"))
        if replay is not None and warm_start_runs:
            issues.append(ConfigIssue("command line", warm_start.OPTION, ", ".join(map(str, warm_start_runs)), "not with --replay (a replay proposes the recorded run's own configurations)"))
        if issues:
            raise ConfigError(issues)
        if replay is not None:
            simulation = sim.replay(str(replay), overrides)
            kind = "replay"
        else:
            # Virtual epochs take settings.epoch_s; the real sleep that stands in for training
            # in a launched synthetic sweep would only slow the simulation down.
            simulation = sim.synthetic(load_sweep(sweep if sweep is not None else "synthetic", [*overrides, "settings.sleep_s=0"]))
            if warm_start_runs:
                simulation = dataclasses.replace(simulation, warm_start=warm_start.resolve(simulation.cfg, warm_start_runs))
            kind = "sim"
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        target = out or Path("runs") / f"{simulation.cfg.name}-{kind}-{stamp}"
        result = sim.simulate(simulation, target, simulation.cfg.backend.max_concurrent)
    except ConfigError as exc:
        _fail(exc, typed)
    if format == "json":
        sys.stdout.write(strict_json.dumps({**dataclasses.asdict(result), "epochs_saved": result.epochs_saved}, default=str) + "\n")
    else:
        for line in sim.describe(result):
            console.print(line, highlight=False)


teacher_app = typer.Typer(help="The teacher cache: train a teacher once, list what is cached.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def teacher_train(
    sweep: Annotated[Optional[str], typer.Argument(help="Sweep file (TOML), or the name of an embedded one (e.g. 'loss_weights'), whose teachers to train. Omit it for the embedded demo's.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field of the sweep by dotted path, e.g. --set data.root=DIR or --set settings.teacher_epochs=60. Repeatable.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or auto (overrides backend.device).")] = None,
) -> None:
    """Train into the cache the teachers a sweep's trials distil from, as its trainer says
    (a no-op for those cached already); its trials then reuse them."""
    from kdsweep.orchestrator.config import parse_override
    from kdsweep.orchestrator.worker import trial_device
    from kdsweep.trainers.base import trainer_names, trainer_spec

    overrides, typed = _overrides(set_, [("--device", "backend.device", device)])
    try:
        cfg = load_sweep(sweep, overrides)
        spec = trainer_spec(cfg.trainer)
        if spec.teachers is None:
            teaching = [name for name in trainer_names() if trainer_spec(name).teachers is not None]
            source = "--set" if any(parse_override(item)[0] == ["trainer"] for item in overrides) else cfg.source
            allowed = f"a trainer that distils from cached teachers ({', '.join(teaching)}); trainer {cfg.trainer!r} trains none"
            raise ConfigError([ConfigIssue(source, "trainer", cfg.trainer, allowed)])
    except ConfigError as exc:
        _fail(exc, typed)
    for info in spec.prepare_teachers(cfg.settings, cfg.data, trial_device(cfg)):
        console.print(plain(f"teacher {info['name']}: val_acc {info['val_acc']:.4f}, test_acc {info['test_acc']:.4f} ({info['path']})"), soft_wrap=True)


@teacher_app.command("list")
def teacher_list(cache: Annotated[Optional[str], typer.Option("--cache", help="Cache directory (default $KDSWEEP_CACHE or ~/.cache/kdsweep).")] = None) -> None:
    """Cached teachers with their accuracies."""
    from rich.table import Table

    from kdsweep.orchestrator.checkpoint import load_checkpoint
    from kdsweep.trainers.teachers import cache_root

    root = cache_root(cache)
    table = Table(title=f"teachers in {root}", title_justify="left")
    for col in ("name", "arch", "dataset", "epochs", "val_acc", "test_acc"):
        table.add_column(col)
    for path in sorted(root.glob("*.pt")):
        state = load_checkpoint(path)
        if state is None:
            continue
        i = state["info"]
        table.add_row(str(i["name"]), str(i["arch"]), str(i["dataset"]), str(i["epochs"]), f"{i['val_acc']:.4f}", f"{i['test_acc']:.4f}")
    console.print(table)


def main() -> None:
    """The entry point: every error ends in one message and an exit code (module docstring),
    preceded by the traceback in debug mode (the exit code is the same)."""
    warnings.showwarning = _show_warning
    # Warnings of kdsweep's loggers (a backend's: a node lost, jobs requeued, squeue failing)
    # go to stderr as the message alone, as Python's last-resort handler printed them; the
    # driver also keeps the latest for its live view.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        _stop_if_signalled()
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _debug:
            traceback.print_exc()
        sys.exit(_report_error(exc))
    finally:
        _stop_if_signalled()


def _report_error(exc: Exception) -> int:
    """Print one message for ``exc`` and return the exit code."""
    if isinstance(exc, ConfigError):
        err.print("[bold red]error:[/bold red] invalid input", highlight=False)
        for issue in exc.issues:
            err.print(plain(f"  {issue}"))
        return 2
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        run, again = _driving or (Path.cwd(), None)
        where = Path(exc.filename) if exc.filename else run
        cont = f"; then continue with: {again}" if again else ""
        _error(f"no space left on the file system mounted at {_mount_point(where)} (writing {where}); nothing recorded was lost: free space{cont}")
        return 1
    if isinstance(exc, PlantedLinkError):
        _error(f"{exc.filename}: {exc.strerror}")
        return 2
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        _error(f"cannot write {exc.filename or 'a file'}: {exc.strerror}; this command needs write access to the run (report and status only read)")
        return 2
    if isinstance(exc, OSError):
        _error(f"{exc.filename or 'file system'}: {exc.strerror or exc}")
        return 1
    _error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
    return 1


def _error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", plain(message)))


def _mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    path = path.absolute()
    # The root is a mount point, so the walk up always ends.
    while not (path.exists() and path.is_mount()):
        path = path.parent
    return path


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one line each (``warning: ...``), without the source line; the message
    is data (it names files and quotes trainers' errors): shown as written, never as markup."""
    err.print(Text.assemble(("warning:", "yellow"), " ", plain(message)))


if __name__ == "__main__":
    main()
