"""Flows of any size compile within durable_rules' measured limits: the compiler cuts them into
as many rulesets as the limits need, and what fires, in what order, stays the reference's. Only
an item that does not fit the engine even alone is refused, with the reason."""
from __future__ import annotations

import random

import pytest

from engine.compile import limits
from engine.compile.durable import compile_flow
from engine.compile.reference import ReferenceEngine
from engine.errors import RulesetError
from engine.ir import All, Arbitration, FactRef, Flow, Not, Rule, Ruleset, SetFact, Test
from engine.session import DurableEngine


def flow_of(rules, max_firings=1000):
    return Flow("gen", "", (Ruleset("gen", "", "", {}, tuple(rules), ()),), (), Arbitration(), {}, "t",
                max_firings=max_firings)


def random_rules(n, seed=1, fields=15):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tests = []
        for f in rnd.sample(range(fields), 3):
            op = rnd.choice(["eq", "gte", "lt", "in"])
            v = (tuple(sorted(rnd.sample(range(10), 3))) if op == "in" else rnd.randint(0, 9))
            tests.append(Test(f"in.f{f}", op, v))
        out.append(Rule(f"r{i}", "gen", "", 0, All(tuple(tests)), (SetFact(f"out.r{i}", 1),)))
    return out


def chained_rules(n, seed=2, fields=15):
    """Rules that set facts other rules read, with priorities that often put a reader before
    its setter: the agenda has to go back to earlier parts and re-assert their facts."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tests = [Test(f"in.f{f}", rnd.choice(["eq", "gte", "lt"]), rnd.randint(0, 9))
                 for f in rnd.sample(range(fields), 2)]
        if i >= 5 and rnd.random() < 0.5:
            j = rnd.randrange(i)
            d = f"d.r{j}"
            tests.append(rnd.choice([Test(d, "gte", 1), Test(d, "missing"), Not(Test(d, "eq", 2)),
                                     Test(d, "lt", FactRef(f"in.f{rnd.randrange(fields)}"))]))
        then = (SetFact(f"d.r{i}", rnd.randint(0, 3)),)
        out.append(Rule(f"r{i}", "gen", "", rnd.randint(-5, 5), All(tuple(tests)), then))
    return out


def agree(flow, program=None, decisions=150, seed=3, fields=15):
    engine = DurableEngine(flow, program)
    ref = ReferenceEngine(flow)
    rnd = random.Random(seed)
    try:
        for _ in range(decisions):
            wm = {f"in.f{f}": rnd.randint(0, 9) for f in range(fields) if rnd.random() > 0.1}
            got, want = engine.run(dict(wm)), ref.run(dict(wm))
            assert [f["id"] for f in got.firings] == [f["id"] for f in want.firings]
            assert got.derived == want.derived
    finally:
        engine.close()
    return engine.program


@pytest.mark.parametrize("n", [300, 600])
def test_many_overlapping_rules_are_partitioned(n):
    program = agree(flow_of(random_rules(n), max_firings=1000))
    assert len(program.parts) > 1
    for part in program.parts:
        assert not limits.problems(part.definition)


def test_chained_rules_across_parts_fire_in_the_reference_order():
    flow = flow_of(chained_rules(120))
    for max_items in (None, 7, 40):
        program = agree(flow, compile_flow(flow, max_items))
        if max_items:
            assert len(program.parts) >= 120 // max_items and any(p.markers for p in program.parts)


def test_many_identical_rules_are_partitioned():
    rules = [Rule(f"r{i}", "gen", "", 0, All((Test("in.f0", "gte", 0),)), (SetFact(f"out.r{i}", 1),))
             for i in range(600)]
    program = agree(flow_of(rules), decisions=20)
    assert len(program.parts) >= 3


def test_an_item_beyond_the_limits_alone_is_refused_with_reason():
    wide = Rule("wide", "gen", "", 0, Test("in.f0", "in", tuple(range(600))), (SetFact("out.x", 1),))
    with pytest.raises(RulesetError) as exc:
        compile_flow(flow_of([wide] + random_rules(5)))
    assert exc.value.diagnostics[0].code == "engine-limit"
    assert "gen/wide" in str(exc.value) and "511" in str(exc.value)
