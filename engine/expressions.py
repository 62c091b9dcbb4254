"""Safe value expressions for `set` and offers: literals, fact references, arithmetic.

No names, no attribute access, no eval: an expression is a tree of IR nodes built by the
compiler from YAML mappings such as `{mul: [{fact: seats.current}, {fact: usage.growth_90d}]}`.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from . import dates
from .errors import DecisionError
from .ir import Expr, FactRef

ARITY = {
    "add": (2, None), "sub": (2, 2), "mul": (2, None), "div": (2, 2),
    "min": (1, None), "max": (1, None), "round": (1, 2), "ceil": (1, 1), "floor": (1, 1), "abs": (1, 1),
    "coalesce": (2, None),
    "days_between": (2, 2), "add_days": (2, 2), "add_months": (2, 2), "length": (1, 1),
}
DATE_OPS = ("days_between", "add_days", "add_months")

MISSING = object()


def evaluate(value, wm: dict):
    """The value of an expression; MISSING when a referenced fact is absent."""
    if isinstance(value, FactRef):
        return wm.get(value.path, MISSING)
    if not isinstance(value, Expr):
        return value
    if value.op == "pick":
        from .conditions import pick  # conditions evaluate expressions; a pick evaluates a condition
        return pick(value.args[0].path, value.args[1], value.args[2], wm)
    if value.op == "coalesce":
        for a in value.args:
            v = evaluate(a, wm)
            if v is not MISSING:
                return v
        return MISSING
    args = [evaluate(a, wm) for a in value.args]
    if any(a is MISSING for a in args):
        return MISSING
    return _apply(value.op, args)


def compiled(value):
    """`evaluate(value, wm)` as a function of `wm`, the tree walked once instead of per call
    (the engines prepare every action's expressions when they are built)."""
    if isinstance(value, FactRef):
        path = value.path
        return lambda wm: wm.get(path, MISSING)
    if not isinstance(value, Expr):
        return lambda wm: value
    if value.op == "pick":
        return lambda wm: evaluate(value, wm)
    op, fns = value.op, tuple(compiled(a) for a in value.args)
    if op == "coalesce":
        def coalesce(wm):
            for f in fns:
                v = f(wm)
                if v is not MISSING:
                    return v
            return MISSING
        return coalesce
    if len(fns) == 2:
        f, g = fns
        binary = _BINARY.get(op)
        if binary is None:
            def two(wm):
                a, b = f(wm), g(wm)
                if a is MISSING or b is MISSING:
                    return MISSING
                return _apply(op, [a, b])
            return two

        def two_fast(wm):
            a, b = f(wm), g(wm)
            if a is MISSING or b is MISSING:
                return MISSING
            try:
                return binary(a, b)
            except TypeError as exc:
                raise DecisionError("expression-type", f"{op} over non-numbers: {exc}") from None
        return two_fast

    def many(wm):
        args = [f(wm) for f in fns]
        for a in args:
            if a is MISSING:
                return MISSING
        return _apply(op, args)
    return many


def _round(args):
    digits = int(args[1]) if len(args) > 1 else 0
    # half away from zero on the decimal the author sees (1.005 -> 1.01), not banker's rounding
    q = Decimal(repr(args[0])).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return int(q) if digits <= 0 else float(q)


def _mul(args):
    out = 1
    for a in args:
        out *= a
    return _clean(out)


def _div(args):
    if args[1] == 0:
        raise DecisionError("division-by-zero", "an expression divided by zero")
    return _clean(args[0] / args[1])


_IMPL = {
    "add": lambda args: _clean(sum(args)),
    "sub": lambda args: _clean(args[0] - args[1]),
    "mul": _mul,
    "div": _div,
    "min": min,
    "max": max,
    "round": _round,
    "ceil": lambda args: math.ceil(round(args[0], 9)),
    "floor": lambda args: math.floor(round(args[0], 9)),
    "abs": lambda args: abs(args[0]),
    "days_between": lambda args: dates.days_between(args[0], args[1]),
    "add_days": lambda args: dates.add_days(args[0], _number(args[1])),
    "add_months": lambda args: dates.add_months(args[0], _number(args[1])),
    "length": lambda args: _length(args[0]),
}


# the two-argument forms of _IMPL's sum, difference, product, min and max, computed the same way
# (0 + a + b: sum starts from 0, so -0.0 + -0.0 gives 0.0 as it does there) without a list
_BINARY = {
    "add": lambda a, b: _clean(0 + a + b),
    "sub": lambda a, b: _clean(a - b),
    "mul": lambda a, b: _mul((a, b)),
    "min": min,
    "max": max,
}


def _number(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{x!r} is not a number")
    return x


def _length(x):
    if not isinstance(x, (list, str)):
        raise TypeError(f"{x!r} is not a list")
    return len(x)


def _apply(op: str, args: list):
    impl = _IMPL.get(op)
    if impl is None:
        raise DecisionError("expression", f"unknown operator {op}")
    try:
        return impl(args)
    except TypeError as exc:
        raise DecisionError("expression-type", f"{op} over non-numbers: {exc}") from None
    except dates.DateError as exc:
        raise DecisionError("expression-type", f"{op}: {exc}") from None


def _clean(x):
    """Round float noise (0.1 + 0.2) so results are stable and readable."""
    if type(x) is float:
        return round9(x)
    return x


def round9(x: float) -> float:
    """`round(x, 9)`, without its correctly rounded decimal conversion (about 5k instructions)
    when x is already a 9-place decimal, as most results are. Below 2**22 a double's spacing is
    under 1e-9, so if the nearest integer r to x * 1e9 gives back x as r / 1e9, r is the integer
    nearest to the exact x * 1e9, and round(x, 9), the double nearest to r / 1e9, is x."""
    if -4194304.0 < x < 4194304.0 and round(x * 1e9) / 1e9 == x:
        return x
    return round(x, 9)


def refs(value) -> set[str]:
    if isinstance(value, FactRef):
        return {value.path}
    if isinstance(value, Expr) and value.op == "pick":
        from .conditions import paths_read
        return {value.args[0].path} | (paths_read(value.args[2]) if value.args[2] is not None else set())
    if isinstance(value, Expr):
        out = set()
        for a in value.args:
            out |= refs(a)
        return out
    return set()
