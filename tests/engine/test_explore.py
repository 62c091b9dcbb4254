"""Holdout and exploration (engine/explore.py): exploration draws only among what the rules and
guardrails allow, the holdout gets no automated offer but keeps its mandatory reviews, every
decision says its arm and the exact probability of its plan, and the same facts still give the
same decision."""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, strategies as st

from engine.decide import Decider
from engine.explore import ARMS, Exploration
from engine.response import ResponseModels
from tests.engine.test_choose import CAPS, PROPERTY, _flat, accounts
from engine.guardrails import discount_limit

SALTS = st.text("abcdef0123456789", min_size=1, max_size=8)


@pytest.fixture(scope="module")
def responses(root):
    return ResponseModels.from_dir(root / "models" / "response")


@pytest.fixture(scope="module")
def deciders(renewal_flow, responses):
    made = {}

    def get(holdout: float, explore: float, salt: str) -> Decider:
        key = (holdout, explore, salt)
        if key not in made:
            made[key] = Decider(renewal_flow, "reference", responses=responses,
                                exploration=Exploration(holdout, explore, salt))
        return made[key]
    yield get
    for d in made.values():
        d.close()


@PROPERTY
@given(facts=accounts, account=st.integers(0, 10**6), explore=st.sampled_from([0.2, 0.5, 1.0]), salt=SALTS)
def test_exploration_never_breaks_a_guardrail(deciders, renewal_flow, facts, account, explore, salt):
    facts["account"]["id"] = f"acct-{account}"
    d = deciders(0.1, explore, salt).decide(copy.deepcopy(facts))
    seg = facts["account"]["segment"]
    for o in d["offers"]:
        if o["kind"] != "renewal":
            continue
        cap = CAPS[seg][1] if o["term_months"] >= 24 else CAPS[seg][0]
        if facts["billing"]["days_overdue"] > 30:
            cap = 0
        assert 0 <= o["discount"] <= min(cap, o["discount_ceiling"]), o
        limit = discount_limit(renewal_flow, {**_flat(facts), **d["derived"]}, o)
        assert limit is None or o["discount"] <= limit
    assert {o["offer"] for o in d["offers"]} <= {o["offer"] for o in d["allowed"]}
    assert sum(o["kind"] == "renewal" for o in d["offers"]) <= 1
    mandatory = facts["scores"]["churn_risk"] >= 0.7 and facts["account"]["arr"] >= 100_000
    if mandatory:
        assert d["human"]["mandatory"] and d["approval"]["required"]
    policy = d["policy"]
    assert policy["arm"] in ARMS and 0 < policy["propensity"] <= 1
    if policy["arm"] == "explore":
        assert policy["propensity"] >= explore / policy["candidates"] - 1e-8
        assert not d["human"] or d["human"]["mandatory"], "exploration never spends an optional touch"
    if policy["arm"] == "exploit":
        assert policy["propensity"] >= 1 - explore - 1e-8
    if policy["arm"] == "holdout":
        assert d["offers"] == [] and policy["propensity"] == 1.0
        assert not d["human"] or d["human"]["mandatory"]


@PROPERTY
@given(facts=accounts, salt=SALTS)
def test_same_facts_same_decision_while_exploring(deciders, facts, salt):
    d = deciders(0.05, 0.5, salt)
    assert d.decide(copy.deepcopy(facts)) == d.decide(copy.deepcopy(facts))


def test_the_holdout_is_a_stable_share_of_accounts():
    e = Exploration(holdout=0.05)
    held = [i for i in range(4000) if e.held_out(f"acct-{i}")]
    assert 140 <= len(held) <= 260  # 5% of 4000 = 200, ± 4.3 standard deviations
    assert held == [i for i in range(4000) if Exploration(holdout=0.05).held_out(f"acct-{i}")]
    assert not any(Exploration(holdout=0.0).held_out(f"acct-{i}") for i in range(100))
    assert not Exploration(holdout=1.0).held_out(None)
    reshuffled = {i for i in range(4000) if Exploration(holdout=0.05, salt="other").held_out(f"acct-{i}")}
    assert reshuffled != set(held)


def test_the_holdout_depends_on_the_account_only(deciders, example_facts):
    d = deciders(0.5, 0.0, "s")
    held = next(i for i in range(100) if Exploration(0.5, 0.0, "s").held_out(f"acct-{i}"))
    for days in (20, 45, 90):
        facts = copy.deepcopy(example_facts)
        facts["account"]["id"] = f"acct-{held}"
        facts["contract"]["days_to_renewal"] = days
        out = d.decide(facts)
        assert out["policy"]["arm"] == "holdout" and out["offers"] == []
        assert out["next_best_action"]["type"] in ("no_action", "human_touch")


def test_explored_plans_are_drawn_uniformly_among_the_allowed(deciders, example_facts):
    """With every decision exploring, the plans drawn over many salts cover the candidates
    evenly: each of N plans about 1/N of the time, and each with propensity exactly 1/N."""
    facts = copy.deepcopy(example_facts)
    facts["contract"].pop("requested_discount", None)
    facts["contract"]["days_to_renewal"] = 45
    facts["account"]["days_since_last_contact"] = 60
    seen, n = {}, None
    for i in range(600):
        out = deciders(0.0, 1.0, f"u{i}").decide(copy.deepcopy(facts))
        assert out["policy"]["arm"] == "explore"
        n = out["policy"]["candidates"]
        assert out["policy"]["propensity"] == pytest.approx(1 / n, abs=1e-8)
        key = tuple(sorted((o["offer"], o["discount"]) for o in out["offers"]))
        seen[key] = seen.get(key, 0) + 1
    assert n > 1 and len(seen) <= n
    assert len(seen) >= 0.8 * n, (len(seen), n)
    assert max(seen.values()) <= 600 / n * 4
