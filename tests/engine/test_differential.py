"""Differential testing: the durable_rules engine and the reference evaluator must agree on
which items fire, in what order, and on everything they conclude, for generated rulesets and
fact sets, including missing fields, boundary values and forward chaining through `set`."""
from __future__ import annotations

import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compile.durable import compile_flow
from engine.compile.reference import ReferenceEngine
from engine.errors import DecisionError
from engine.ir import (
    All, Any_, Arbitration, Block, Calc, Escalate, Expr, FactRef, Flow, Not, Output, Recommend, Row, Rule, Ruleset,
    SetFact, Table, Test, Cell,
)
from engine.session import DurableEngine
from engine.tables import parse_cell

NUMS = [-1, 0, 0.3, 0.5, 0.7, 1, 2, 2.5, 10, 90, 91, 100000, 1e-05, -2.5e-07, 1e17, 1.5e16]
STRS = ["x", "y", "z", "smb", "", "a b", "é"]
NUM_PATHS = ["in.a", "in.b", "in.e", "d.n1", "d.n2"]
STR_PATHS = ["in.c", "in.name", "d.s1"]
BOOL_PATHS = ["in.flag", "d.b1"]
LIST_PATH = "in.tags"

num = st.sampled_from(NUMS)


def num_test():
    return st.one_of(
        st.builds(lambda p, op, v: Test(p, op, v), st.sampled_from(NUM_PATHS),
                  st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]), num),
        st.builds(lambda p, op, q: Test(p, op, FactRef(q)), st.sampled_from(NUM_PATHS),
                  st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]), st.sampled_from(NUM_PATHS)),
        st.builds(lambda p, lo, hi: Test(p, "between", (min(lo, hi), max(lo, hi))), st.sampled_from(NUM_PATHS), num, num),
        st.builds(lambda p, vs: Test(p, "in", tuple(vs)), st.sampled_from(NUM_PATHS), st.lists(num, min_size=1, max_size=3)),
        st.builds(lambda p, vs: Test(p, "not_in", tuple(vs)), st.sampled_from(NUM_PATHS), st.lists(num, min_size=1, max_size=3)),
    )


def str_test():
    s = st.sampled_from(STRS)
    return st.one_of(
        st.builds(lambda p, op, v: Test(p, op, v), st.sampled_from(STR_PATHS), st.sampled_from(["eq", "ne"]), s),
        st.builds(lambda p, vs: Test(p, "in", tuple(vs)), st.sampled_from(STR_PATHS), st.lists(s, min_size=1, max_size=3)),
        st.builds(lambda p, vs: Test(p, "not_in", tuple(vs)), st.sampled_from(STR_PATHS), st.lists(s, min_size=1, max_size=3)),
        st.builds(lambda p, r: Test(p, "matches", r), st.sampled_from(STR_PATHS), st.sampled_from([r"^\w+$", "b", r"\d", "^$", "^(x|y)$"])),
        st.builds(lambda p, v: Test(p, "contains", v), st.sampled_from(STR_PATHS), st.sampled_from(["", "x", "m", " "])),
        st.builds(lambda v: Test(LIST_PATH, "contains", v), s),
    )


def other_test():
    all_paths = NUM_PATHS + STR_PATHS + BOOL_PATHS + [LIST_PATH]
    return st.one_of(
        st.builds(lambda p, v: Test(p, "eq", v), st.sampled_from(BOOL_PATHS), st.booleans()),
        st.builds(lambda p, v: Test(p, "ne", v), st.sampled_from(BOOL_PATHS), st.booleans()),
        st.builds(lambda p: Test(p, "exists"), st.sampled_from(all_paths)),
        st.builds(lambda p: Test(p, "missing"), st.sampled_from(all_paths)),
    )


DATES = ["2026-01-31", "2026-02-28", "2026-03-01", "2026-03-01T23:30:00Z", "2026-03-02T00:10:00+01:00", "2027-01-31"]
DATE_PATHS = ["in.d1", "in.d2", "d.date"]
ITEMS = [{"kind": "p1", "open": True}, {"kind": "p2", "open": True}, {"kind": "p1", "open": False}, {"kind": "p3"}]
AGGREGATES = ["offers.count", "offers.value_total", "offers.upsell.value_max", "offers.renewal.discount_max"]
date_value = st.one_of(st.sampled_from(DATES), st.builds(FactRef, st.sampled_from(DATE_PATHS)),
                       st.builds(lambda p, n, op: Expr(op, (FactRef(p), n)), st.sampled_from(DATE_PATHS),
                                 st.sampled_from([-30, -1, 0, 1, 12]), st.sampled_from(["add_days", "add_months"])))
days = st.builds(lambda a, b: Expr("days_between", (FactRef(a), b)), st.sampled_from(DATE_PATHS),
                 st.one_of(st.sampled_from(DATES), st.builds(FactRef, st.sampled_from(DATE_PATHS))))
comparison = st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"])


def computed_test():
    """Dates, durations, lists and the offers' measures: evaluated in Python by both engines,
    re-evaluated when any fact they read changes."""
    element = st.one_of(
        st.builds(lambda v: Test("kind", "eq", v), st.sampled_from(["p1", "p2"])),
        st.builds(lambda v: Test("open", "eq", v), st.booleans()),
        st.builds(lambda v: Test("item", "eq", v), st.sampled_from(STRS)),
    )
    return st.one_of(
        st.builds(lambda p, op, v: Test(p, "calc", Calc(op, FactRef(p), v)), st.sampled_from(DATE_PATHS), comparison,
                  date_value),
        st.builds(lambda d, op, n: Test("in.d1", "calc", Calc(op, d, n)), days, comparison,
                  st.sampled_from([-1, 0, 1, 28, 30, 60])),
        st.builds(lambda p, op, n: Test(p, "calc", Calc(op, Expr("length", (FactRef(p),)), n)),
                  st.sampled_from([LIST_PATH, "in.items"]), comparison, st.sampled_from([0, 1, 2])),
        st.builds(lambda p, b: Test(p, "is_empty", b), st.sampled_from([LIST_PATH, "in.items", "d.list"]), st.booleans()),
        st.builds(lambda vs: Test(LIST_PATH, "contains_any", tuple(vs)), st.lists(st.sampled_from(STRS), min_size=1,
                                                                                   max_size=2)),
        st.builds(lambda op, c: Test("in.items", op, c), st.sampled_from(["any", "all"]), element),
        st.builds(lambda op, c: Test(LIST_PATH, op, c), st.sampled_from(["any", "all"]), element),
        st.builds(lambda p, op, n: Test(p, op, n), st.sampled_from(AGGREGATES), st.sampled_from(["gt", "gte", "eq"]),
                  st.sampled_from([0, 1, 2, 10])),
        st.builds(lambda op, r: Test("offers.value_total", "calc", Calc(op, Expr("div", (FactRef(
            "offers.upsell.value_total"), FactRef("in.a"))), r)), comparison, st.sampled_from([0, 0.5, 1])),
    )


leaf = st.one_of(num_test(), str_test(), other_test(), computed_test())
condition = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.builds(lambda xs: All(tuple(xs)), st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: Any_(tuple(xs)), st.lists(children, min_size=1, max_size=3)),
        st.builds(Not, children),
    ),
    max_leaves=6,
)

set_action = st.one_of(
    st.builds(lambda p, v: SetFact(p, v), st.sampled_from(["d.n1", "d.n2"]), num),
    st.builds(lambda p, q, v: SetFact(p, Expr("add", (FactRef(q), v))), st.sampled_from(["d.n1", "d.n2"]),
              st.sampled_from(["in.a", "in.b"]), num),
    st.builds(lambda v: SetFact("d.s1", v), st.sampled_from(STRS)),
    st.builds(lambda v: SetFact("d.b1", v), st.booleans()),
    st.builds(lambda v: SetFact("d.date", v), date_value),
    st.builds(lambda d: SetFact("d.n2", d), days),
)
other_action = st.one_of(
    st.builds(lambda o, d: Recommend(o, "renewal", d), st.sampled_from(["o1", "o2"]), num),
    st.builds(lambda o, v: Recommend(o, "upsell", 0, value=v), st.sampled_from(["u1", "u2"]),
              st.one_of(st.none(), num, st.builds(FactRef, st.sampled_from(["in.a", "in.b"])))),
    st.builds(lambda o: Block(o, "blocked: {in.tags} by {in.d1:%d %b %Y}"), st.sampled_from(["o1", "u1", "upsell", "all"])),
    st.builds(lambda q: Escalate(q, "because {in.a}"), st.sampled_from(["csm", "finance"])),
)


@st.composite
def rules(draw):
    n = draw(st.integers(1, 8))
    out = []
    for i in range(n):
        then = tuple(draw(st.lists(st.one_of(set_action, other_action), min_size=1, max_size=2)))
        out.append(Rule(f"r{i}", "gen", "", draw(st.sampled_from([-5, 0, 0, 1, 10])), draw(condition), then))
    return out


TABLE_POLICIES = ["first", "unique", "any", "priority", "collect", "rule_order", "output_order"]


@st.composite
def table(draw):
    """A table over two input facts and a derived one, with the DMN constructs: '-' against
    missing inputs, comma lists of comparisons, not(...), hit policies that fail at run time."""
    policy = draw(st.sampled_from(TABLE_POLICIES))
    waits = draw(st.sampled_from([(), ("d.n1",)]))
    any_of = Any_((Test("in.a", "lt", 0), Test("in.a", "gte", 2)))
    rows = (
        Row(1, (Cell("< 1", Test("in.a", "lt", 1)), Cell("x", Test("in.c", "eq", "x")), Cell("-", None)), (1,)),
        Row(2, (Cell("-", None), Cell("y,z", Test("in.c", "in", ("y", "z"))), Cell("> 0", Test("d.n1", "gt", 0))), (2,)),
        Row(3, (Cell(">= 1", Test("in.a", "gte", 1)), Cell("-", None), Cell("-", None)), (3,)),
        Row(4, (Cell("<0, >=2", any_of), Cell("not(x)", Test("in.c", "not_in", ("x",))), Cell("-", None)), (1,)),
        Row(5, (Cell("not(<0, >=2)", All((Test("in.a", "exists"), Not(any_of)))), Cell("-", None),
                Cell("-", None)), (2,)),
    )
    n = draw(st.integers(1, len(rows)))
    # a list output lands where rules compare numbers too: no comparison holds on a list in either engine
    out = draw(st.sampled_from(["d.list", "d.n2"]))
    return Table("t1", "gen", "", policy, None, ("in.a", "in.c", "d.n1"),
                 (Output(out, values=(3, 2, 1)),), rows[:n], priority=1, waits=waits)


# date cells as an author writes them, parsed as the loader parses a `format: date` input's
# cells; the facts hold dates and date-times, so a date meets a date-time of the same day
DATE_CELLS = ["-", "< 2026-03-01", ">= 2026-03-01", "<= 2026-02-28", "> 2026-03-01T23:30:00Z", "!= 2026-03-01",
              "[2026-01-31..2026-02-28]", "]2026-02-28..2027-01-31[", "(2026-03-01..2026-03-02]", "2026-03-01",
              "2026-01-31, >= 2027-01-31", "not(2026-03-01, < 2026-02-01)", ["2026-02-28", "2026-03-01"],
              datetime.date(2026, 3, 1)]


@st.composite
def date_table(draw):
    """A table over a date input and a derived date (set by rules), every cell a date cell."""
    rows = []
    for i in range(draw(st.integers(1, 4))):
        cells = tuple(parse_cell(draw(st.sampled_from(DATE_CELLS)), p, False, None, True) for p in ("in.d1", "d.date"))
        rows.append(Row(i + 1, cells, (draw(st.sampled_from([1, 2, 3])),)))
    out = draw(st.sampled_from(["d.list", "d.n2"]))
    return Table("t2", "gen", "", draw(st.sampled_from(TABLE_POLICIES)), None, ("in.d1", "d.date"),
                 (Output(out, values=(3, 2, 1)),), tuple(rows), priority=draw(st.sampled_from([0, 1])),
                 waits=draw(st.sampled_from([(), ("d.date",)])))


def value_or_missing(values):
    return st.one_of(st.none(), st.sampled_from(values))


facts = st.fixed_dictionaries({
    "in.a": value_or_missing(NUMS), "in.b": value_or_missing(NUMS), "in.e": value_or_missing([0, 1, 2, 90, 91]),
    "in.c": value_or_missing(STRS), "in.name": value_or_missing(STRS), "in.flag": st.one_of(st.none(), st.booleans()),
    "in.tags": st.one_of(st.none(), st.lists(st.sampled_from(STRS), max_size=3)),
    "in.d1": value_or_missing(DATES), "in.d2": value_or_missing(DATES),
    "in.items": st.one_of(st.none(), st.lists(st.sampled_from(ITEMS), max_size=3)),
}).map(lambda d: {k: v for k, v in d.items() if v is not None})


def make_flow(rule_list, a_table):
    rs = Ruleset("gen", "", "", {}, tuple(rule_list), (a_table,) if a_table is not None else ())
    return Flow("gen", "", (rs,), (), Arbitration(), {}, "t", max_firings=1000)


def run_or_error(engine, wm):
    """The outcome, or the code of the error that failed the decision (a violated unique)."""
    try:
        o = engine.run(dict(wm))
    except DecisionError as exc:
        return exc.code
    return outcome(o)


def outcome(o):
    return (o.firings, o.derived, o.offers, o.escalations, o.blocks, o.actions, o.skipped)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules(), st.one_of(st.none(), table(), date_table()), st.lists(facts, min_size=1, max_size=12),
       st.sampled_from([None, 1, 2, 3]))
def test_durable_agrees_with_reference(rule_list, with_table, fact_sets, max_items):
    """`max_items` cuts the flow into parts of at most that many items, as the engine's limits
    cut a large one: the agenda then crosses parts, goes back to earlier ones, re-asserts."""
    flow = make_flow(rule_list, with_table)
    durable = DurableEngine(flow, compile_flow(flow, max_items))
    reference = ReferenceEngine(flow)
    try:
        for wm in fact_sets:
            a, b = run_or_error(durable, wm), run_or_error(reference, wm)
            assert a == b, (wm, a, b)
    finally:
        durable.close()
