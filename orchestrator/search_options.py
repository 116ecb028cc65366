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
from collections.abc import Mapping
from typing import Any, Literal, get_args

SearcherName = Literal["tpe", "random", "gp", "ga"]
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
