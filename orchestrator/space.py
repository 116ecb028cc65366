"""Search-space parameters: what a sweep file's ``[space]`` entries become.

Kept apart from ``search.py`` so that workers and reports, which need parameter types but
never propose anything, do not import hyperopt (a second of start-up per process).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, cast, get_args

import numpy as np
import pyarrow as pa

ParamKind = Literal["uniform", "loguniform", "quniform", "int", "choice"]

#: The Python types a parameter value can have, one per parameter.
ScalarType = type[bool] | type[int] | type[float] | type[str]

# Relative tolerance for "is a multiple of q": bounds and fixed points come from decimal text
# (TOML), and 0.3 / 0.1 is 2.9999999999999996 in binary floating point.
_GRID_RTOL = 1e-9

#: The integers an int parameter's values (and a choice's) can be: the results schema stores
#: them in an int64 column (``arrow_type``); 2**63 fails the first append.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: The largest magnitude of an int parameter's bounds and of a quniform grid index: every
#: integer up to 2**53 is a float64 exactly, and hyperopt and Optuna sample int and stepped
#: parameters as floats and round them. Beyond it some integers cannot be proposed, and a
#: bound such as 2**63 - 1 rounds to 2**63, outside int64 (and "a multiple of q" can no longer
#: be told apart from any float).
MAX_EXACT_INT = 2**53

#: The narrowest range (high - low) of a uniform or quniform parameter: hyperopt's TPE sets
#: its narrowest Parzen kernel to the range / 100 and asserts that it is > 0, which failed at
#: a range of 5e-324 and held at 1e-320 (hyperopt 0.3, measured); the smallest normal float
#: has a margin. The widest is a finite one: numpy's and Optuna's uniform draws raise
#: OverflowError when high - low overflows (measured at ±1.7e308 for random, tpe, gp, ga).
MIN_WIDTH = sys.float_info.min


def missing_and_unknown(given: Iterable[str], expected: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``expected`` names absent from ``given`` (in expected order) and the names of
    ``given`` not expected (sorted): what a message about a parameter set should list."""
    have = set(given)
    return [n for n in expected if n not in have], sorted(have - set(expected))


def _scalar_type(value: Any) -> ScalarType | None:
    """The parameter type ``value`` can stand for, or None for anything else.

    bool is tested first because it subclasses int; numpy scalars count as their Python
    counterparts (pandas hands them out), NaN is not excluded here.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool
    if isinstance(value, numbers.Integral):
        return int
    if isinstance(value, numbers.Real):
        return float
    if isinstance(value, str):
        return str
    return None


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a number (an int or a float, not a bool) that a float holds
    finitely: not inf, NaN, nor an integer too large for a float (Python's are unbounded)."""
    if _scalar_type(value) not in (int, float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _choice_type(name: str, values: tuple[Any, ...]) -> ScalarType:
    """A choice's declared type: one of bool/int/float/str; ints mixed with floats → float."""
    types = {_scalar_type(v) for v in values}
    if types == {int, float}:
        return float
    if len(types) == 1:
        (only,) = types
        if only is not None:
            return only
    raise ValueError(
        f"parameter {name!r}: choice values must all be ints/floats, all strings or all bools,"
        f" got {values!r}"
    )


def _is_multiple(x: float, q: float) -> bool:
    k = x / q
    return abs(k - round(k)) <= _GRID_RTOL * max(1.0, abs(k))


def _decimals(q: float) -> int:
    """Decimal places of ``q`` as written (0.05 → 2): the precision a multiple of q needs."""
    exponent = Decimal(repr(float(q))).as_tuple().exponent
    # Only NaN and infinities have a non-int exponent, and q is validated finite.
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _snap(q: float, decimals: int, x: float) -> float:
    """The multiple of ``q`` nearest ``x``, rounded to q's ``decimals`` (3 * 0.1 → 0.3, not
    0.30000000000000004), so that values read back from the store equal the proposals."""
    return round(round(x / q) * q, decimals)


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter, validated on construction.

    ``low``/``high`` bound uniform, loguniform, quniform and int (int bounds are inclusive and
    must be integral; loguniform needs ``low > 0``); ``q`` is quniform's step, and ``low`` and
    ``high`` must be multiples of it (hyperopt proposes ``round(u / q) * q`` for ``u`` in
    ``[low, high)``, which leaves the bounds otherwise). ``values`` lists a choice's options:
    all ints/floats, all strings or all bools, no duplicates, no NaN. Fields that do not apply
    to the kind must be left unset. Violations raise ValueError naming the parameter.
    """

    name: str
    kind: ParamKind
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"parameter name must be a non-empty string, got {self.name!r}")
        if self.kind not in get_args(ParamKind):
            raise ValueError(
                f"parameter {self.name!r}: kind must be one of {get_args(ParamKind)},"
                f" got {self.kind!r}"
            )
        if self.kind == "choice":
            self._validate_choice()
        else:
            self._validate_numeric()

    def _validate_choice(self) -> None:
        if self.low is not None or self.high is not None or self.q is not None:
            raise ValueError(f"parameter {self.name!r}: a choice takes values, not low/high/q")
        if not self.values:
            raise ValueError(f"parameter {self.name!r}: a choice needs at least one value")
        vtype = _choice_type(self.name, self.values)
        # Checked before anything converts a value: float(10**400) raises OverflowError.
        if vtype in (int, float) and any(_scalar_type(v) is int and not INT64_MIN <= v <= INT64_MAX for v in self.values):
            raise ValueError(f"parameter {self.name!r}: choice integers must lie in [-2**63, 2**63 - 1] (the results' int64 column), got {self.values!r}")
        # NaN equals nothing (not even itself), so a proposal of it matches no option; an
        # infinity is no setting a trainer can use, and no report can average it.
        if vtype is float and not all(math.isfinite(v) for v in self.values):
            raise ValueError(f"parameter {self.name!r}: choice numbers must be finite (not NaN or infinite), got {self.values!r}")
        if len({vtype(v) for v in self.values}) != len(self.values):
            raise ValueError(
                f"parameter {self.name!r}: choice values must be distinct, got {self.values!r}"
            )

    def _validate_numeric(self) -> None:
        if self.values:
            raise ValueError(f"parameter {self.name!r}: values are only for kind 'choice'")
        if self.q is not None and self.kind != "quniform":
            raise ValueError(f"parameter {self.name!r}: q is only for kind 'quniform'")
        for field in ("low", "high"):
            bound = getattr(self, field)
            if not is_finite_number(bound):
                raise ValueError(
                    f"parameter {self.name!r}: {self.kind} needs a finite number {field},"
                    f" got {bound!r}"
                )
        low, high = self._bounds()
        if not low < high:
            raise ValueError(
                f"parameter {self.name!r}: low must be < high, got low={low!r} high={high!r}"
            )
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"parameter {self.name!r}: loguniform needs low > 0, got {low!r}")
        if self.kind == "loguniform" and not math.log(low) < math.log(high):
            # The samplers draw log(x) uniformly between the bounds' logs.
            raise ValueError(
                f"parameter {self.name!r}: loguniform needs log(low) < log(high) as floats,"
                f" got {low!r}..{high!r} (too close together)"
            )
        if self.kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(
                f"parameter {self.name!r}: int bounds must be integers, got {low!r}..{high!r}"
            )
        if self.kind == "int" and not -MAX_EXACT_INT <= low < high <= MAX_EXACT_INT:
            raise ValueError(
                f"parameter {self.name!r}: int bounds must lie in [-2**53, 2**53] (integers"
                f" the samplers' floats hold exactly), got {low!r}..{high!r}"
            )
        if self.kind in ("uniform", "quniform") and not MIN_WIDTH <= high - low < math.inf:
            raise ValueError(
                f"parameter {self.name!r}: high - low must be a finite number >= {MIN_WIDTH!r}"
                f" (what the samplers draw from), got {high - low!r}"
            )
        if self.kind == "quniform":
            if _scalar_type(self.q) not in (int, float) or not (
                math.isfinite(self._step()) and self._step() > 0
            ):
                raise ValueError(
                    f"parameter {self.name!r}: quniform needs a finite q > 0, got {self.q!r}"
                )
            q = self._step()
            if not max(abs(low), abs(high)) / q <= MAX_EXACT_INT:
                raise ValueError(
                    f"parameter {self.name!r}: quniform low / q and high / q must lie in"
                    f" [-2**53, 2**53] (grid indices the samplers' floats hold exactly),"
                    f" got {low!r}..{high!r} with q={q!r}"
                )
            if not (_is_multiple(low, q) and _is_multiple(high, q)):
                raise ValueError(
                    f"parameter {self.name!r}: quniform low and high must be multiples of"
                    f" q={q!r}, got {low!r}..{high!r}"
                )

    def _bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric kind, which ``__post_init__`` has checked are numbers."""
        return cast(float, self.low), cast(float, self.high)

    def _step(self) -> float:
        """quniform's q, which ``__post_init__`` has checked is a positive number."""
        return cast(float, self.q)

    def grid_size(self) -> int | None:
        """How many values an int or quniform parameter takes; None for the other kinds."""
        if self.kind not in ("int", "quniform"):
            return None
        low, high = self._bounds()
        # Validated: the bounds (int) or the grid indices (quniform) are exact integers.
        return round((high - low) / (self._step() if self.kind == "quniform" else 1)) + 1

    def arrow_type(self) -> pa.DataType:
        """The parameter's column type in the results schema."""
        return _ARROW_TYPES[Codec.of(self).ptype]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take (type, bounds, grid, options).

        Ints are accepted for float parameters; a float is never accepted for an int one.
        """
        return Codec.of(self).contains(value)


_ARROW_TYPES: dict[ScalarType, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
}


@dataclass(frozen=True)
class Codec:
    """Conversions between a parameter's values, hyperopt's ``misc.vals`` and user input.

    Built once per parameter by the Searcher, since decoding and encoding sit on the ask path
    and working out a choice's type scans its values.
    """

    spec: ParamSpec
    #: The Python type of every value of the parameter (the scalar of ``arrow_type``).
    ptype: ScalarType
    #: choice: the values as ``ptype``, and each one's index (hyperopt stores the index).
    options: tuple[Any, ...]
    index: dict[Any, int]
    #: quniform: decimal places of q (see ``_snap``).
    decimals: int

    @classmethod
    def of(cls, spec: ParamSpec) -> Codec:
        if spec.kind == "choice":
            ptype = _choice_type(spec.name, spec.values)
            options = tuple(ptype(v) for v in spec.values)
            # Keys are all of one type (ParamSpec validation), so True and 1 never collide.
            return cls(spec, ptype, options, {v: i for i, v in enumerate(options)}, 0)
        ptype = int if spec.kind == "int" else float
        decimals = _decimals(spec._step()) if spec.kind == "quniform" else 0
        return cls(spec, ptype, (), {}, decimals)

    def contains(self, value: Any) -> bool:
        """``ParamSpec.contains``, with this codec already built."""
        try:
            self.normalise(value)
        except ValueError:
            return False
        return True

    def normalise(self, value: Any) -> Any:
        """``value`` as the plain Python scalar of the parameter's declared type.

        quniform values snap to their grid point (see ``_snap``). Raises ValueError saying what
        is allowed when ``value`` is not a value of the parameter.
        """
        spec = self.spec
        vtype = _scalar_type(value)
        if spec.kind == "choice":
            if vtype is self.ptype or (self.ptype is float and vtype is int):
                option = self.ptype(value)
                if option in self.index:
                    return option
            raise ValueError(f"parameter {spec.name!r}: {value!r} is not one of {spec.values!r}")
        low, high = spec._bounds()
        if spec.kind == "int":
            if vtype is int and low <= value <= high:
                return int(value)
            raise ValueError(
                f"parameter {spec.name!r}: {value!r} is not an integer in [{low!r}, {high!r}]"
            )
        # NaN fails the comparison, so no separate finiteness check is needed.
        if vtype not in (int, float) or not low <= value <= high:
            raise ValueError(
                f"parameter {spec.name!r}: {value!r} is not a number in [{low!r}, {high!r}]"
            )
        if spec.kind == "quniform":
            if not _is_multiple(value, spec._step()):
                raise ValueError(
                    f"parameter {spec.name!r}: {value!r} is not a multiple of q={spec.q!r}"
                )
            return _snap(spec._step(), self.decimals, value)
        return float(value)

    def encode(self, value: Any) -> int | float:
        """A normalised value as hyperopt stores it in ``misc.vals``: choice index, else float."""
        if self.spec.kind == "choice":
            return self.index[value]
        return float(value)

    def decode(self, raw: Any) -> Any:
        """A ``misc.vals`` entry proposed by hyperopt as the parameter's normalised value."""
        kind = self.spec.kind
        if kind == "choice":
            return self.options[int(raw)]
        if kind == "int":
            # The quniform bounds in ``_hyperopt_expr`` make round() land inside [low, high].
            return int(round(float(raw)))
        if kind == "quniform":
            return _snap(self.spec._step(), self.decimals, float(raw))
        low, high = self.spec._bounds()
        # Clamp: exp(log(low)) and low + (high - low) * u can miss the bounds by one ulp.
        return min(max(float(raw), float(low)), float(high))
