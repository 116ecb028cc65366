"""The searchers a sweep file may name and the options each one takes.

Kept apart from ``search.py`` because the config loader, which workers and reports import,
must validate ``searcher`` and its options without importing hyperopt, Optuna or torch (a
second or more of start-up per process). ``search.Searcher`` builds its algorithm from the
same table, so an option is declared once.

Options are top-level keys of a sweep file (``n_startup_trials = 150``,
``population_size = 20``). An option of another searcher is an error, not silently ignored:
``--set searcher=ga`` on a TPE file must not pretend that its ``n_startup_trials`` still
means something.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from kdsweep.orchestrator.space import ParamSpec

SearcherName = Literal["tpe", "random", "gp", "ga"]
#: How a trial ended, as a searcher is told (``search.Searcher.tell``).
TellStatus = Literal["ok", "fail", "diverged", "infeasible"]
SEARCHERS: tuple[str, ...] = get_args(SearcherName)


@dataclasses.dataclass(frozen=True)
class Option:
    """One integer option of a searcher: its default, its least valid value, what it means."""

    default: int
    minimum: int
    meaning: str


_STARTUP = Option(
    10, 1, "random proposals until this many trials have been told a finite value; then the model proposes"
)

#: searcher → {option name → Option}. ``ga``'s generations are not an option, because the
#: budget already fixes them: a generation is ``population_size`` consecutive proposals, so a
#: sweep runs num_trials / population_size of them (a 20 × 20 GA is ``population_size = 20``,
#: ``num_trials = 400``; at seed 002's budget of 300 evaluations, 15 generations of 20).
SEARCHER_OPTIONS: dict[str, dict[str, Option]] = {
    "tpe": {"n_startup_trials": _STARTUP},
    "random": {},
    "gp": {"n_startup_trials": _STARTUP},
    "ga": {"population_size": Option(20, 2, "individuals per generation (NSGA-II needs 2 parents)")},
}

#: The most values an int or quniform parameter may take under searcher ``gp``: Optuna's
#: GPSampler lists every one of them (an array of float64) at each proposal. Measured
#: (Optuna 5.0, one such parameter beside a uniform one, 2 cores): 10**6 values add 15 MB of
#: peak memory and 0.2-0.3 s per proposal; 10**7 add 136 MB (a space of 13 such parameters:
#: 1.8 GB per proposal); 2**53 fail with MemoryError. tpe, random and ga draw such a
#: parameter as a float and round it, whatever its range.
GP_MAX_GRID = 10**6

#: Every option name of any searcher: the top-level keys a sweep file may use for them.
OPTION_NAMES: tuple[str, ...] = tuple(dict.fromkeys(n for opts in SEARCHER_OPTIONS.values() for n in opts))


def resolve_options(searcher: Any, given: Mapping[str, Any]) -> tuple[dict[str, int], list[tuple[str, Any, str]]]:
    """The options of ``searcher`` (``given`` over the defaults) and every problem found.

    ``given`` maps option names to values as read (from a file or a caller). A problem is a
    ``(field, value, allowed)`` triple: an option that ``searcher`` does not take (naming the
    options it does take), or a value that is not an integer >= the option's minimum. An
    unknown ``searcher`` (or not a string, as a file may hold) yields no options and no
    problems; the config loader reports the name itself.
    """
    known = SEARCHER_OPTIONS.get(searcher) if isinstance(searcher, str) else None
    if known is None:
        return {}, []
    problems: list[tuple[str, Any, str]] = []
    takes = ", ".join(known) if known else "none"
    for name, value in given.items():
        if name not in known:
            problems.append((name, value, f"not an option of searcher {searcher!r}; its options: {takes}"))
    resolved: dict[str, int] = {}
    for name, option in known.items():
        value = given.get(name, option.default)
        if isinstance(value, bool) or not isinstance(value, int) or value < option.minimum:
            problems.append((name, value, f"an integer >= {option.minimum} ({option.meaning})"))
        else:
            resolved[name] = value
    return resolved, problems


def space_problems(searcher: Any, space: Sequence[ParamSpec]) -> list[tuple[str, Any, str]]:
    """What ``searcher`` cannot search in ``space``, as ``(field, value, allowed)`` triples
    (``resolve_options``' form): under ``gp``, an int or quniform parameter with more than
    :data:`GP_MAX_GRID` values. Every other searcher takes any valid space."""
    if searcher != "gp":
        return []
    problems: list[tuple[str, Any, str]] = []
    for spec in space:
        size = spec.grid_size()
        if size is not None and size > GP_MAX_GRID:
            shown = {"low": spec.low, "high": spec.high, **({"q": spec.q} if spec.q is not None else {})}
            allowed = f"at most {GP_MAX_GRID} values under searcher 'gp' (Optuna's GPSampler lists every value at each proposal); this range has {size}: narrow it (or widen q)"
            problems.append((f"space.{spec.name}", shown, allowed))
    return problems
