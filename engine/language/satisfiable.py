"""Can a conjunction of tests ever hold? Used to refuse rules that can never fire and to
find overlapping rows of `unique` tables. Sound for what it rejects: a conjunction is only
reported unsatisfiable when no value could satisfy it."""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone

from .. import dates
from ..conditions import dnf, nnf
from ..ir import COMPARISONS, COMPUTED_OPS, All, Any_, Calc, FactRef, Not, Test

BOUNDS = {"lt", "lte", "gt", "gte", "between"}


class _Domain:
    def __init__(self, enum=()):
        self.present = None
        self.allowed = set(enum) if enum else None
        self.excluded = set()
        self.lo, self.lo_inc, self.hi, self.hi_inc = -math.inf, False, math.inf, False
        self.valued = False

    def bound(self, op, v):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return
        if op in ("gt", "gte"):
            inc = op == "gte"
            if v > self.lo or (v == self.lo and not inc):
                self.lo, self.lo_inc = v, inc
        else:
            inc = op == "lte"
            if v < self.hi or (v == self.hi and not inc):
                self.hi, self.hi_inc = v, inc

    def in_bounds(self, v) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return self.lo == -math.inf and self.hi == math.inf
        if v < self.lo or (v == self.lo and not self.lo_inc):
            return False
        if v > self.hi or (v == self.hi and not self.hi_inc):
            return False
        return True

    def ok(self) -> bool:
        if self.present is False and self.valued:
            return False
        if self.present is False:
            return True
        if self.allowed is not None:
            return any(v not in self.excluded and self.in_bounds(v) for v in self.allowed)
        if self.lo > self.hi:
            return False
        if self.lo == self.hi:
            return self.lo_inc and self.hi_inc and self.lo not in self.excluded
        return True


def conjunction_satisfiable(tests, enums: dict | None = None) -> bool:
    return _solve(tests, enums) is not None


def witness(cond, enums: dict | None = None) -> dict | None:
    """Values that make the condition hold (a missing path left out), or None when none
    was found: the example a warning about overlapping rows shows."""
    on_dates: set = set()
    clauses = dnf(nnf(_undated(cond, on_dates)))
    for clause in clauses or ():
        domains = _solve(clause, enums)
        if domains is not None:
            return {p: _as_date(_pick(d)) if p in on_dates else _pick(d)
                    for p, d in sorted(domains.items()) if d.present is not False}
    return None


def _undated(cond, on_dates: set):
    """A fact compared with a date literal (a `calc` test) as a comparison of instants, so the
    bounds of date cells and conditions are reasoned about like numbers; `on_dates` collects
    the paths so compared."""
    if isinstance(cond, (All, Any_)):
        return dataclasses.replace(cond, items=tuple(_undated(c, on_dates) for c in cond.items))
    if isinstance(cond, Not):
        return dataclasses.replace(cond, item=_undated(cond.item, on_dates))
    if isinstance(cond, Test) and cond.op == "calc" and isinstance(cond.value, Calc):
        c = cond.value
        if isinstance(c.left, FactRef) and c.left.path == cond.path and c.op in COMPARISONS \
                and dates.is_temporal(c.right):
            on_dates.add(cond.path)
            return Test(cond.path, c.op, dates.parse(c.right).timestamp(), cond.loc)
    return cond


def _as_date(v) -> str:
    at = datetime.fromtimestamp(v, timezone.utc)
    return at.date().isoformat() if at == datetime(at.year, at.month, at.day, tzinfo=timezone.utc) \
        else at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(d: _Domain):
    if d.allowed is not None:
        for v in sorted(d.allowed, key=repr):
            if v not in d.excluded and d.in_bounds(v):
                return v
    numeric = d.lo != -math.inf or d.hi != math.inf or not any(isinstance(v, str) for v in d.excluded)
    if not numeric:
        n = 0
        while f"other{n or ''}" in d.excluded:
            n += 1
        return f"other{n or ''}"
    if d.lo == d.hi:
        return d.lo
    if d.lo_inc:
        candidates = [d.lo]
    elif d.hi_inc:
        candidates = [d.hi]
    elif d.lo == -math.inf and d.hi == math.inf:
        candidates = [0]
    elif d.lo == -math.inf:
        candidates = [d.hi - 1]
    elif d.hi == math.inf:
        candidates = [d.lo + 1]
    else:
        candidates = [(d.lo + d.hi) / 2]
    v = candidates[0]
    while v in d.excluded and d.in_bounds(v + 1):
        v += 1
    return v


def _solve(tests, enums: dict | None = None) -> dict | None:
    enums = enums or {}
    domains: dict[str, _Domain] = {}

    def dom(path):
        if path not in domains:
            domains[path] = _Domain(enums.get(path, ()))
        return domains[path]

    for t in tests:
        if t.op.lstrip("!") in COMPUTED_OPS:
            continue  # computed from several facts, or over a list's elements: no constraint on one path
        d = dom(t.path)
        if t.op == "exists":
            if d.present is False:
                return None
            d.present = True
            continue
        if t.op == "missing":
            if d.present is True or d.valued:
                return None
            d.present = False
            continue
        d.valued = True
        if d.present is False:
            return None
        d.present = True
        if isinstance(t.value, FactRef):
            other = dom(t.value.path)
            if other.present is False:
                return None
            other.present = True
            other.valued = True
            continue
        if t.op == "eq":
            d.allowed = {t.value} if d.allowed is None else d.allowed & {t.value}
        elif t.op == "in":
            d.allowed = set(t.value) if d.allowed is None else d.allowed & set(t.value)
        elif t.op == "ne":
            d.excluded.add(t.value)
        elif t.op == "not_in":
            d.excluded |= set(t.value)
        elif t.op == "between":
            d.bound("gte", t.value[0])
            d.bound("lte", t.value[1])
        elif t.op in BOUNDS:
            d.bound(t.op, t.value)
        if not d.ok():
            return None
    return domains if all(d.ok() for d in domains.values()) else None


def satisfiable(cond, enums: dict | None = None) -> bool:
    """False only when no working memory can make the condition hold."""
    if cond is None:
        return True
    clauses = dnf(nnf(_undated(cond, set())))
    if clauses is None:
        return True
    return any(conjunction_satisfiable(c, enums) for c in clauses)
