"""The sample flow decides the example account the same way on both engines."""
import pytest

from engine.decide import Decider
from engine.response import ResponseModels
from tests.choice_models import CEILING, response_models


@pytest.fixture(scope="module")
def shipped(root):
    return ResponseModels.from_dir(root / "models" / "response")


def _both(flow, facts, responses):
    durable = Decider(flow, "durable", responses=responses)
    try:
        a = durable.decide(facts)
    finally:
        durable.close()
    return a, Decider(flow, "reference", responses=responses).decide(facts)


def test_example_decision_on_durable_matches_reference(renewal_flow, example_facts, shipped):
    """What the policies allow is the rules' alone; which of it goes out is the models' choice,
    here hand-made models under which the renewal goes out at its ceiling with the upsell."""
    a, b = _both(renewal_flow, example_facts, response_models(**CEILING))
    assert a == b
    assert [(o["offer"], o["discount"]) for o in a["allowed"]] == [
        ("addon_seats", 0), ("premium_support", 0), ("renewal_36m", 20), ("renewal_24m", 18), ("renewal_standard", 15)]
    assert [(o["offer"], o["discount"], o.get("discount_ceiling")) for o in a["offers"]] == [
        ("renewal_36m", 20, 20), ("addon_seats", 0, None)]
    assert a["status"] == "automatic"
    allowed = a["allowed"]
    a, b = _both(renewal_flow, example_facts, shipped)
    assert a == b and a["allowed"] == allowed


def test_same_facts_same_decision(renewal_flow, example_facts, shipped):
    d = Decider(renewal_flow, responses=shipped)
    try:
        first = d.decide(example_facts)
        assert all(d.decide(example_facts) == first for _ in range(20))
    finally:
        d.close()
