"""Flows beyond durable_rules' measured limits are refused at compile time with the reason,
never left to fail or crash at run time; flows within them run correctly."""
from __future__ import annotations

import random

import pytest

from engine.compile.durable import compile_flow
from engine.compile.reference import ReferenceEngine
from engine.errors import RulesetError
from engine.ir import All, Arbitration, Flow, Rule, Ruleset, SetFact, Test
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


def test_many_overlapping_rules_refused_with_reason():
    with pytest.raises(RulesetError) as exc:
        compile_flow(flow_of(random_rules(600), max_firings=200))
    assert "matching stack holds 64" in str(exc.value) or "share one condition prefix" in str(exc.value)


def test_too_many_properties_refused():
    with pytest.raises(RulesetError) as exc:
        compile_flow(flow_of(random_rules(300, fields=15), max_firings=1000))
    assert "properties" in str(exc.value) and "max_firings" in str(exc.value)


def test_hundred_rule_flow_compiles_and_matches_reference():
    flow = flow_of(random_rules(100), max_firings=200)
    engine = DurableEngine(flow)
    ref = ReferenceEngine(flow)
    rnd = random.Random(3)
    try:
        for _ in range(200):
            wm = {f"in.f{f}": rnd.randint(0, 9) for f in range(15) if rnd.random() > 0.1}
            assert [f["id"] for f in engine.run(dict(wm)).firings] == [f["id"] for f in ref.run(dict(wm)).firings]
    finally:
        engine.close()


def test_many_identical_rules_refused():
    rules = [Rule(f"r{i}", "gen", "", 0, All((Test("in.f0", "gte", 0),)), (SetFact(f"out.r{i}", 1),))
             for i in range(130)]
    with pytest.raises(RulesetError) as exc:
        compile_flow(flow_of(rules, max_firings=100))
    assert "share one condition prefix" in str(exc.value)
