"""The meaning of conditions over a working memory (a flat dict of fact path → value).

This is the reference semantics: the durable_rules compiler must agree with it, and the
differential tests hold it to that. A comparison on a missing value is false; `not` is
plain negation, so `not: {fact: x, eq: 1}` holds when x is missing.
"""
from __future__ import annotations

import re
from functools import lru_cache

from . import dates
from .errors import DecisionError
from .expressions import MISSING as _ABSENT, evaluate, refs
from .ir import COMPUTED_OPS, All, Any_, Calc, FactRef, Not, Test

MISSING = object()


@lru_cache(maxsize=4096)
def compiled_regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _num(a) and _num(b):
        return a == b
    return type(a) is type(b) and a == b


def _cmp(op: str, a, b) -> bool:
    if op == "eq":
        return _eq(a, b)
    if op == "ne":
        return not _eq(a, b)
    if _num(a) != _num(b):
        return False
    if op == "lt":
        return a < b
    if op == "lte":
        return a <= b
    if op == "gt":
        return a > b
    if op == "gte":
        return a >= b
    raise ValueError(op)


def calc_holds(c: Calc, wm: dict) -> bool:
    """Both sides evaluated; dates (ISO text on both sides) compare as calendar values. A side
    that cannot be computed (a division by zero, a date that is not one) makes the test false,
    like a missing value: a condition never fails a decision, whichever leaf is looked at first."""
    try:
        a, b = evaluate(c.left, wm), evaluate(c.right, wm)
    except DecisionError:
        return False
    if a is _ABSENT or b is _ABSENT:
        return False
    if dates.is_temporal(a) and dates.is_temporal(b):
        return dates.compare(c.op, a, b)
    return _cmp(c.op, a, b)


def element_memory(element, outer: dict) -> dict:
    """What a condition over one element of a list sees: every fact of the decision, and over
    them the element as `item` and an object's fields by their paths."""
    wm = dict(outer)
    if isinstance(element, dict):
        flatten_element(element, "", wm)
    wm["item"] = element
    return wm


def flatten_element(d: dict, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for k, v in d.items():
        if isinstance(v, dict):
            flatten_element(v, f"{prefix}{k}.", out)
        elif v is not None:
            out[f"{prefix}{k}"] = v
    return out


def pick(list_path: str, field: str, where, wm: dict):
    """The `field` of every element of the list at `list_path` that meets `where` (the element
    itself for `item`), in order; elements without the field are left out."""
    out = []
    for e in wm.get(list_path) or ():
        ewm = element_memory(e, wm)
        if (where is None or holds(where, ewm)) and field in ewm:
            out.append(ewm[field])
    return out


def _list_holds(t: Test, wm: dict) -> bool:
    """The list operators; a missing list is an empty one (no elements, so `any` is false and
    `all` is true), which is how an author reads "no open tickets"."""
    v = wm.get(t.path, MISSING)
    elements = () if v is MISSING else v
    if t.op == "is_empty":
        if not isinstance(elements, (list, tuple, str)):
            return False
        return (len(elements) == 0) == t.value
    if not isinstance(elements, (list, tuple)):
        if t.op == "contains_any" and isinstance(elements, str):
            return any(isinstance(x, str) and x in elements for x in t.value)
        return False
    if t.op == "contains_any":
        return any(_eq(x, y) for x in elements for y in t.value)
    if t.op == "any":
        return any(holds(t.value, element_memory(e, wm)) for e in elements)
    if t.op == "all":
        return all(holds(t.value, element_memory(e, wm)) for e in elements)
    raise ValueError(t.op)


def test_holds(t: Test, wm: dict) -> bool:
    op = t.op
    if op == "calc":
        return calc_holds(t.value, wm)
    if op == "py":
        return test_holds(t.value, wm)
    if op in COMPUTED_OPS:
        return _list_holds(t, wm)
    if op == "exists":
        return t.path in wm
    if op == "missing":
        return t.path not in wm
    v = wm.get(t.path, MISSING)
    if v is MISSING:
        return False
    if op in ("eq", "ne", "lt", "lte", "gt", "gte"):
        other = t.value
        if isinstance(other, FactRef):
            other = wm.get(other.path, MISSING)
            if other is MISSING:
                return False
        return _cmp(op, v, other)
    if op == "between":
        lo, hi = t.value
        return _num(v) and lo <= v <= hi
    if op == "in":
        return any(_eq(v, x) for x in t.value)
    if op == "not_in":
        return not any(_eq(v, x) for x in t.value)
    if op == "contains":
        if isinstance(v, str):
            return isinstance(t.value, str) and t.value in v
        if isinstance(v, list):
            return any(_eq(x, t.value) for x in v)
        return False
    if op == "matches":
        return isinstance(v, str) and compiled_regex(t.value).search(v) is not None
    raise ValueError(f"unknown operator {op}")


def holds(cond, wm: dict, record=None) -> bool:
    """Evaluate a condition; `record(test, result)` sees every leaf evaluated (for coverage)."""
    if isinstance(cond, Test):
        r = test_holds(cond, wm)
        if record is not None:
            record(cond, r)
        return r
    if isinstance(cond, All):
        if record is None:
            return all(holds(c, wm) for c in cond.items)
        results = [holds(c, wm, record) for c in cond.items]
        return all(results)
    if isinstance(cond, Any_):
        if record is None:
            return any(holds(c, wm) for c in cond.items)
        results = [holds(c, wm, record) for c in cond.items]
        return any(results)
    if isinstance(cond, Not):
        return not holds(cond.item, wm, record)
    if cond is None:
        return True
    raise TypeError(f"not a condition: {cond!r}")


_memo: dict = {}


def holds_for(cond, wm: dict) -> bool:
    """holds(), remembered per condition by the values (with their types) of the paths it
    reads: a condition is a pure function of them, and guardrails test the same few inputs
    for every offer of every decision. Values that are not hashable are not remembered."""
    entry = _memo.get(id(cond))
    if entry is None or entry[0] is not cond:
        if len(_memo) >= 4096:
            _memo.clear()
        entry = _memo[id(cond)] = (cond, tuple(sorted(paths_read(cond))), {})
    _, reads, seen = entry
    try:
        key = tuple((type(v), v) for v in (wm.get(p, MISSING) for p in reads))
        result = seen.get(key)
    except TypeError:
        return holds(cond, wm)
    if result is None:
        if len(seen) >= 1024:
            seen.clear()
        result = seen[key] = holds(cond, wm)
    return result


def leaves(cond):
    """Every Test in a condition, in source order."""
    if isinstance(cond, Test):
        yield cond
    elif isinstance(cond, (All, Any_)):
        for c in cond.items:
            yield from leaves(c)
    elif isinstance(cond, Not):
        yield from leaves(cond.item)


def test_reads(t: Test) -> set[str]:
    """The fact paths one test reads (an element condition reads only its list)."""
    if isinstance(t.value, Calc):
        return refs(t.value.left) | refs(t.value.right)
    if t.op.lstrip("!") == "py":
        return test_reads(t.value)
    if t.op.lstrip("!") in ("any", "all"):
        return {t.path} | paths_read(t.value)  # the element's fields too: harmless, and the facts it reads
    if isinstance(t.value, FactRef):
        return {t.path, t.value.path}
    return {t.path}


def paths_read(cond) -> set[str]:
    out = set()
    for t in leaves(cond):
        out |= test_reads(t)
    return out


def matched_values(cond, wm: dict) -> dict:
    """The values a condition looked at, for the explanation."""
    return {p: wm[p] for p in sorted(paths_read(cond)) if p in wm}


_NEGATE = {"eq": "ne", "ne": "eq", "lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt",
           "in": "not_in", "not_in": "in", "contains": "ncontains", "ncontains": "contains",
           "matches": "nmatches", "nmatches": "matches"}


def nnf(cond, negate: bool = False):
    """Negation pushed down to the leaves, so only All / Any_ / Test remain.

    A negated comparison also holds when a path it reads is missing, so `not (x > 3)`
    becomes `x <= 3 or x missing`. `ncontains` / `nmatches` mean: present and not
    containing / not matching.
    """
    if isinstance(cond, Not):
        return nnf(cond.item, not negate)
    if isinstance(cond, All):
        items = tuple(nnf(c, negate) for c in cond.items)
        return Any_(items, cond.loc) if negate else All(items, cond.loc)
    if isinstance(cond, Any_):
        items = tuple(nnf(c, negate) for c in cond.items)
        return All(items, cond.loc) if negate else Any_(items, cond.loc)
    if not negate:
        return cond
    t = cond
    if t.op == "exists":
        return Test(t.path, "missing", None, t.loc)
    if t.op == "missing":
        return Test(t.path, "exists", None, t.loc)
    if t.op in COMPUTED_OPS:
        return Test(t.path, "!" + t.op, t.value, t.loc)  # plain negation: it holds when values are missing
    missing = [Test(t.path, "missing", None, t.loc)]
    if isinstance(t.value, FactRef):
        missing.append(Test(t.value.path, "missing", None, t.loc))
    if t.op == "between":
        lo, hi = t.value
        alts = [Test(t.path, "lt", lo, t.loc), Test(t.path, "gt", hi, t.loc)]
    else:
        alts = [Test(t.path, _NEGATE[t.op], t.value, t.loc)]
    return Any_(tuple(alts + missing), t.loc)


def test_holds_ext(t: Test, wm: dict) -> bool:
    """test_holds plus the internal negated operators nnf introduces."""
    if t.op.startswith("!"):
        return not test_holds(Test(t.path, t.op[1:], t.value), wm)
    if t.op in ("ncontains", "nmatches"):
        if t.path not in wm:
            return False
        return not test_holds(Test(t.path, t.op[1:], t.value), wm)
    return test_holds(t, wm)


def dnf(cond, limit: int = 256):
    """Disjunctive normal form of an nnf condition as a list of Test lists; None past `limit`."""
    if isinstance(cond, Test):
        return [[cond]]
    if isinstance(cond, Any_):
        out = []
        for c in cond.items:
            sub = dnf(c, limit)
            if sub is None:
                return None
            out.extend(sub)
            if len(out) > limit:
                return None
        return out
    if isinstance(cond, All):
        out = [[]]
        for c in cond.items:
            sub = dnf(c, limit)
            if sub is None:
                return None
            out = [a + b for a in out for b in sub]
            if len(out) > limit:
                return None
        return out
    raise TypeError(cond)
