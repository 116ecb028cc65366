"""Text that kdsweep did not write — from a sweep file, a trainer, a result, an error, a path —
shown as data: as written, and inert.

Two things in such a string would act on a terminal rather than be shown: rich's markup
(``[bold red]`` restyles, ``[link=...]`` makes a hyperlink, a stray ``[/x]`` raises
``MarkupError`` and ends the command) and control characters (ESC starts a sequence that
retitles the window, moves the cursor or hides what follows; BEL, CSI 0x9b and the bidi
overrides that reorder what is shown). Rich parses markup only in ``str`` renderables, so
:func:`plain` and :class:`DataTable` hand it ``Text`` objects; :func:`visible` replaces every
control character by its Python escape (``\\x1b``), which also keeps it visible in the HTML
report (``html_report`` escapes the result for HTML).

Every report, the live view and kdsweep's own warning lines pass such text through here.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

#: What is never shown raw: C0 controls (tab and newline included: one value is one line),
#: DEL and the C1 controls (0x9b is a one-byte CSI to many terminals), the bidi marks,
#: embeddings, overrides and isolates (they reorder the text around them: "Trojan Source"),
#: and the line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def visible(value: object, *, lines: bool = False) -> str:
    """``str(value)`` with every control character (:data:`_CONTROL`) replaced by its Python
    escape (ESC → ``\\x1b``, newline → ``\\n``); with ``lines``, newlines are kept (text of
    several lines, such as a drawing). Markup is left as it is: the result is for a ``Text``
    (:func:`plain`) or for HTML escaping."""
    if lines:
        return "\n".join(_CONTROL.sub(_escape, line) for line in str(value).split("\n"))
    return _CONTROL.sub(_escape, str(value))


def plain(value: object, style: str = "", *, lines: bool = False) -> Text:
    """``value`` as a rich ``Text``: never read as markup, control characters shown as
    escapes (:func:`visible`), in ``style``."""
    return Text(visible(value, lines=lines), style=style)


def _as_data(renderable: RenderableType) -> RenderableType:
    return plain(renderable) if isinstance(renderable, str) else renderable


class DataTable(Table):
    """A rich ``Table`` whose title, column headers and cells given as strings are data
    (:func:`plain`); other renderables (a styled ``Text``) are kept as they are."""

    def __init__(self, *, title: str | Text | None = None, **kwargs: Any) -> None:
        super().__init__(title=plain(title) if isinstance(title, str) else title, **kwargs)

    def add_column(self, header: RenderableType = "", footer: RenderableType = "", **kwargs: Any) -> None:
        super().add_column(_as_data(header), _as_data(footer), **kwargs)

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(*(None if r is None else _as_data(r) for r in renderables), **kwargs)
