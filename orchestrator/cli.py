"""The ``kdsweep`` command: parse, call, render. Logic lives in the modules it calls.

Exit codes: 0 success; 2 bad input (config, arguments, not a run directory), with every
problem named; 130 interrupted (the run stays resumable).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import IO, Annotated, NoReturn, Optional

import typer
from rich.console import Console

from kdsweep.orchestrator.config import ConfigError, ConfigIssue, SweepConfig, load_sweep, to_toml
from kdsweep.orchestrator.rundir import RunDir, TrialRecord, source_of, trial_order, write_atomic

app = typer.Typer(
    help="Sweeps over knowledge-distillation experiments: hyperopt proposals, ASHA early "
    "stopping read from Parquet results, local / Ray / SLURM backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
if not console.is_terminal:
    # Piped or captured output has no width to fit; 80 columns would fold the tables.
    console.width = 200
# Soft wrap: an error line that a terminal folds stays one line for a script or a log to match.
err = Console(stderr=True, soft_wrap=True)


def _fail(exc: ConfigError) -> NoReturn:
    err.print("[bold red]error:[/bold red] invalid input", highlight=False)
    for issue in exc.issues:
        err.print(f"  {issue}", highlight=False, markup=False)
    raise typer.Exit(2)


def _run_dir(path: Path) -> RunDir:
    run = RunDir(path)
    if not run.is_run():
        err.print(f"[bold red]error:[/bold red] {path}: not a run directory (no sweep.toml and run.json; made by 'kdsweep launch')", highlight=False)
        raise typer.Exit(2)
    return run


@app.command()
def launch(
    sweep: Annotated[Optional[str], typer.Argument(help="Sweep file (TOML), or the name of an embedded one (e.g. 'synthetic'). Omit it to run the embedded demo.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory to create (default: runs/<name>-<UTC time>).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Where trials run: local, ray or slurm (overrides backend.kind).")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="Trials in flight at once (overrides backend.max_concurrent).")] = None,
    num_trials: Annotated[Optional[int], typer.Option("--num-trials", help="Trials to run in total (overrides num_trials).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field by dotted path, e.g. --set asha.max_epochs=81; the value is read as a TOML literal, else as a string. Repeatable.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this directory: nothing recorded is repeated or lost. Only backend.* and num_trials may change.")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Show the live progress view.")] = True,
    top: Annotated[int, typer.Option("--top", help="Rows of the leaderboard printed at the end.")] = 10,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate, print what would run (SLURM: the sbatch script of a trial job, checked with 'sbatch --test-only'; else the normalised sweep) and exit; creates and submits nothing.")] = False,
) -> None:
    """Run a sweep (or resume one), then print its report."""
    from kdsweep.orchestrator.report import render_table, summarize

    overrides = list(set_ or [])
    if backend is not None:
        overrides.append(f"backend.kind={backend}")
    if max_concurrent is not None:
        overrides.append(f"backend.max_concurrent={max_concurrent}")
    if num_trials is not None:
        overrides.append(f"num_trials={num_trials}")
    try:
        if resume is not None:
            if sweep is not None:
                raise ConfigError([ConfigIssue("command line", "SWEEP", sweep, "omit the sweep file with --resume: the run directory holds its frozen copy")])
            run = _run_dir(resume)
            cfg = run.load_config(overrides)
            _check_backend(cfg, run.path, dry_run)
            if overrides:
                # Backend and budget may change on resume; the hash (the experiment) does not.
                write_atomic(run.frozen, to_toml(cfg.document).encode())
        else:
            cfg = load_sweep(sweep, overrides)
            out = out or _default_out(cfg)
            _check_backend(cfg, out, dry_run)
            run = RunDir.create(out, cfg)
        lock = run.acquire_driver_lock()
    except ConfigError as exc:
        _fail(exc)
    console.print(f"run directory: {run.path}  ({cfg.num_trials} trials of {cfg.trainer}, {cfg.searcher}, ASHA {cfg.asha.variant}, backend {cfg.backend.kind})", highlight=False)
    _drive(cfg, run, lock, live, None, f"kdsweep launch --resume {run.path}")
    render_table(summarize(str(run.path)), console, top=top)
    console.print(f"results: {run.results} (Parquet; read with pyarrow, pandas, DuckDB or Polars)", highlight=False)


def _drive(cfg: SweepConfig, run: RunDir, lock: IO[str], live: bool, plan: list[TrialRecord] | None, again: str) -> None:
    """Run the driver (the sweep, or with ``plan`` the final stage) on the configured backend,
    with the live view on a terminal; release the driver lock however it ends. ``again`` is
    the command that continues an interrupted run."""
    from kdsweep.orchestrator.backends import make_backend
    from kdsweep.orchestrator.driver import Driver, RejectedSpaceError
    from kdsweep.orchestrator.live import LiveView

    try:
        driver_backend = make_backend(cfg)
        if live and console.is_terminal:
            with LiveView() as view:
                Driver(cfg, run, driver_backend, plan=plan, on_update=view.update).run_sweep()
        else:
            Driver(cfg, run, driver_backend, plan=plan).run_sweep()
    except KeyboardInterrupt:
        err.print(f"interrupted; continue with: {again}", highlight=False)
        raise typer.Exit(130) from None
    except (ConnectionError, RejectedSpaceError) as exc:  # the cluster went away / an untrainable space; resumable
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        lock.close()


@app.command()
def retrain(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")],
    top: Annotated[int, typer.Option("--top", help="Retrain the best K configurations of the search (the leaderboard's order).")] = 1,
    trial: Annotated[Optional[list[str]], typer.Option("--trial", help="Also retrain this search trial (e.g. a baseline such as the all-through graph). Repeatable.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per configuration, each with its own seed.")] = 3,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs of each run (default: the sweep's asha.max_epochs).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Where runs go: local, ray or slurm (default: the run's backend).")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="Runs in flight at once.")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Show the live progress view.")] = True,
) -> None:
    """Retrain the best configurations for the full budget, R times each, and evaluate them
    on the held-out test split; report mean ± std. Rows go into the run's store marked
    stage = "final". Running it again resumes unfinished runs and skips finished ones."""
    from kdsweep.orchestrator.report import render_final, summarize, trainer_section
    from kdsweep.orchestrator.retrain import plan_final

    overrides = []
    if backend is not None:
        overrides.append(f"backend.kind={backend}")
    if max_concurrent is not None:
        overrides.append(f"backend.max_concurrent={max_concurrent}")
    run = _run_dir(run_dir)
    try:
        cfg = run.load_config(overrides)
        plan = plan_final(run, summarize(str(run.path)), top=top, trials=list(trial or []), repeats=repeats, epochs=epochs)
        _check_backend(cfg, run.path, dry_run=False)
        if overrides:
            write_atomic(run.frozen, to_toml(cfg.document).encode())
        lock = run.acquire_driver_lock()
    except ConfigError as exc:
        _fail(exc)
    sources = sorted({source_of(r.trial_id) for r in plan}, key=trial_order)
    console.print(f"retraining {', '.join(sources)}: {repeats} runs each, {plan[0].until_epoch} epochs, test split at the end (backend {cfg.backend.kind})", highlight=False)
    again = f"kdsweep retrain {run.path} --top {top} --repeats {repeats} --epochs {plan[0].until_epoch}" + "".join(f" --trial {t}" for t in trial or [])
    _drive(cfg, run, lock, live, plan, again)
    summary = summarize(str(run.path))
    render_final(summary, console)
    section = trainer_section(summary)
    if section is not None:
        section.render(summary, console)


def _check_backend(cfg: SweepConfig, run_dir: Path, dry_run: bool) -> None:
    """Before anything is written: ask the backend whether it would take this sweep's trials
    (SLURM: ``sbatch --test-only``, so a bad partition or time fails here, exit 2); with
    ``--dry-run``, print what would be submitted and exit 0."""
    script = None
    if cfg.backend.kind == "slurm":
        from kdsweep.orchestrator.backends.slurm import preflight

        script = preflight(cfg, run_dir)
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
) -> None:
    """Leaderboard, rung survival, final evaluation and the trainer's own section (Pareto
    front, best graphs) of a run; works while it runs."""
    from kdsweep.orchestrator.report import plot, plot_unavailable, render_table, summarize, to_csv, to_json

    if format not in ("table", "json", "csv"):
        err.print(f"[bold red]error:[/bold red] --format = {format!r}: one of table, json, csv", highlight=False)
        raise typer.Exit(2)
    run = _run_dir(run_dir)
    try:
        summary = summarize(str(run.path))
        if plot_path is not None:
            why = plot_unavailable(summary)
            if why is None and plot_path.suffix.lower() != ".png":
                why = "a file name ending in .png"
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
        err.print(f"plot: {plot_path}", highlight=False)


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")]) -> None:
    """What is running, paused, stopped, failed; how far along the budget is."""
    from kdsweep.orchestrator.report import render_status, summarize

    run = _run_dir(run_dir)
    try:
        render_status(summarize(str(run.path)), console)
    except ConfigError as exc:
        _fail(exc)


@app.command()
def compact(run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'kdsweep launch'.")]) -> None:
    """Merge the run's result fragments into one file, atomically, without changing a row."""
    from kdsweep.orchestrator.store import Store

    run = _run_dir(run_dir)
    merged, rows = Store(run.path).compact()
    console.print(f"compacted {merged} fragments ({rows} rows) in {run.results}", highlight=False)


teacher_app = typer.Typer(help="The teacher cache: train a teacher once, list what is cached.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def teacher_train(
    arch: Annotated[str, typer.Option("--arch", help="Model name: resnet18, resnet20, resnet32, resnet110, wrn28_2, vgg16.")] = "resnet18",
    dataset: Annotated[str, typer.Option("--dataset", help="digits, cifar10 or cifar100.")] = "digits",
    root: Annotated[Optional[str], typer.Option("--root", help="Directory with torchvision's CIFAR files (never downloaded).")] = None,
    width: Annotated[float, typer.Option("--width", help="Channel width multiplier.")] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and data order.")] = 0,
    cache: Annotated[Optional[str], typer.Option("--cache", help="Cache directory (default $KDSWEEP_CACHE or ~/.cache/kdsweep).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Train a teacher into the cache (a no-op if it is there); sweeps then reuse it."""
    from kdsweep.trainers.data import DataSettings, check_data
    from kdsweep.trainers.teachers import TeacherSpec, cache_root, get_teacher
    from kdsweep.trainers.training import Device, SGDSettings

    issues = []
    if dataset not in ("digits", "cifar10", "cifar100"):
        issues.append(ConfigIssue("command line", "--dataset", dataset, "one of digits, cifar10, cifar100"))
    if device not in ("auto", "cpu", "cuda"):
        issues.append(ConfigIssue("command line", "--device", device, "one of auto, cpu, cuda"))
    if epochs < 1:
        issues.append(ConfigIssue("command line", "--epochs", epochs, "an integer >= 1"))
    if issues:
        _fail(ConfigError(issues))
    data = DataSettings(dataset=dataset, root=root)  # type: ignore[arg-type]
    bad = [ConfigIssue("command line", "--" + f.split(".")[-1], v, allowed) for f, v, allowed in check_data(data)]
    if bad:
        _fail(ConfigError(bad))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = TeacherSpec(data=data, arch=arch, width=width, epochs=epochs, seed=seed)
    teacher = get_teacher(spec, Device(device, SGDSettings()), cache_root(cache))
    info = teacher.info
    console.print(f"teacher {info['name']}: val_acc {info['val_acc']:.4f}, test_acc {info['test_acc']:.4f} ({info['path']})", highlight=False)


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
    app()


if __name__ == "__main__":
    main()
