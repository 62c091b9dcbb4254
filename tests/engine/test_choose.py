"""The choose stage: caps are never exceeded, mandatory reviews always kept, the same facts
give the same decision, "no action" wins when nothing is worth its cost, and capacity and
timing behave as documented (engine/choose.py)."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.choose import Admission, Recorded, Unlimited
from engine.decide import Decider, chooser_for
from engine.errors import RulesetError
from engine.guardrails import discount_limit
from engine.response import ResponseModels
from engine.response.model import ResponseModel
from tests.choice_models import response_models

CAPS = {"smb": (10, 15), "mid_market": (15, 20), "enterprise": (20, 25)}


@pytest.fixture(scope="module")
def responses(root):
    return ResponseModels.from_dir(root / "models" / "response")


@pytest.fixture(scope="module")
def decider(renewal_flow, responses):
    d = Decider(renewal_flow, "reference", responses=responses)
    yield d
    d.close()


accounts = st.fixed_dictionaries({
    "account": st.fixed_dictionaries({
        "id": st.just("acct-1"),
        "segment": st.sampled_from(["smb", "mid_market", "enterprise"]),
        "arr": st.integers(1_000, 2_000_000),
        "plan": st.sampled_from(["starter", "pro", "enterprise"]),
        "seats": st.integers(1, 2000),
        "seat_price": st.integers(50, 2000),
        "seat_utilisation": st.floats(0, 1.5),
        "nps": st.integers(0, 10),
    }, optional={"days_since_last_contact": st.integers(0, 400)}),
    "contract": st.fixed_dictionaries({
        "term_months": st.sampled_from([12, 24, 36]),
        "days_to_renewal": st.integers(-10, 400),
    }, optional={"requested_discount": st.integers(0, 40)}),
    "usage": st.fixed_dictionaries({"growth_90d": st.floats(-0.5, 1.5), "logins_30d": st.integers(0, 50_000)}),
    "support": st.fixed_dictionaries({"incidents_30d": st.integers(0, 8), "open_tickets": st.integers(0, 20)}),
    "billing": st.fixed_dictionaries({"days_overdue": st.sampled_from([0, 0, 0, 10, 45])}),
    "scores": st.fixed_dictionaries({
        "churn_risk": st.floats(0, 1), "churn_risk_confidence": st.floats(0.6, 1),
        "upsell_propensity": st.floats(0, 1), "upsell_propensity_confidence": st.floats(0.6, 1)}),
})

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(facts=accounts)
def test_never_above_a_cap_and_mandatory_reviews_kept(decider, renewal_flow, facts):
    d = decider.decide(copy.deepcopy(facts))
    seg = facts["account"]["segment"]
    for o in d["offers"]:
        if o["kind"] != "renewal":
            continue
        cap = CAPS[seg][1] if o["term_months"] >= 24 else CAPS[seg][0]
        if facts["billing"]["days_overdue"] > 30:
            cap = 0
        assert 0 <= o["discount"] <= cap, o
        assert o["discount"] <= o["discount_ceiling"]
        limit = discount_limit(renewal_flow, {**_flat(facts), **d["derived"]}, o)
        assert limit is None or o["discount"] <= limit
    mandatory = facts["scores"]["churn_risk"] >= 0.7 and facts["account"]["arr"] >= 100_000
    queues = [e["queue"] for e in d["escalations"]]
    if mandatory:
        assert "csm" in queues and d["human"]["mandatory"] and d["approval"]["required"]
    assert len(d["offers"]) <= 2 and sum(o["kind"] == "renewal" for o in d["offers"]) <= 1
    assert {o["offer"] for o in d["offers"]} <= {o["offer"] for o in d["allowed"]}


@PROPERTY
@given(facts=accounts)
def test_same_facts_same_decision(decider, facts):
    a = decider.decide(copy.deepcopy(facts))
    b = decider.decide(copy.deepcopy(facts))
    assert a == b


def _flat(facts):
    from engine.facts import flatten
    return flatten(facts)


def _decider(flow, renewal: dict, upsell: dict, base: float = 2.0, upsell_base: float = -1.0):
    return Decider(flow, "reference", responses=response_models(renewal, upsell, renewal_base=base,
                                                                upsell_base=upsell_base))


def _in_window(example_facts, **contract):
    facts = copy.deepcopy(example_facts)
    facts["contract"].pop("requested_discount", None)
    facts["contract"].update(days_to_renewal=45, **contract)
    facts["account"]["days_since_last_contact"] = 60
    return facts


def test_no_action_wins_when_nothing_is_worth_its_cost(renewal_flow, example_facts):
    """Offers that change nothing (a longer term only loses), an upsell nobody takes that annoys:
    any discount is margin given away and a touch costs 400, so the plan is to do nothing - and
    no outreach goes out."""
    d = _decider(renewal_flow, {"term_24": -3.0, "term_36": -3.0, "upsell": -0.5}, {"premium": -9.0}, base=2.0,
                 upsell_base=-9.0)
    out = d.decide(_in_window(example_facts))
    assert out["offers"] == [] and out["next_best_action"]["type"] == "no_action"
    assert out["next_best_action"]["expected_value"] == 0.0
    assert not any(a["type"] in ("schedule_outreach", "create_quote") for a in out["actions"])
    assert all(a["expected_value"] <= 0 for a in out["next_best_action"]["alternatives"])


def test_a_discount_is_given_only_where_it_changes_the_outcome(renewal_flow, example_facts):
    facts = _in_window(example_facts)
    sure = _decider(renewal_flow, {"offer": 0.5}, {}, base=3.0).decide(copy.deepcopy(facts))
    moved = _decider(renewal_flow, {"offer": 0.2, "discount_log": 0.6}, {}, base=-0.5).decide(copy.deepcopy(facts))
    r_sure = [o for o in sure["offers"] if o["kind"] == "renewal"]
    r_moved = [o for o in moved["offers"] if o["kind"] == "renewal"]
    assert r_sure and r_sure[0]["discount"] == 0
    assert r_moved and 0 < r_moved[0]["discount"] <= r_moved[0]["discount_ceiling"]


def test_an_upsell_outranks_a_renewal_offer_when_it_adds_more(renewal_flow, example_facts):
    d = _decider(renewal_flow, {"offer": -0.3, "term_24": -3.0, "term_36": -3.0}, {"premium": 3.0}, base=1.0,
                 upsell_base=2.0)
    out = d.decide(_in_window(example_facts))
    assert out["next_best_action"]["type"] == "upsell_offer"
    assert not any(o["kind"] == "renewal" for o in out["offers"])


def test_candidates_and_the_choice_are_in_the_trace(decider, example_facts):
    d = decider.decide(copy.deepcopy(example_facts))
    trace = d["trace"]["choice"]
    assert trace["models"] == {"renewal": "renewal-response@1.0.0", "upsell": "upsell-response@1.0.0"}
    plans = [c for c in trace["candidates"] if c["kind"] == "plan"]
    assert plans and max(p["expected_value"] for p in plans) == pytest.approx(
        trace["expected_value"], abs=0.01) or d["reevaluate"]
    nba = d["next_best_action"]
    assert nba["type"] in ("renewal_offer", "upsell_offer", "human_touch", "no_action", "reevaluate")
    ranked = [a["expected_value"] for a in nba["alternatives"]]
    assert ranked == sorted(ranked, reverse=True)


def test_nothing_allowed_yet_means_reevaluate_at_the_next_checkpoint(decider, example_facts):
    facts = copy.deepcopy(example_facts)
    facts["contract"]["days_to_renewal"] = 300
    d = decider.decide(facts)
    assert d["offers"] == [] and d["reevaluate"]["at_days_to_renewal"] == 180
    assert d["reevaluate"]["in_days"] == 120 and d["next_best_action"]["type"] == "reevaluate"
    assert not any(a["type"] == "schedule_outreach" for a in d["actions"])


def test_contact_gap_defers_to_the_day_it_ends(decider, example_facts):
    facts = copy.deepcopy(example_facts)
    facts["contract"]["days_to_renewal"] = 60
    facts["account"]["days_since_last_contact"] = 5
    d = decider.decide(facts)
    assert d["offers"] == [] and d["reevaluate"]["at_days_to_renewal"] == 51


class Refuse:
    def __init__(self):
        self.asked = []

    def admit(self, queue, value, *, mandatory=False, claim=True):
        self.asked.append((queue, round(value, 2), mandatory, claim))
        return Admission(mandatory, 1e9, "full")


def test_a_touch_refused_by_capacity_leaves_the_best_automated_plan(renewal_flow, responses, example_facts):
    facts = copy.deepcopy(example_facts)
    facts["contract"].update(days_to_renewal=60)
    facts["contract"].pop("requested_discount", None)
    facts["scores"] = {"churn_risk": 0.5, "churn_risk_confidence": 0.9, "upsell_propensity": 0.3,
                       "upsell_propensity_confidence": 0.9}
    facts["account"]["arr"] = 90_000
    d = Decider(renewal_flow, "reference", responses=responses)
    free = d.decide(copy.deepcopy(facts))
    refuse = Refuse()
    held = d.decide(copy.deepcopy(facts), capacity=refuse, claim=False)
    if free["trace"]["choice"]["human_value"] and free["trace"]["choice"]["human_value"] > 0:
        assert refuse.asked and refuse.asked[0][3] is False
    assert held["trace"]["choice"]["human"] is False
    assert not any(e.get("rule") == "choose" for e in held["escalations"])
    assert held["human"] is None or held["human"]["mandatory"]


def test_a_replay_gets_the_recorded_admission(renewal_flow, responses, example_facts):
    d = Decider(renewal_flow, "reference", responses=responses)
    a = d.decide(copy.deepcopy(example_facts), capacity=Recorded(False), claim=False)
    assert a["trace"]["choice"]["human"] is False or a["human"]["mandatory"]


def test_a_flow_naming_a_missing_model_fails_to_load_with_its_location(renewal_flow):
    with pytest.raises(RulesetError) as e:
        chooser_for(renewal_flow, ResponseModels({}))
    assert "flow.yaml" in str(e.value) and "unknown-model" in str(e.value)


def test_served_probabilities_match_the_closed_form(responses, example_facts):
    """terms() computed once + one dot product per plan = the full model."""
    from engine.facts import flatten
    from engine.response import treatments
    m = responses.get("renewal-response@1.0.0")
    x = flatten(example_facts)
    terms = m.terms(x)
    for enc in (treatments.renewal(None, 0, 12, False), treatments.renewal(24, 7, 12, True, True)):
        z = terms[0] + sum(e * a for e, a in zip(terms[1], enc))
        import math
        assert ResponseModel.probability(terms, enc) == pytest.approx(1 / (1 + math.exp(-z)))


def test_unlimited_admits_any_positive_value():
    assert Unlimited().admit("csm", 10.0).admitted
