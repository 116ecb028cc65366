"""Plug-ins found through entry points: trainers (group ``kdsweep.trainers``) and backends
(group ``kdsweep.backends``). kdsweep registers its own the same way, in its
``pyproject.toml``, so another installed package adds one without editing kdsweep.

Light on purpose: the config loader reads both registries, and ``kdsweep status`` must start
without torch or Ray, so an entry point names a light class, never a heavy module.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

#: ``(field, value, allowed)``: one invalid field, as the config loader reports it.
Issue = tuple[str, object, str]

T = TypeVar("T")


class Registry(Generic[T]):
    """The entry points of ``group``, each naming a subclass of ``base``; ``noun`` names one
    in messages ("trainer"). The installed entry points are read once per process (a plug-in
    installed later is seen after :meth:`refresh`); a class is imported when asked for."""

    def __init__(self, group: str, base: type[T], noun: str) -> None:
        self.group = group
        self.base = base
        self.noun = noun
        self._entries: dict[str, EntryPoint] | None = None

    def refresh(self) -> None:
        """Read the installed entry points again at the next question."""
        self._entries = None

    def _installed(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            self._entries = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._installed())

    def load(self, name: str) -> type[T]:
        """The class registered under ``name``. ``KeyError`` lists the valid names;
        ``TypeError`` when the entry point names no subclass of ``base``."""
        try:
            entry = self._installed()[name]
        except KeyError:
            raise KeyError(f"unknown {self.noun} {name!r}; valid: {', '.join(self.names())}") from None
        loaded = entry.load()
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            raise TypeError(f"entry point {name!r} = {entry.value!r} of group {self.group} is no {self.base.__name__} subclass")
        return loaded


def import_target(target: str) -> Any:
    """What ``"module:name"`` names, importing the module now: how a plug-in's light class
    points at its heavy part (a trainer's training, a backend's class), imported only where
    it runs."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
