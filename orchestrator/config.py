"""Sweep files: TOML loading, ``--set`` overrides, validation that names every bad field.

A sweep file has these top-level keys (DESIGN.md; examples in ``search_spaces/``)::

    name, trainer, searcher, num_trials, seed, points_to_evaluate,
    n_startup_trials, population_size   the searcher's options (orchestrator/search_options.py)
    [space]     one entry per searched parameter, e.g. lr = {type = "loguniform", low = 1e-4, high = 1};
                for trainers that generate their space, scalar options too (e.g. nodes = 3)
    [asha]      metric, mode (or objectives), min_epochs, max_epochs, reduction_factor, variant,
                eval_every_epochs
    [backend]   kind, max_concurrent, max_retries, per-trial resources; [backend.<kind>]: a
                backend's own options (backends/<kind>_spec.py)
    [settings]  the trainer's own settings (its ``Settings`` dataclass)
    [data]      the dataset, for trainers that read one (their ``Data`` dataclass)
    [objective] what the sweep maximises, for trainers that define one (their ``Objective``)

Validation collects *every* problem before reporting: each :class:`ConfigIssue` names the
source (file or ``--set``), the dotted field, the value found and what is allowed. Loading has
no side effects; the caller decides where the frozen copy goes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from kdsweep.orchestrator.asha import rung_ladder
from kdsweep.orchestrator.backends import BackendSpec, backend_names, backend_spec
from kdsweep.orchestrator.search_options import OPTION_NAMES, SEARCHER_OPTIONS, SEARCHERS, SearcherName, resolve_options, space_problems
from kdsweep.orchestrator.space import INT64_MAX, INT64_MIN, ParamSpec, is_finite_number
from kdsweep.trainers.base import TrainerSpec, trainer_names, trainer_spec


#: The most trials one sweep may propose: trial ids, records and the store are sized for
#: this (ids t0000..t9999999); a larger value is a typo, not a plan.
MAX_TRIALS = 10_000_000

#: The most epochs a trial may train (``asha.max_epochs``, ``kdsweep retrain --epochs``): the
#: store's ``epoch`` and ``rung`` columns are 32-bit integers, and a million epochs is far
#: beyond any training budget, so a larger value is a typo.
MAX_EPOCHS = 1_000_000

#: The most trials in flight at once (``backend.max_concurrent``, ``kdsweep simulate
#: --workers``): SLURM's default limit of jobs in a whole cluster (MaxJobCount), and the
#: local backend keeps a slot per trial in flight, so a larger value is a typo.
MAX_CONCURRENT = 10_000

#: The largest ``seed`` (and seed setting of a trainer); the least is 0. Measured (numpy 2.4,
#: scikit-learn 1.9, torch): numpy's ``default_rng`` (the searchers' seed stream, data splits)
#: refuses negative seeds, and the random forest behind the report's parameter importances
#: (Optuna's fANOVA, seeded with the sweep's seed) takes 0 to 2**32 - 1 only; numpy takes
#: any larger seed, torch.manual_seed up to 2**64 - 1.
MAX_SEED = 2**32 - 1

#: What a seed may be, as messages say it.
SEED_RANGE = f"an integer from 0 to {MAX_SEED} (2**32 - 1: what every random generator kdsweep seeds accepts)"

#: How deeply tables and arrays may nest in a sweep file. The deepest value kdsweep reads is
#: 4 levels down (space.width.values[0], backend.slurm.extra.key); tomllib itself fails with
#: RecursionError near 500 nested arrays, and the TOML writer, the hash's JSON and the checks
#: here recurse too, so a limit far below Python's recursion limit keeps them all safe.
MAX_NESTING = 16

#: Bytes the path of a folder kdsweep writes into (a run directory, a teacher cache) must
#: leave below the OS's PATH_MAX for the names it makes inside (results/.keys/<trial>/<event>,
#: slurm/<job>/..., teachers/<teacher>.pt: under 100 bytes), so that every file can be written.
PATH_ROOM = 256

#: Fields that may differ between a run and its resumption: where and how fast trials run,
#: and how many are wanted. Everything else defines the experiment and enters the hash.
RESUMABLE_FIELDS = ("backend", "num_trials")


@dataclasses.dataclass(frozen=True)
class ConfigIssue:
    """One invalid field: where it came from, its dotted path, the value, what is allowed."""

    source: str
    field: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        shown = "(missing)" if self.value is MISSING else repr(self.value)
        return f"{self.source}: {self.field} = {shown}: {self.allowed}"


class ConfigError(ValueError):
    """Raised with every :class:`ConfigIssue` found, so a user fixes them all in one pass."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("invalid sweep configuration:\n" + "\n".join(f"  {i}" for i in self.issues))


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


#: The value of a :class:`ConfigIssue` about an absent field (shown as "(missing)").
MISSING: Any = _Missing()


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective of a multi-objective sweep: a metric the trainer reports, and whether
    larger ("max") or smaller ("min") is better. ``mode`` has no default: a cost silently
    maximised would be a wrong sweep, not a mistake the loader could name."""

    metric: str
    mode: Literal["max", "min"]


@dataclasses.dataclass(frozen=True)
class AshaConfig:
    """Asynchronous Successive Halving: what trials are ranked by, the rung ladder and which
    variant runs it.

    A sweep file gives either ``metric`` (with ``mode``) or ``objectives``, never both. The
    loader fills in the other form, so that after loading ``objectives`` always lists every
    objective (one for a single-objective sweep) and ``metric``/``mode`` are the first one:
    the *primary* objective, which the searcher is told and the leaderboard sorts by.
    """

    metric: str = ""
    mode: Literal["max", "min"] = "max"
    min_epochs: int = 1
    max_epochs: int = 27
    reduction_factor: int = 3
    variant: Literal["stop", "promote", "pasha"] = "stop"
    #: Hyperband brackets (stop and promote): bracket s judges from rung s on; each trial
    #: draws its bracket from the sweep's seed (``schedulers/brackets.py``). 1: plain ASHA.
    brackets: int = 1
    #: Stop (stop variant) or leave paused (promote) on where a trial's curve is going, not
    #: where it is: its predicted value at the top rung against the top 1/η there
    #: (``schedulers/extrapolation.py``). One objective, one bracket.
    extrapolate: bool = False
    #: With ``extrapolate``: a trial goes on while its predicted chance of reaching the top
    #: 1/η at the top rung is at least this. At 0.5, while its predicted value reaches the
    #: cut; lower lets an unsure prediction keep a trial going, which cost epochs over ASHA
    #: where there are many rungs (README, "Extrapolate"); higher stops more.
    extrapolate_chance: float = 0.5
    #: Evaluate (and write a report row) every this many epochs; rung epochs always evaluate.
    eval_every_epochs: int = 1
    #: Several objectives: at a rung trials are ranked by non-dominated sorting with the
    #: ε-net inside a front (multi-objective ASHA, see ``asha.rank``).
    objectives: tuple[Objective, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        """The objectives' metrics, in order (the rung value's coordinates)."""
        return tuple(o.metric for o in self.objectives)

    @property
    def modes(self) -> tuple[str, ...]:
        """The objectives' modes, in the order of :attr:`metrics`."""
        return tuple(o.mode for o in self.objectives)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Where trials run and with what; ``*_per_trial`` are requests, not guarantees.

    ``kind`` is an installed backend (``backends.backend_names``); each backend's own table
    ``[backend.<kind>]`` is in ``options``, not a field of its own (``backends.BackendSpec``).
    """

    kind: str = "local"
    #: Where trials compute: "auto" takes CUDA when the worker sees a GPU, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_concurrent: int = 2
    max_retries: int = 2
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    mem_gb: float = 4.0
    timeout_min: float = 24 * 60.0
    #: Every installed backend's ``[backend.<kind>]`` table by kind (its spec's ``Options``:
    #: as the file gives it, else its defaults), for backends that have one. Filled in by
    #: the loader, not a key of ``[backend]``.
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: everything the driver, workers and reports need."""

    name: str
    trainer: str
    searcher: SearcherName
    num_trials: int
    seed: int
    #: The searcher's options, each as set or defaulted (search_options.SEARCHER_OPTIONS).
    searcher_options: Mapping[str, int]
    space: tuple[ParamSpec, ...]
    points_to_evaluate: tuple[Mapping[str, Any], ...]
    asha: AshaConfig
    backend: BackendConfig
    settings: Any
    data: Any
    #: The trainer's ``[objective]`` table (its ``Objective`` dataclass), or None.
    objective: Any
    #: The normalised document (defaults filled in) that ``to_toml`` writes and the hash covers.
    document: Mapping[str, Any]
    source: str

    @functools.cached_property
    def config_hash(self) -> str:
        """sha256 (16 hex digits) of the experiment-defining part of the document.

        Backend and ``num_trials`` are left out: moving a sweep from a laptop to SLURM, or
        asking for more trials on resume, does not change what a result means. Computed once
        per instance (every row carries it; the TOML round trip costs about a millisecond):
        the config is frozen, and ``dataclasses.replace`` makes a new instance.
        """
        core = {k: v for k, v in self.document.items() if k not in RESUMABLE_FIELDS}
        # Hashed as the frozen sweep.toml reads back (absent None values, lists for tuples),
        # so the hash of a run's frozen file equals the hash it was created with.
        return _hash(tomllib.loads(to_toml(core)))

    @property
    def legacy_hash(self) -> str:
        """The hash kdsweep 0.1 recorded (over the normalised document as is), by which runs
        it created are recognised as unchanged."""
        return _hash({k: v for k, v in self.document.items() if k not in RESUMABLE_FIELDS})

    def param_types(self) -> dict[str, Any]:
        return {p.name: p.arrow_type() for p in self.space}


_TOP_LEVEL = (
    "name", "trainer", "searcher", "num_trials", "seed", *OPTION_NAMES,
    "points_to_evaluate", "space", "asha", "backend", "settings", "data", "objective",
)  # fmt: skip

_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "int": ("low", "high"),
    "choice": ("values",),
}


def _hash(core: Mapping[str, Any]) -> str:
    canonical = json.dumps(core, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value`` → (path, value); the value is a TOML literal, else a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError([ConfigIssue("--set", text, MISSING, "expected KEY.PATH=VALUE, e.g. asha.max_epochs=81")])
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except RecursionError:
        raise ConfigError([ConfigIssue("--set", key, _TOO_DEEP, _NESTING_ALLOWED)]) from None
    return key.split("."), value


class _Collector:
    """Accumulates issues; ``source_of`` tells whether a field came from the file or ``--set``."""

    def __init__(self, source: str, overridden: set[str]) -> None:
        self.issues: list[ConfigIssue] = []
        self.source = source
        self.overridden = overridden

    def add(self, field: str, value: Any, allowed: str) -> None:
        # A field came from --set when it or a table or array around it, or a key inside it,
        # was set.
        src = "--set" if any(field == o or field.startswith((o + ".", o + "[")) or o.startswith(field + ".") for o in self.overridden) else self.source
        self.issues.append(ConfigIssue(src, field, value, allowed))


def load_sweep(path: str | Path | None, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep file (``None``: the embedded demo), apply ``--set`` overrides, validate.

    Raises :class:`ConfigError` listing every problem. Never writes anything.
    """
    from kdsweep.search_spaces import DEMO, resolve

    file = resolve(path) if path is not None else resolve(DEMO)
    source = str(path) if path is not None else f"{DEMO} (embedded demo)"
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, "(file)", str(file), f"cannot be read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(source, "(encoding)", f"byte {exc.start} ({exc.object[exc.start]:#04x})", "a UTF-8 text file (TOML)")]) from None
    return load_sweep_text(text, source, overrides)


def load_sweep_text(text: str, source: str, overrides: Sequence[str] = ()) -> SweepConfig:
    """As :func:`load_sweep`, from TOML text; ``source`` names it in messages."""
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue(source, "(syntax)", MISSING, f"not valid TOML: {exc}")]) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError([ConfigIssue(source, "(nesting)", _TOO_DEEP, _NESTING_ALLOWED)]) from None
    overridden: set[str] = set()
    for item in overrides:
        keys, value = parse_override(item)
        table = doc
        for i, k in enumerate(keys[:-1]):
            nxt = table.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError([ConfigIssue("--set", ".".join(keys[: i + 1]), nxt, "is not a table; cannot set a key inside it")])
            table = nxt
        table[keys[-1]] = value
        overridden.add(".".join(keys))
    c = _Collector(source, overridden)
    _check_document(c, doc)
    if c.issues:
        raise ConfigError(c.issues)
    return _validate(doc, c)


#: The value and the rule of an issue about nesting deeper than :data:`MAX_NESTING`.
_TOO_DEEP = f"nested deeper than {MAX_NESTING} levels"
_NESTING_ALLOWED = f"tables and arrays nested at most {MAX_NESTING} levels deep (a sweep file needs 4)"


def _check_document(c: _Collector, doc: Mapping[str, Any]) -> None:
    """Report what no value may be, wherever it is, before any field is read: a string (or
    key) that is not valid Unicode, an integer outside TOML's 64 bits (tomllib reads larger
    ones; the results' int columns are int64 too), a value nested deeper than
    :data:`MAX_NESTING` (reported once, not descended into). Walks without recursion, so
    that no depth exhausts the stack."""
    todo: list[tuple[str, Any, int]] = [("", doc, 0)]
    while todo:
        path, value, depth = todo.pop()
        if depth > MAX_NESTING:
            c.add(path, _TOO_DEEP, _NESTING_ALLOWED)
            continue
        children: list[tuple[str, Any]] = []
        if isinstance(value, str):
            _check_text(c, path, value)
        elif _is_type(value, int) and not INT64_MIN <= value <= INT64_MAX:
            c.add(path, value, "an integer from -2**63 to 2**63 - 1 (TOML's integers are 64-bit; write a larger number as a float, e.g. 1e20)")
        elif isinstance(value, Mapping):
            for k, v in value.items():
                sub = f"{path}.{k}" if path else str(k)
                _check_text(c, sub, str(k))
                children.append((sub, v))
        elif isinstance(value, list):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        # Reversed onto the stack, so that issues come in the file's order.
        todo.extend((sub, v, depth + 1) for sub, v in reversed(children))


def _check_text(c: _Collector, field: str, text: str) -> None:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        c.add(field, text, "text that is valid Unicode (this holds bytes that are not UTF-8)")


def _validate(doc: Mapping[str, Any], c: _Collector) -> SweepConfig:
    for key in doc:
        if key not in _TOP_LEVEL:
            c.add(key, doc[key], f"unknown key; valid top-level keys: {', '.join(_TOP_LEVEL)}")

    name = _scalar(c, doc, "name", str, "default")
    if isinstance(name, str) and (not name or any(ch in name for ch in "/\\\0")):
        c.add("name", name, "a non-empty name without path separators")
    trainer = _scalar(c, doc, "trainer", str, MISSING)
    trainer_cls: type[TrainerSpec] | None = None
    if isinstance(trainer, str):
        if trainer in trainer_names():
            trainer_cls = trainer_spec(trainer)
        else:
            c.add("trainer", trainer, f"one of the installed trainers: {', '.join(trainer_names())}")
    searcher = _scalar(c, doc, "searcher", str, "tpe")
    if searcher not in SEARCHERS:
        c.add("searcher", searcher, f"one of {', '.join(SEARCHERS)}")
    given_options = {k: doc[k] for k in OPTION_NAMES if k in doc}
    if "searcher" in c.overridden and isinstance(searcher, str):
        # The file's options configure the file's searcher: when --set replaces it, those the
        # new one does not take leave with the old one (options given by --set are checked).
        takes = SEARCHER_OPTIONS.get(searcher, {})
        given_options = {k: v for k, v in given_options.items() if k in takes or k in c.overridden}
    options, option_issues = resolve_options(searcher, given_options)
    for field, value, allowed in option_issues:
        c.add(field, value, allowed)
    num_trials = _positive_int(c, doc, "num_trials", MISSING)
    if _is_type(num_trials, int) and num_trials > MAX_TRIALS:
        c.add("num_trials", num_trials, f"an integer from 1 to {MAX_TRIALS}")
    seed = _scalar(c, doc, "seed", int, 0)
    if _is_type(seed, int) and not is_seed(seed):
        c.add("seed", seed, SEED_RANGE)

    asha_table = doc.get("asha", MISSING)
    asha = _dataclass(c, AshaConfig, asha_table, "asha")
    if isinstance(asha, AshaConfig):
        asha = _check_asha(c, asha, asha_table)
    backend_table = doc.get("backend", {})
    backend = _backend(c, backend_table)

    settings: Any = None
    data: Any = None
    objective: Any = None
    if trainer_cls is not None:
        settings = _dataclass(c, trainer_cls.Settings, doc.get("settings", {}), "settings")
        data = _trainer_table(c, doc, trainer, trainer_cls.Data, "data", "reads no dataset")
        objective = _trainer_table(c, doc, trainer, trainer_cls.Objective, "objective", "has no objective")

    space_table, space_doc, generated = _space_table(c, doc.get("space", MISSING), trainer_cls, settings)
    space = _space(c, space_table) if space_table is not None else ()
    for field, value, allowed in space_problems(searcher, space):
        c.add(field, value, allowed)
    baselines = _points(c, list(generated), space, "space (generated baseline)")
    explicit = _points(c, doc.get("points_to_evaluate", []), space, "points_to_evaluate")
    points = baselines + explicit

    if trainer_cls is not None and settings is not None and not c.issues:
        # Trainer-specific cross-field rules (e.g. a frozen target node), reported the same way.
        for field, value, allowed in trainer_cls.validate(settings, data, space, objective):
            c.add(field, value, allowed)
        labelled = [("space (generated baseline)", i, p) for i, p in enumerate(baselines)]
        labelled += [("points_to_evaluate", i, p) for i, p in enumerate(explicit)]
        for label, i, point in labelled:
            reason = trainer_cls.check_params(point, settings)
            if reason is not None:
                c.add(f"{label}[{i}]", dict(point), f"a configuration the trainer can train: {reason}")
    if isinstance(asha, AshaConfig) and trainer_cls is not None and settings is not None and not c.issues:
        names = list(trainer_cls.metric_names(settings))
        fields = [f"asha.objectives[{i}].metric" for i in range(len(asha.objectives))] if asha.multi_objective else ["asha.metric"]
        for field, metric in zip(fields, asha.metrics):
            if metric not in names:
                c.add(field, metric, f"a metric trainer {trainer!r} reports: {', '.join(names)}")

    if c.issues or backend is None:  # None only after an issue: this tells the type checker
        raise ConfigError(c.issues)
    document = {
        "name": name,
        "trainer": trainer,
        "searcher": searcher,
        "num_trials": num_trials,
        "seed": seed,
        **options,
        "points_to_evaluate": [dict(p) for p in explicit],
        "space": space_doc if space_doc is not None else {p.name: _param_doc(p) for p in space},
        "asha": _asha_document(asha),
        "backend": _backend_document(backend, backend_table),
        "settings": dataclasses.asdict(settings),
    }
    if data is not None:
        document["data"] = dataclasses.asdict(data)
    if objective is not None:
        document["objective"] = dataclasses.asdict(objective)
    return SweepConfig(
        name=name, trainer=trainer, searcher=searcher, num_trials=num_trials, seed=seed,
        searcher_options=options, space=space, points_to_evaluate=points, asha=asha,
        backend=backend, settings=settings, data=data, objective=objective, document=document,
        source=c.source,
    )  # fmt: skip


def _trainer_table(c: _Collector, doc: Mapping[str, Any], trainer: str, cls: Any, key: str, absent: str) -> Any:
    """The trainer's optional table ``[key]`` built as dataclass ``cls`` (defaults when the
    file omits it); a table given to a trainer that has no such dataclass is an error."""
    if cls is None:
        if key in doc:
            c.add(key, doc[key], f"trainer {trainer!r} {absent}; remove the [{key}] table")
        return None
    return _dataclass(c, cls, doc.get(key, {}), key)


def _space_table(
    c: _Collector, table: Any, trainer_cls: type[TrainerSpec] | None, settings: Any
) -> tuple[Any, dict[str, Any] | None, Sequence[Mapping[str, Any]]]:
    """The ``[space]`` parameter tables to parse (None: nothing to parse, the problem is
    already reported), the normalised ``[space]`` for the frozen document (None: write the
    parsed parameters), and the trainer's generated baselines.

    For a trainer with ``SpaceOptions``, the keys of ``[space]`` are its options and
    ``generate_space`` turns them into parameters and baselines: the trainer owns the whole
    space, so a parameter table there is an error. The document keeps the options (not the
    expansion), so the frozen copy regenerates the same space.
    """
    options_cls = trainer_cls.SpaceOptions if trainer_cls is not None else None
    if trainer_cls is None or options_cls is None or not isinstance(table, Mapping):
        return table, None, ()
    option_names = [f.name for f in dataclasses.fields(options_cls)]
    for name, entry in table.items():
        if isinstance(entry, Mapping):
            c.add(f"space.{name}", dict(entry), f"trainer generates its parameters from the options {', '.join(option_names)}; remove this table")
    options = _dataclass(c, options_cls, {k: v for k, v in table.items() if not isinstance(v, Mapping)}, "space")
    if options is None or settings is None:
        return None, None, ()
    try:
        generated = trainer_cls.generate_space(options, settings)
    except ValueError as exc:
        # generate_space raises ValueError(field, value, allowed) for an option it rejects.
        field, value, allowed = exc.args if len(exc.args) == 3 else ("space", dataclasses.asdict(options), str(exc))
        c.add(field, value, allowed)
        return None, None, ()
    return generated.params, dataclasses.asdict(options), generated.points


def _scalar(c: _Collector, doc: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = doc.get(key, default)
    if value is MISSING:
        c.add(key, MISSING, f"required ({kind.__name__})")
    elif not _is_type(value, kind):
        c.add(key, value, f"must be {kind.__name__}")
    return value


def _positive_int(c: _Collector, doc: Mapping[str, Any], key: str, default: Any) -> Any:
    value = _scalar(c, doc, key, int, default)
    if _is_type(value, int) and value < 1:
        c.add(key, value, "must be an integer >= 1")
    return value


def is_seed(value: Any) -> bool:
    """Whether ``value`` is a seed every random generator kdsweep seeds accepts (see
    :data:`MAX_SEED`); a trainer checks its own seed settings with it."""
    return _is_type(value, int) and 0 <= value <= MAX_SEED


def path_problem(path: str | os.PathLike[str], room: int = 0) -> str | None:
    """Why the OS would refuse ``path`` as a file or folder name, as the rest of a message
    that names it ("a path ..."), or None: a NUL character, a name (between slashes) longer
    than the file system takes (NAME_MAX: 255 bytes on Linux's), or an absolute path that
    leaves fewer than ``room`` bytes below PATH_MAX (4096 on Linux). Creates nothing; reads
    only the limits of the nearest existing folder above ``path``."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        return "a path without a NUL character"
    absolute = os.path.abspath(raw)
    existing = absolute
    # os.path.exists is False for a path too long to ask about, so the walk goes on up;
    # the root exists.
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    name_max, path_max = (_path_limit(existing, name, default) for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)))
    longest = max(absolute.split(b"/"), key=len)
    if len(longest) > name_max:
        return f"a path whose names have at most {name_max} bytes each (the file system's limit); one has {len(longest)}"
    if len(absolute) > path_max - room:
        return f"a path of at most {path_max - room} bytes as an absolute path (the OS's limit is {path_max}); this one has {len(absolute)}"
    return None


def _path_limit(folder: bytes, name: str, default: int) -> int:
    """``os.pathconf(folder, name)``, or ``default`` where the OS does not say (an error, or
    -1: no fixed limit)."""
    try:
        limit = os.pathconf(folder, name)
    except (OSError, ValueError):
        return default
    return limit if limit > 0 else default


def _is_type(value: Any, kind: Any) -> bool:
    """TOML-aware type check: bool is not an int, and an int is an acceptable float."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _space(c: _Collector, table: Any) -> tuple[ParamSpec, ...]:
    if table is MISSING or not isinstance(table, Mapping) or not table:
        c.add("space", table, "a table with at least one parameter, e.g. lr = {type = \"uniform\", low = 0.01, high = 0.1}")
        return ()
    specs: list[ParamSpec] = []
    for name, entry in table.items():
        field = f"space.{name}"
        if not isinstance(entry, Mapping):
            c.add(field, entry, "a table with 'type' and its bounds or values")
            continue
        kind = entry.get("type", MISSING)
        if kind not in _PARAM_KEYS:
            c.add(f"{field}.type", kind, f"one of {', '.join(_PARAM_KEYS)}")
            continue
        wanted = _PARAM_KEYS[kind]
        bad = False
        for key in entry:
            if key != "type" and key not in wanted:
                c.add(f"{field}.{key}", entry[key], f"unknown key for type {kind!r}; valid: type, {', '.join(wanted)}")
                bad = True
        for key in wanted:
            if key not in entry:
                c.add(f"{field}.{key}", MISSING, f"required for type {kind!r}")
                bad = True
        if bad:
            continue
        if kind == "choice":
            values = entry["values"]
            if not isinstance(values, list) or not values:
                c.add(f"{field}.values", values, "a non-empty list")
                continue
            kinds = {type(v) for v in values}
            numeric = kinds <= {int, float}
            if not (numeric or len(kinds) == 1) or not kinds <= {int, float, str, bool}:
                c.add(f"{field}.values", values, "scalars of one type (numbers, strings or booleans)")
                continue
            if len(set(values)) != len(values):
                c.add(f"{field}.values", values, "distinct values")
                continue
            try:
                specs.append(ParamSpec(name, "choice", values=tuple(values)))
            except ValueError as exc:
                c.add(f"{field}.values", values, str(exc))
            continue
        numbers = {k: entry[k] for k in wanted}
        for key, v in numbers.items():
            if not is_finite_number(v):
                c.add(f"{field}.{key}", v, "a finite number")
                bad = True
        if bad:
            continue
        # An int parameter keeps its bounds as written: as a float, 2**53 + 1 would be 2**53.
        low, high = (numbers["low"], numbers["high"]) if kind == "int" else (float(numbers["low"]), float(numbers["high"]))
        if kind == "int" and not (_is_type(numbers["low"], int) and _is_type(numbers["high"], int)):
            c.add(f"{field}.low", numbers["low"], "integers for type 'int' (inclusive bounds)")
        elif low >= high:
            c.add(f"{field}.high", numbers["high"], f"greater than low ({numbers['low']})")
        elif kind == "loguniform" and low <= 0:
            c.add(f"{field}.low", numbers["low"], "> 0 for type 'loguniform'")
        elif kind == "quniform" and float(numbers["q"]) <= 0:
            c.add(f"{field}.q", numbers["q"], "> 0")
        else:
            q = float(numbers["q"]) if kind == "quniform" else None
            try:
                specs.append(ParamSpec(name, kind, low=low, high=high, q=q))
            except ValueError as exc:  # the spec's own rules, e.g. quniform bounds on the grid
                c.add(field, dict(entry), str(exc))
    return tuple(specs)


def _param_doc(p: ParamSpec) -> dict[str, Any]:
    if p.kind == "choice":
        return {"type": "choice", "values": list(p.values)}
    out: dict[str, Any] = {"type": p.kind, "low": p.low, "high": p.high}
    if p.kind == "int":
        out = {"type": "int", "low": int(p.low or 0), "high": int(p.high or 0)}
    if p.q is not None:
        out["q"] = p.q
    return out


def _points(c: _Collector, points: Any, space: Sequence[ParamSpec], label: str) -> tuple[Mapping[str, Any], ...]:
    """Fixed trials evaluated first (research baselines). They may lie outside a continuous
    range (a baseline often does: the seed's b = 0.05 under a 0.1–1.0 search range) but must be
    of the parameter's type, and a choice parameter's value must be one of its values."""
    if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
        c.add(label, points, "a list of tables, one value per searched parameter")
        return ()
    by_name = {p.name: p for p in space}
    out: list[Mapping[str, Any]] = []
    for i, point in enumerate(points):
        field = f"{label}[{i}]"
        ok = True
        for key in point:
            if key not in by_name:
                c.add(f"{field}.{key}", point[key], f"not a searched parameter; valid: {', '.join(by_name)}")
                ok = False
        for name, spec in by_name.items():
            value = point.get(name, MISSING)
            if value is MISSING:
                c.add(f"{field}.{name}", MISSING, "every searched parameter needs a value")
                ok = False
            elif spec.kind == "choice" and value not in spec.values:
                c.add(f"{field}.{name}", value, f"one of {list(spec.values)}")
                ok = False
            elif spec.kind == "int" and not _is_type(value, int):
                c.add(f"{field}.{name}", value, "an integer")
                ok = False
            elif spec.kind != "choice" and not is_finite_number(value):
                c.add(f"{field}.{name}", value, "a finite number")
                ok = False
            elif spec.kind == "loguniform" and value <= 0:
                c.add(f"{field}.{name}", value, "> 0 (loguniform parameter)")
                ok = False
        if ok:
            out.append({name: (float(v) if by_name[name].kind in ("uniform", "loguniform", "quniform") else v) for name, v in point.items()})
    return tuple(out)


def _table_list_item(hint: Any) -> Any:
    """The dataclass ``X`` of a ``tuple[X, ...]`` field, else None."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _dataclass(c: _Collector, cls: Any, table: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, reporting unknown, missing and mistyped keys."""
    if table is MISSING:
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        c.add(f"[{prefix}]", MISSING, f"required table with keys: {', '.join(required)}" if required else "required table")
        return None
    if not isinstance(table, Mapping):
        c.add(prefix, table, "must be a table")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    before = len(c.issues)
    for key in table:
        if key not in fields:
            c.add(f"{prefix}.{key}", table[key], f"unknown key; valid: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        field = f"{prefix}.{name}"
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                c.add(field, MISSING, f"required ({_describe(hints[name])})")
            continue
        if dataclasses.is_dataclass(hints[name]):
            nested = _dataclass(c, hints[name], table[name], field)
            if nested is not None:
                kwargs[name] = nested
            continue
        item = _table_list_item(hints[name])
        if item is not None:
            # A list of tables, each one dataclass (asha.objectives): every entry is checked,
            # and a problem is named by its index.
            if not isinstance(table[name], list):
                c.add(field, table[name], f"must be a list of tables with keys: {', '.join(f.name for f in dataclasses.fields(item))}")
                continue
            entries = [_dataclass(c, item, entry, f"{field}[{i}]") for i, entry in enumerate(table[name])]
            if all(e is not None for e in entries):
                kwargs[name] = tuple(entries)
            continue
        value = _coerce(table[name], hints[name])
        if value is MISSING:
            c.add(field, table[name], f"must be {_describe(hints[name])}")
        else:
            kwargs[name] = value
    if len(c.issues) > before:
        return None
    return cls(**kwargs)


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` converted to ``hint`` (int→float, list→tuple), or ``MISSING`` if it does not fit."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return value if value in args and type(value) in {type(a) for a in args} else MISSING
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            got = _coerce(value, arg)
            if got is not MISSING:
                return got
        return MISSING
    if origin in (tuple, list, Sequence):
        if not isinstance(value, list):
            return MISSING
        item = args[0] if args else Any
        items = [_coerce(v, item) for v in value]
        return MISSING if any(v is MISSING for v in items) else tuple(items)
    if origin in (dict, Mapping):
        return dict(value) if isinstance(value, dict) else MISSING
    if hint is Any:
        return value
    if hint is float:
        # No setting of kdsweep or a trainer means anything at inf or NaN (an optional limit
        # is None when absent), and NaN would pass every range check after this one.
        return float(value) if is_finite_number(value) else MISSING
    if isinstance(hint, type):
        return value if _is_type(value, hint) else MISSING
    return MISSING


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none (omit it)" if a is type(None) else _describe(a) for a in args)
    if origin in (tuple, list, Sequence):
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin in (dict, Mapping):
        return "a table"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _check_asha(c: _Collector, a: AshaConfig, table: Mapping[str, Any]) -> AshaConfig | None:
    """Ranges of ``[asha]``, and either ``metric`` (``mode``) or ``objectives`` in ``table``
    (the file's table: a defaulted ``mode`` is not a given one). Returns the config with both
    forms filled in (see :class:`AshaConfig`), or None after reporting a problem with them."""
    if a.min_epochs < 1:
        c.add("asha.min_epochs", a.min_epochs, "an integer >= 1")
    if not a.min_epochs <= a.max_epochs <= MAX_EPOCHS:
        c.add("asha.max_epochs", a.max_epochs, f"an integer from asha.min_epochs ({a.min_epochs}) to {MAX_EPOCHS}")
    if a.reduction_factor < 2:
        c.add("asha.reduction_factor", a.reduction_factor, "an integer >= 2")
    if a.eval_every_epochs < 1:
        c.add("asha.eval_every_epochs", a.eval_every_epochs, "an integer >= 1")
    if not 0 < a.extrapolate_chance < 1:
        c.add("asha.extrapolate_chance", a.extrapolate_chance, "a number between 0 and 1 (exclusive)")
    if a.min_epochs >= 1 and a.min_epochs <= a.max_epochs and a.reduction_factor >= 2:
        rungs = len(rung_ladder(a.min_epochs, a.max_epochs, a.reduction_factor))
        if not 1 <= a.brackets <= rungs:
            c.add("asha.brackets", a.brackets, f"an integer from 1 to {rungs} (the rungs of the ladder: bracket s starts at rung s)")
    single = [key for key in ("metric", "mode") if key in table]
    if "objectives" in table:
        if single:
            for key in single:
                c.add(f"asha.{key}", table[key], "remove it: asha.objectives is given, and a sweep ranks by either metric/mode or objectives")
            return None
        if not a.objectives:
            c.add("asha.objectives", [], 'at least one objective, e.g. [{ metric = "val_acc", mode = "max" }]')
            return None
        seen: set[str] = set()
        for i, o in enumerate(a.objectives):
            if o.metric in seen:
                c.add(f"asha.objectives[{i}].metric", o.metric, "a metric not named by an earlier objective")
            seen.add(o.metric)
        return _check_policy(c, dataclasses.replace(a, metric=a.objectives[0].metric, mode=a.objectives[0].mode))
    if "metric" not in table:
        c.add("asha.metric", MISSING, 'required (a string), or asha.objectives = [{ metric = "...", mode = "max" }, ...] for several objectives')
        return None
    return _check_policy(c, dataclasses.replace(a, objectives=(Objective(a.metric, a.mode),)))


def _check_policy(c: _Collector, a: AshaConfig) -> AshaConfig:
    """What the policy of ``asha.variant`` itself needs of ``[asha]`` (``Scheduler.problems``)."""
    # Imported here: the schedulers' modules import this one's types.
    from kdsweep.orchestrator.schedulers import scheduler_class

    for field, value, allowed in scheduler_class(a).problems(a):
        c.add(f"asha.{field}", value, allowed)
    return a


def _asha_document(a: AshaConfig) -> dict[str, Any]:
    """``[asha]`` as the frozen file writes it: ``metric`` and ``mode`` for one objective,
    ``objectives`` for several, never both, so that the document (and the hash) of a
    single-objective sweep is what it was before objectives existed."""
    doc = dataclasses.asdict(a)
    for key in ("metric", "mode") if a.multi_objective else ("objectives",):
        del doc[key]
    return doc


def _backend(c: _Collector, table: Any) -> BackendConfig | None:
    """``[backend]`` as :class:`BackendConfig`: its own keys, ``kind`` among the installed
    backends, and a ``[backend.<kind>]`` table for every installed backend that has options
    (each backend's own dataclass; its defaults when the file has none), then every check
    (:func:`_check_backend`). None after reporting a problem."""
    if not isinstance(table, Mapping):
        c.add("backend", table, "must be a table")
        return None
    specs = {kind: backend_spec(kind) for kind in backend_names()}
    own = [f.name for f in dataclasses.fields(BackendConfig) if f.name != "options"]
    tables = {kind: spec.Options for kind, spec in specs.items() if spec.Options is not None}
    before = len(c.issues)
    for key, value in table.items():
        if key not in own and key not in tables:
            c.add(f"backend.{key}", value, f"unknown key; valid: {', '.join([*own, *tables])}")
    kind = table.get("kind", BackendConfig.kind)
    if not (isinstance(kind, str) and kind in specs):
        c.add("backend.kind", kind, f"must be one of {', '.join(repr(k) for k in specs)}")
    common = _dataclass(c, BackendConfig, {k: v for k, v in table.items() if k in own and k != "kind"}, "backend")
    options = {k: _dataclass(c, options_cls, table.get(k, {}), f"backend.{k}") for k, options_cls in tables.items()}
    if len(c.issues) > before:
        return None
    backend: BackendConfig = dataclasses.replace(common, kind=kind, options=options)
    _check_backend(c, backend, specs)
    return backend


def _check_backend(c: _Collector, b: BackendConfig, specs: Mapping[str, type[BackendSpec]]) -> None:
    """Ranges of ``[backend]``'s own keys, then each installed backend's checks of its table."""
    if not 1 <= b.max_concurrent <= MAX_CONCURRENT:
        c.add("backend.max_concurrent", b.max_concurrent, f"an integer from 1 to {MAX_CONCURRENT}")
    if b.max_retries < 0:
        c.add("backend.max_retries", b.max_retries, "an integer >= 0")
    if b.cpus_per_trial < 1:
        c.add("backend.cpus_per_trial", b.cpus_per_trial, "an integer >= 1")
    if b.gpus_per_trial < 0:
        c.add("backend.gpus_per_trial", b.gpus_per_trial, "a number >= 0 (fractions pack trials onto one GPU)")
    if b.mem_gb <= 0:
        c.add("backend.mem_gb", b.mem_gb, "a number > 0")
    if b.timeout_min <= 0:
        c.add("backend.timeout_min", b.timeout_min, "a number > 0")
    for kind, spec in specs.items():
        for field, value, allowed in spec.check(kind, b.options.get(kind), b):
            c.add(field, value, allowed)


def _backend_document(b: BackendConfig, table: Mapping[str, Any]) -> dict[str, Any]:
    """``[backend]`` as the frozen file writes it: its own keys and the tables of the backends
    the file configures or runs on. Not every installed one's: a frozen file naming a
    backend that is later uninstalled could not be resumed."""
    doc: dict[str, Any] = {f.name: getattr(b, f.name) for f in dataclasses.fields(BackendConfig) if f.name != "options"}
    doc.update({kind: dataclasses.asdict(o) for kind, o in b.options.items() if kind in table or kind == b.kind})
    return doc


def to_toml(doc: Mapping[str, Any]) -> str:
    """Serialise a normalised sweep document (scalars, lists, nested tables) as TOML."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{_key(name)}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    """A TOML basic string: UTF-8 as is (a character outside the BMP too, which JSON's
    escapes would split into surrogates that TOML rejects), control characters escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"cannot write a lone surrogate ({code:#x}) to TOML: {text!r}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")
