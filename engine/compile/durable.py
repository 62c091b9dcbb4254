"""IR → durable_rules' JSON ruleset form (not its Python DSL, which needs global registries
and a singleton host), partitioned into as many rulesets as the extension's limits need.

The items (rules and tables) are laid out in the reference evaluator's order (priority, then
definition order) and cut into consecutive *parts*, each one durable ruleset. A decision asks
the parts in that order: the next item to fire is the first activation of the first part that
has one, which is exactly the reference's choice, so cutting never changes what fires or when.
Cuts go where the extension's limits need them (properties per fact, the matching-stack bound,
children per alpha node, rules per ruleset) and between *strata*: where the items after the cut
read facts set before it and set nothing read before it, so a setter's part is finished before
its readers' part asserts its working fact, and the working facts are asserted once each.

A part's working fact holds the fact paths its conditions read, flattened to short keys (`v0`,
`v1`, ...), plus `x<j>` booleans for tests durable cannot do faithfully (regex in Python's
dialect, `contains`), and the kind tag `k`. Only a part whose facts can change after it was
asserted (an item in it or after it sets what it reads) re-asserts its fact, and only such a
part carries the `$nex __f<i>` markers that stop an item fired before the re-assert from
matching again. Priorities map to durable's unsigned 16-bit `pri` (lower fires first):
pri = 32768 - priority.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..actions import agenda_items, condition_of, writes as _writes
from ..conditions import nnf, paths_read, test_holds_ext, test_reads
from . import limits
from ..errors import Diagnostic, Location, RulesetError
from ..ir import COMPUTED_OPS, All, Any_, FactRef, Not, Rule, SetFact, Table, Test

PYTHON_OPS = {"contains", "ncontains", "matches", "nmatches"} | set(COMPUTED_OPS) | {"!" + o for o in COMPUTED_OPS}
_FIXED = ("sid", "id", "k", "_e")
_ABSENT = object()  # the properties every working fact may carry besides its fields


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
class Part:
    """One durable ruleset: consecutive items of the agenda order, and its working fact's shape."""

    definition: dict
    items: list            # global item indices, in agenda order
    fields: list           # (fact path, short key) its conditions read
    python_tests: list     # (key, Test)
    reads: frozenset       # every path its conditions read (a change means re-asserting)
    markers: bool          # whether it can be re-asserted, so carries refraction markers
    needs: frozenset | None = None  # static programs: facts one of which must be present for it to fire

    def document(self, wm: dict, sid: str, fid: str) -> dict:
        doc = {"sid": sid, "id": fid, "k": 1}
        point = False
        present = []  # loops, not comprehensions: on Python 3.11 those build a function per call
        if len(self.fields) > len(wm):
            key_of = self._key_of
            for p, v in wm.items():
                if p in key_of:
                    present.append((key_of[p], v))
        else:
            for path, key in self.fields:
                if path in wm:
                    present.append((key, wm[path]))
        for key, v in present:
            t = v.__class__
            if t is float:
                point = point or _needs_point(v)
            elif t is bool:
                v = int(v)
            elif t is list:
                v = 1
            doc[key] = v
        if point:
            doc["_e"] = 1
        for key, test in self.python_tests:
            doc[key] = 1 if test_holds_ext(test, wm) else 0
        return doc

    def update(self, doc: dict, wm: dict, changed, fired_since, keys: dict) -> None:
        """Bring the working fact up to date after firings changed the `changed` paths."""
        for path in changed:
            key = keys.get(path)
            if key is not None and key in self._keys:
                if path in wm:
                    v = doc[key] = encode(wm[path])
                    if _needs_point(v):
                        doc["_e"] = 1
                else:
                    doc.pop(key, None)
        for key, test, reads in self._python:
            if not reads.isdisjoint(changed):
                doc[key] = 1 if test_holds_ext(test, wm) else 0
        for i in fired_since:
            doc[f"__f{i}"] = 1

    def __post_init__(self):
        self._keys = frozenset(k for _, k in self.fields)
        self._key_of = dict(self.fields)
        self._python = tuple((k, t, frozenset(test_reads(t))) for k, t in self.python_tests)


@dataclass
class DurableProgram:
    parts: list
    items: list
    keys: dict  # fact path -> short key
    python_tests: list  # (key, Test)
    reads: list = None  # per item: the sorted paths its condition reads (for the trace)
    watched: frozenset = frozenset()  # every path some condition reads
    readers: dict = field(default_factory=dict)  # fact path -> the parts whose conditions read it
    strata: list = None  # static programs: per stratum, in agenda order, the Index of the parts asked
    # before it fires (else None)
    position: list = None  # per item: its place in the agenda order
    whole: "Part" = None  # static programs: every field, for the one working fact all parts share
    stratum: list = None  # static programs: per item, the stratum in which it fires

    @property
    def definition(self) -> dict:
        """Every part's rules in one mapping (rule names are unique across parts)."""
        out = {}
        for p in self.parts:
            out.update(p.definition)
        return out


def _list_paths(flow, items) -> frozenset:
    """Paths that may hold a list: array facts of the schema, list outputs of tables, facts set to a
    list. durable sees a list as 1, so a comparison on one is evaluated in Python instead (where,
    as in the reference, it never holds)."""
    from ..facts import schema_paths
    out = {p for p, t in schema_paths(flow.facts_schema or {}).items() if t.type == "array"}
    for it in items:
        if isinstance(it, Table):
            if it.hit_policy in ("collect", "rule_order", "output_order") and not it.aggregation:
                out |= {o.path for o in it.outputs}
        else:
            out |= {a.path for a in it.then if isinstance(a, SetFact) and (
                isinstance(a.value, list) or getattr(a.value, "op", None) in ("pick", "coalesce"))}
    return frozenset(out)


def _on_lists(cond, lists: frozenset):
    """Tests that compare a value that may be a list, wrapped to be evaluated in Python (before
    negation is pushed down, so `not` stays plain negation, as in the reference)."""
    if isinstance(cond, Test):
        reads = {cond.path} | ({cond.value.path} if isinstance(cond.value, FactRef) else set())
        if cond.op in ("exists", "missing") or cond.op in PYTHON_OPS or reads.isdisjoint(lists):
            return cond
        return Test(cond.path, "py", cond, cond.loc)
    if isinstance(cond, (All, Any_)):
        return type(cond)(tuple(_on_lists(c, lists) for c in cond.items), cond.loc)
    if isinstance(cond, Not):
        return Not(_on_lists(cond.item, lists), cond.loc)
    return cond


def tag(value):
    """A value as the index looks it up: the reference's equality (conditions._eq) holds between
    two values exactly when their tags are equal (strings by themselves, numbers of either type
    alike, booleans only as booleans); None for what no equality test can match."""
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return (bool, value)
    if t is int or t is float:
        return (float, value)
    return None


def _guards(cond) -> dict:
    """fact path -> the tags of which its value must have one for `cond` to hold (a top-level
    equality or `in`, or one on the same path in every branch of an `any`)."""
    if isinstance(cond, All):
        out: dict = {}
        for c in cond.items:
            for p, tags in _guards(c).items():
                out[p] = out[p] & tags if p in out else tags
        return out
    if isinstance(cond, Any_):
        each = [_guards(c) for c in cond.items]
        if not each:
            return {}
        common = set(each[0]).intersection(*each[1:])
        return {p: frozenset().union(*(g[p] for g in each)) for p in common}
    if isinstance(cond, Test) and not isinstance(cond.value, FactRef) and cond.op in ("eq", "in"):
        tags = [tag(v) for v in ((cond.value,) if cond.op == "eq" else cond.value)]
        if any(t is None for t in tags):
            return {}
        return {cond.path: frozenset(tags)}
    return {}


def _required(cond) -> frozenset:
    """Fact paths that must all be present for `cond` to hold (every test but `missing` and the
    computed ones is false on a missing value)."""
    if isinstance(cond, All):
        return frozenset().union(*(_required(c) for c in cond.items))
    if isinstance(cond, Any_):
        each = [_required(c) for c in cond.items]
        return frozenset.intersection(*each) if each else frozenset()
    if isinstance(cond, Test) and cond.op not in ("missing",) and cond.op not in COMPUTED_OPS \
            and not cond.op.startswith("!"):
        return frozenset({cond.path} | ({cond.value.path} if isinstance(cond.value, FactRef) else set()))
    return frozenset()


@dataclass
class Index:
    """Which parts of one stratum a decision asks: `parts` always, the `rest` node always, and
    the node under the tag of the value the working memory holds at `path` (the items there
    need one of those values to fire; a part none of whose items can fire is never asked)."""

    parts: list = field(default_factory=list)   # part numbers
    path: str | None = None
    buckets: dict = field(default_factory=dict)  # tag -> Index
    rest: "Index | None" = None

    def select(self, wm: dict, out: list) -> None:
        node = self
        while node is not None:
            out.extend(node.parts)
            if node.rest is not None:
                node.rest.select(wm, out)
            if node.path is None:
                return
            node = node.buckets.get(tag(wm.get(node.path)))


# Asking a part costs about as much as matching this many of its items (measured: about 2.5 µs
# per assert, start and retract, and 0.045 µs per item), so a split must save more than that.
_VISIT_ITEMS = 55


def _tree(items: list, guards: dict, used: frozenset = frozenset()):
    """(leaf item lists, Index shape) for one stratum's items: split on the path whose guards
    lower the expected number of items matched plus parts visited the most, while one does.
    A value is assumed as likely as any other tag seen on the path, or as the path missing."""
    def cost(n):
        return _VISIT_ITEMS + n
    best, best_cost = None, cost(len(items))
    paths = {p for it in items for p in guards[it.index] if p not in used}
    for p in sorted(paths):
        on = [it for it in items if p in guards[it.index]]
        seen = frozenset().union(*(guards[it.index][p] for it in on))
        counts: dict = {}
        for it in on:
            for t in guards[it.index][p]:
                counts[t] = counts.get(t, 0) + 1
        rest = len(items) - len(on)
        c = (cost(rest) if rest else 0) + sum(cost(n) for n in counts.values()) / (len(seen) + 1)
        if c < best_cost:
            best, best_cost = p, c
    if best is None:
        return Index(parts=list(items))
    rest = [it for it in items if best not in guards[it.index]]
    buckets: dict = {}
    for it in items:
        for t in sorted(guards[it.index].get(best, ()), key=repr):
            buckets.setdefault(t, []).append(it)
    inner = used | {best}
    return Index(path=best, buckets={t: _tree(b, guards, inner) for t, b in buckets.items()},
                 rest=_tree(rest, guards, inner) if rest else None)


class _Compiler:
    def __init__(self):
        self.keys: dict[str, str] = {}
        self.python: dict[tuple, str] = {}
        self.python_tests: list = []
        self.used: set = set()  # the keys the item being compiled tests

    def key(self, path: str) -> str:
        if path not in self.keys:
            self.keys[path] = f"v{len(self.keys)}"
        self.used.add(self.keys[path])
        return self.keys[path]

    def leaf(self, t: Test):
        if t.op in PYTHON_OPS:
            sig = (t.path, t.op, t.value)
            if sig not in self.python:
                k = f"x{len(self.python)}"
                self.python[sig] = k
                self.python_tests.append((k, Test(t.path, t.op, t.value)))
            self.used.add(self.python[sig])
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




@dataclass
class _Item:
    index: int
    priority: int
    conjuncts: list   # the pattern's tests after the kind tag, marker excluded
    used: frozenset   # short keys the pattern tests
    reads: frozenset  # fact paths its condition reads
    writes: frozenset
    guards: dict = field(default_factory=dict)  # see _guards
    required: frozenset = frozenset()  # see _required

    def __post_init__(self):
        plain = limits.chain(self.rule(False)["all"][0]["m"])
        self.chains = {False: plain, True: plain + limits.chain({"$nex": {f"__f{self.index}": 1}})}

    def rule(self, marker: bool) -> dict:
        parts = [{"k": 1}] + self.conjuncts + ([{"$nex": {f"__f{self.index}": 1}}] if marker else [])
        m = parts[0] if len(parts) == 1 else {"$and": parts}
        return {"all": [{"m": m}], "pri": 32768 - self.priority}


class _Layout:
    """The agenda order cut into strata and parts (see the module docstring)."""

    def __init__(self, flow, compiled: list, max_items: int | None):
        self.flow = flow
        self.max_items = max_items
        self.order = sorted(compiled, key=lambda it: (-it.priority, it.index))
        n = len(self.order)
        # suffix[p]: every path some item at agenda position >= p sets
        self.suffix = [frozenset()] * (n + 1)
        acc = frozenset()
        for p in range(n - 1, -1, -1):
            w = self.order[p].writes
            if not w <= acc:
                acc = acc | w
            self.suffix[p] = acc

    def strata(self) -> list[tuple[int, int]]:
        """[start, end) agenda positions: a cut before an item that reads what the current
        stratum sets, wherever nothing after the cut sets what was read before it."""
        out, start, sets, read = [], 0, set(), set()
        for p, it in enumerate(self.order):
            if p > start and not it.reads.isdisjoint(sets) and read.isdisjoint(self.suffix[p]):
                out.append((start, p))
                start, sets = p, set()
            sets |= it.writes
            read |= it.reads
        if start < len(self.order):
            out.append((start, len(self.order)))
        return out

    def markers(self, start: int, end: int) -> bool:
        """Whether the items at [start, end) need refraction markers: something at or after
        `start` sets what they read, so their working fact can be re-asserted."""
        return not set().union(*(it.reads for it in self.order[start:end])).isdisjoint(self.suffix[start])

    def problems(self, start: int, end: int) -> list:
        return self._fits(self.order[start:end], self.markers(start, end))

    def _fits(self, items, markers) -> list:
        """The first limit these items in one ruleset break, if any."""
        keys = set().union(*(it.used for it in items))
        if self.max_items and len(items) > self.max_items:
            return [f"more than {self.max_items} items"]
        props = len(_FIXED) + len(keys) + (min(self.flow.max_firings, len(items)) if markers else 0)
        if props > limits.MAX_PROPERTIES:
            return [f"its working fact would carry {props} properties ({len(keys)} facts read by "
                          f"conditions{', plus fired-rule markers' if markers else ''}); the engine takes at "
                          f"most {limits.MAX_PROPERTIES}"]
        if len(items) > limits.MAX_RULES - 1:
            return [f"{len(items)} rules and tables in one ruleset; the engine takes at most "
                          f"{limits.MAX_RULES - 1}"]
        return limits.problems({}, [it.chains[markers] for it in items])

    def parts(self, items: list, diagnostics: list) -> list[tuple[int, int]]:
        """Each stratum cut into the longest runs that fit the limits."""
        out, last = [], 1
        for s0, s1 in self.strata():
            start = s0
            while start < s1:
                alone = self.problems(start, start + 1)
                if alone:
                    item = items[self.order[start].index]
                    diagnostics.extend(Diagnostic(item.loc, "engine-limit", f"{item.key}: {p}") for p in alone)
                    start += 1
                    continue
                last = _longest(start, s1, self.problems, last)
                out.append((start, start + last))
                start += last
        return out

    def runs(self, members: list) -> list[list]:
        """Items of one stratum (agenda order, none of them reading what the stratum sets) cut
        into the longest runs that fit the limits; every item fits alone."""
        out, start, last = [], 0, 1

        def problems(a, b):
            return self._fits(members[a:b], False)
        while start < len(members):
            last = _longest(start, len(members), problems, last)
            out.append(members[start:start + last])
            start += last
        return out


def _longest(start: int, end: int, problems, guess: int) -> int:
    """The most items from `start` (at most to `end`) that fit, the item at `start` fitting
    alone: galloping from `guess` (parts of one flow tend to be alike in size), then bisection;
    every limit only grows as items are added."""
    good, bad = 1, None
    guess = min(guess, end - start)
    if guess > 1:
        if problems(start, start + guess):
            bad = guess
        else:
            good = guess
    step = max(1, good // 8) if good > 1 else 1
    while bad is None and start + good < end:
        size = min(good + step, end - start)
        if problems(start, start + size):
            bad = size
            break
        good, step = size, step * 2
    while bad is not None and good + 1 < bad:
        mid = (good + bad) // 2
        if problems(start, start + mid):
            bad = mid
        else:
            good = mid
    return good


def compile_flow(flow, max_items: int | None = None) -> DurableProgram:
    """`max_items` caps the items per part below what the limits allow (tests use it to drive
    small flows through many parts)."""
    items = agenda_items(flow)
    c = _Compiler()
    lists = _list_paths(flow, items)
    compiled = []
    for i, item in enumerate(items):
        cond = nnf(_on_lists(condition_of(item), lists) if lists else condition_of(item))
        c.used = set()
        expr = None if isinstance(cond, All) and not cond.items else c.expr(cond)
        compiled.append(_Item(i, item.priority, _conjuncts(expr), frozenset(c.used),
                              frozenset(paths_read(condition_of(item))), _writes(item), _guards(cond), _required(cond)))
    diagnostics = []
    for it in compiled:
        if not 0 <= 32768 - it.priority <= 65534:
            diagnostics.append(Diagnostic(items[it.index].loc, "engine-limit", f"{items[it.index].key}: priority {it.priority} is "
                                          "outside -32766..32768"))
    layout = _Layout(flow, compiled, max_items)
    spans = layout.parts(items, diagnostics)
    names = list(_FIXED) + list(c.keys.values()) + [k for k, _ in c.python_tests] + \
        [f"__f{i}" for i in range(len(items))]
    for a, b in limits.colliding(names):
        diagnostics.append(Diagnostic(Location(flow.file), "engine-limit",
                                      f"internal field names '{a}' and '{b}' collide in the engine's hash"))
    if diagnostics:
        raise RulesetError(diagnostics)
    by_key = {k: p for p, k in c.keys.items()}
    tests = dict(c.python_tests)

    def part(members: list, markers: bool) -> Part:
        keys = set().union(*(it.used for it in members))
        return Part({f"i{it.index}": it.rule(markers) for it in members}, [it.index for it in members],
                    sorted(((by_key[k], k) for k in keys if k in by_key), key=lambda pk: int(pk[1][1:])),
                    [(k, tests[k]) for k in sorted(keys - set(by_key), key=lambda k: int(k[1:]))],
                    frozenset().union(*(it.reads for it in members)), markers)
    parts = [part(layout.order[start:end], layout.markers(start, end)) for start, end in spans]
    strata = stratum = None
    if not any(p.markers for p in parts):
        parts, strata, stratum = _static(layout, compiled, part)
    readers: dict = {}
    for n, p in enumerate(parts):
        for path in p.reads:
            readers.setdefault(path, []).append(n)
    reads = [sorted(paths_read(condition_of(it))) if isinstance(it, Rule) else None for it in items]
    position = [0] * len(items)
    for n, it in enumerate(layout.order):
        position[it.index] = n
    whole = Part({}, [], sorted(((p, k) for p, k in c.keys.items()), key=lambda pk: int(pk[1][1:])),
                 list(c.python_tests), frozenset(c.keys), False)
    return DurableProgram(parts, items, dict(c.keys), list(c.python_tests), reads, frozenset(readers),
                          {p: tuple(ns) for p, ns in readers.items()}, strata, position,
                          whole if strata is not None else None, stratum)


def _static(layout: _Layout, compiled: list, part) -> tuple[list, list, list]:
    """The parts and per-stratum indexes of a flow in which no part can be re-asserted: every
    stratum's items then fire in agenda order on the facts as they are when it is reached, so
    its items need not be consecutive parts, and are grouped by the values they need instead.

    An item is asked with the first stratum at which every fact it reads is final (the last
    stratum that sets one has fired), not with its own: its matches cannot change after that,
    and asking it early lets one assert serve items of several strata, so fewer and smaller
    rulesets are asked. Returns the parts, one Index per stratum (the items asked before it
    fires) and each item's stratum (where its match waits until it fires)."""
    guards = {it.index: it.guards for it in compiled}
    derived = frozenset().union(*(it.writes for it in compiled))
    parts, strata = [], []

    def needs(run) -> frozenset | None:
        """One derived fact per item that it cannot fire without (None: some item needs none)."""
        out = set()
        for it in run:
            need = it.required & derived
            if not need:
                return None
            out.add(min(need))
        return frozenset(out)

    def place(node: Index) -> Index:
        members = node.parts
        node.parts = []
        for run in (layout.runs(members) if members else ()):
            node.parts.append(len(parts))
            parts.append(part(run, False))
            parts[-1].needs = needs(run)
        node.buckets = {t: place(b) for t, b in node.buckets.items()}
        if node.rest is not None:
            node.rest = place(node.rest)
        return node
    spans = layout.strata()
    stratum = [0] * len(compiled)
    final: dict = {}  # fact path -> the stratum after whose firings it no longer changes
    for j, (s0, s1) in enumerate(spans):
        for it in layout.order[s0:s1]:
            stratum[it.index] = j
            for path in it.writes:
                final[path] = j + 1
    asked: list = [[] for _ in spans]
    for it in layout.order:
        asked[min(max((final.get(p, 0) for p in it.reads), default=0), stratum[it.index])].append(it)
    for group in asked:
        strata.append(place(_tree(group, guards)) if group else Index())
    return parts, strata, stratum


def dumps(program: DurableProgram) -> str:
    return durable_json(program.definition)
