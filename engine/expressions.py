"""Safe value expressions for `set` and offers: literals, fact references, arithmetic.

No names, no attribute access, no eval: an expression is a tree of IR nodes built by the
compiler from YAML mappings such as `{mul: [{fact: seats.current}, {fact: usage.growth_90d}]}`.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from .errors import DecisionError
from .ir import Expr, FactRef

ARITY = {
    "add": (2, None), "sub": (2, 2), "mul": (2, None), "div": (2, 2),
    "min": (1, None), "max": (1, None), "round": (1, 2), "ceil": (1, 1), "floor": (1, 1), "abs": (1, 1),
    "coalesce": (2, None),
}

MISSING = object()


def evaluate(value, wm: dict):
    """The value of an expression; MISSING when a referenced fact is absent."""
    if isinstance(value, FactRef):
        return wm.get(value.path, MISSING)
    if not isinstance(value, Expr):
        return value
    if value.op == "coalesce":
        for a in value.args:
            v = evaluate(a, wm)
            if v is not MISSING:
                return v
        return MISSING
    args = [evaluate(a, wm) for a in value.args]
    if any(a is MISSING for a in args):
        return MISSING
    op = value.op
    try:
        if op == "add":
            return _clean(sum(args))
        if op == "sub":
            return _clean(args[0] - args[1])
        if op == "mul":
            out = 1
            for a in args:
                out *= a
            return _clean(out)
        if op == "div":
            if args[1] == 0:
                raise DecisionError("division-by-zero", "an expression divided by zero")
            return _clean(args[0] / args[1])
        if op == "min":
            return min(args)
        if op == "max":
            return max(args)
        if op == "round":
            digits = int(args[1]) if len(args) > 1 else 0
            # half away from zero on the decimal the author sees (1.005 -> 1.01), not banker's rounding
            q = Decimal(repr(args[0])).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
            return int(q) if digits <= 0 else float(q)
        if op == "ceil":
            return math.ceil(round(args[0], 9))
        if op == "floor":
            return math.floor(round(args[0], 9))
        if op == "abs":
            return abs(args[0])
    except TypeError as exc:
        raise DecisionError("expression-type", f"{op} over non-numbers: {exc}") from None
    raise DecisionError("expression", f"unknown operator {op}")


def _clean(x):
    """Round float noise (0.1 + 0.2) so results are stable and readable."""
    if isinstance(x, float):
        return round(x, 9)
    return x


def refs(value) -> set[str]:
    if isinstance(value, FactRef):
        return {value.path}
    if isinstance(value, Expr):
        out = set()
        for a in value.args:
            out |= refs(a)
        return out
    return set()
