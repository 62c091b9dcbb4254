"""IR → durable_rules' JSON ruleset form (not its Python DSL, which needs global registries
and a singleton host).

One decision is one working fact: the fact paths rules read, flattened to short keys
(`v0`, `v1`, ...), plus `x<j>` booleans for tests durable cannot do faithfully (regex in
Python's dialect, `contains`), plus `__f<i>` markers for items already fired. Every item's
pattern starts with `$nex __f<i>` (refraction) and the kind marker `k`; a catch-all at the
lowest priority guarantees an action runs in every session (deleting a session in which no
action ran can crash the extension). Priorities map to durable's unsigned 16-bit `pri`
(lower fires first): pri = 32768 - priority.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..actions import agenda_items, condition_of
from ..conditions import nnf, paths_read, test_holds_ext
from . import limits
from ..errors import Diagnostic, RulesetError
from ..ir import All, Any_, FactRef, Rule, Test

CATCH = "catch"
PYTHON_OPS = {"contains", "ncontains", "matches", "nmatches"}


_EXPONENT = re.compile(r'("[vx]\d+":-?\d+)([eE])')


def durable_json(obj) -> str:
    """JSON as durable_rules parses it: its parser refuses an exponent without a decimal point
    (`1e-05`, `1e+17`, which Python writes for small and large floats), so one is added.
    Only values right after our own keys (`"v3":`) are touched; inside a string every quote is
    escaped, so no text a fact carries can look like that."""
    return _EXPONENT.sub(r"\1.0\2", _encoder(obj))


def fact_json(doc: dict) -> str:
    """durable_json for a working fact, skipping the rewrite when no value needs it."""
    text = _encoder(doc)
    if doc.get("_e"):
        return _EXPONENT.sub(r"\1.0\2", text)
    return text


def _needs_point(v) -> bool:
    return type(v) is float and v != 0.0 and (v < 1e-4 and v > -1e-4 or v >= 1e16 or v <= -1e16)


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode(value):
    """Values as durable sees them: booleans as 0/1 (durable compares mismatched types as text)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        return 1
    return value


@dataclass
class DurableProgram:
    definition: dict
    items: list
    keys: dict  # fact path -> short key
    python_tests: list  # (key, Test)
    reads: list = None  # per item: the sorted paths its condition reads (for the trace)
    watched: frozenset = frozenset()  # every path some condition reads

    def document(self, wm: dict, sid: str) -> dict:
        doc = {"sid": sid, "id": f"{sid}.1", "k": 1}
        for path, key in self.keys.items():
            if path in wm:
                v = doc[key] = encode(wm[path])
                if _needs_point(v):
                    doc["_e"] = 1
        for key, test in self.python_tests:
            doc[key] = 1 if test_holds_ext(test, wm) else 0
        return doc

    def update(self, doc: dict, wm: dict, changed, fired_since) -> None:
        """Bring the working fact up to date after a firing changed `changed` paths."""
        keys = self.keys
        for path in changed:
            key = keys.get(path)
            if key is not None:
                v = doc[key] = encode(wm[path])
                if _needs_point(v):
                    doc["_e"] = 1
        for key, test in self.python_tests:
            if test.path in changed:
                doc[key] = 1 if test_holds_ext(test, wm) else 0
        for i in fired_since:
            doc[f"__f{i}"] = 1


class _Compiler:
    def __init__(self):
        self.keys: dict[str, str] = {}
        self.python: dict[tuple, str] = {}
        self.python_tests: list = []

    def key(self, path: str) -> str:
        if path not in self.keys:
            self.keys[path] = f"v{len(self.keys)}"
        return self.keys[path]

    def leaf(self, t: Test):
        if t.op in PYTHON_OPS:
            sig = (t.path, t.op, t.value)
            if sig not in self.python:
                k = f"x{len(self.python)}"
                self.python[sig] = k
                self.python_tests.append((k, Test(t.path, t.op, t.value)))
            return {self.python[sig]: 1}
        k = self.key(t.path)
        if t.op == "exists":
            return {"$ex": {k: 1}}
        if t.op == "missing":
            return {"$nex": {k: 1}}
        if isinstance(t.value, FactRef):
            other = self.key(t.value.path)
            rhs = {"$m": other}
            cmp = {k: rhs} if t.op == "eq" else {"$" + {"ne": "neq"}.get(t.op, t.op): {k: rhs}}
            return {"$and": [{"$ex": {k: 1}}, {"$ex": {other: 1}}, cmp]}
        if t.op == "eq":
            return {k: encode(t.value)}
        if t.op == "ne":
            return {"$and": [{"$ex": {k: 1}}, {"$neq": {k: encode(t.value)}}]}
        if t.op in ("lt", "lte", "gt", "gte"):
            return {"$" + t.op: {k: t.value}}
        if t.op == "between":
            return {"$and": [{"$gte": {k: t.value[0]}}, {"$lte": {k: t.value[1]}}]}
        if t.op == "in":
            alts = [{k: encode(v)} for v in t.value]
            return alts[0] if len(alts) == 1 else {"$or": alts}
        if t.op == "not_in":
            return {"$and": [{"$ex": {k: 1}}] + [{"$neq": {k: encode(v)}} for v in t.value]}
        raise ValueError(f"operator {t.op}")

    def expr(self, cond):
        if isinstance(cond, Test):
            return self.leaf(cond)
        op = "$and" if isinstance(cond, All) else "$or"
        items, seen = [], set()
        for c in cond.items:
            e = self.expr(c)
            # flatten nested `$and`/`$or` of the same kind and drop repeats: durable refuses
            # some repeated branches (error 113) and the meaning is unchanged
            for part in (e[op] if set(e) == {op} else [e]):
                sig = json.dumps(part, sort_keys=True)
                if sig not in seen:
                    seen.add(sig)
                    items.append(part)
        if isinstance(cond, All):
            return {"$and": items} if len(items) != 1 else items[0]
        if isinstance(cond, Any_):
            if not items:
                return {"k": 2}
            return {"$or": items} if len(items) != 1 else items[0]
        raise TypeError(cond)


def _conjuncts(expr) -> list:
    """A top-level `$and` flattened, equality tests first (sorted by field), so rules share
    the alpha network's prefixes and its matching stack stays shallow."""
    if expr is None:
        return []
    parts = expr["$and"] if set(expr) == {"$and"} else [expr]
    flat = []
    for p in parts:
        flat.extend(p["$and"] if set(p) == {"$and"} else [p])
    eq = sorted((p for p in flat if not next(iter(p)).startswith("$")),
                key=lambda p: (next(iter(p)), json.dumps(p)))
    rest = [p for p in flat if next(iter(p)).startswith("$")]
    return eq + rest


def compile_flow(flow) -> DurableProgram:
    items = agenda_items(flow)
    c = _Compiler()
    definition = {}
    for i, item in enumerate(items):
        cond = nnf(condition_of(item))
        expr = None if isinstance(cond, All) and not cond.items else c.expr(cond)
        parts = [{"k": 1}] + _conjuncts(expr) + [{"$nex": {f"__f{i}": 1}}]
        definition[f"i{i}"] = {"all": [{"m": {"$and": parts}}], "pri": 32768 - item.priority}
    definition[CATCH] = {"all": [{"m": {"k": 1}}], "pri": 65535}
    _check_limits(flow, items, c, definition)
    reads = [sorted(paths_read(condition_of(it))) if isinstance(it, Rule) else None for it in items]
    watched = frozenset(c.keys) | frozenset(t.path for _, t in c.python_tests)
    return DurableProgram(definition, items, dict(c.keys), list(c.python_tests), reads, watched)


def _loc(flow):
    from ..errors import Location
    return Location(flow.file)


def _check_limits(flow, items, c, definition) -> None:
    """Refuse, with the measured reason, what the extension would fail or crash on at run time."""
    where = _loc(flow)
    problems = []
    fields = len(c.keys) + len(c.python_tests)
    markers = min(flow.max_firings, len(items))
    if len(items) + 1 > limits.MAX_RULES:
        problems.append(f"{len(items)} rules and tables; the engine takes at most {limits.MAX_RULES - 1}")
    if 4 + fields + markers > limits.MAX_PROPERTIES:
        problems.append(f"a decision's working fact would carry {4 + fields + markers} properties ({fields} facts "
                        f"read by conditions, up to {markers} fired-rule markers); the engine takes at most "
                        f"{limits.MAX_PROPERTIES}: lower max_firings in flow.yaml or split the flow")
    if not problems:
        most, most_nex = limits.widest(definition)
        if most > limits.MAX_CHILDREN or most_nex > limits.MAX_NEX_CHILDREN:
            problems.append(f"{max(most, most_nex)} rules share one condition prefix; the engine takes at most "
                            f"{limits.MAX_NEX_CHILDREN} (rules with identical conditions) or {limits.MAX_CHILDREN} "
                            "(branches of one test): split the flow")
        bound = limits.stack_bound(definition)
        if bound > limits.STACK:
            problems.append(f"in the worst case one fact matches {bound} overlapping tests at once; the engine's "
                            f"matching stack holds {limits.STACK}: make conditions more specific (equalities on "
                            "segment, plan...) or split the flow")
    names = ["sid", "id", "k", "_e"] + list(c.keys.values()) + [k for k, _ in c.python_tests] + \
        [f"__f{i}" for i in range(len(items))]
    for a, b in limits.colliding(names):
        problems.append(f"internal field names '{a}' and '{b}' collide in the engine's hash")
    if problems:
        raise RulesetError([Diagnostic(where, "engine-limit", p) for p in problems])


def dumps(program: DurableProgram) -> str:
    return durable_json(program.definition)
