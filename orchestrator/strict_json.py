"""JSON that every reader accepts: what ``report --format json`` and ``simulate --format
json`` print.

Python's ``json`` writes a non-finite float as a bare ``NaN`` or ``Infinity``, which strict
readers (``JSON.parse``, ``jq``, most languages' parsers) refuse, so one NaN a trainer
returned, or one undefined statistic, would make the whole report unreadable to them.
Here such a value is ``null``, and inside an object a sibling ``<key>_non_finite`` says
which it was (``"NaN"``, ``"Infinity"`` or ``"-Infinity"``), so null keeps meaning "absent"
where nothing was non-finite.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The sibling key that says what a nulled value was.
NON_FINITE_SUFFIX = "_non_finite"


def dumps(value: Any, *, reasons: bool = True, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value, reasons=reasons)``, refusing any
    non-finite float left (there is none); ``options`` go to ``json.dumps``."""
    return json.dumps(finite(value, reasons=reasons), allow_nan=False, **options)


def finite(value: Any, *, reasons: bool = True) -> Any:
    """``value`` with every NaN or infinite float, anywhere inside it, as None (and, inside
    a dict, with ``reasons``, its ``<key>_non_finite`` sibling naming it); tuples become
    lists. Without ``reasons`` for a consumer that rejects unknown keys (plotly's figures)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            out[key] = finite(item, reasons=reasons)
            if reasons and isinstance(item, float) and not math.isfinite(item):
                out[f"{key}{NON_FINITE_SUFFIX}"] = json.dumps(item)
        return out
    if isinstance(value, (list, tuple)):
        return [finite(item, reasons=reasons) for item in value]
    return value
