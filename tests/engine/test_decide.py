"""The sample flow decides the example account the same way on both engines."""
from engine.decide import Decider


def test_example_decision_on_durable_matches_reference(renewal_flow, example_facts):
    durable = Decider(renewal_flow, "durable")
    try:
        a = durable.decide(example_facts)
    finally:
        durable.close()
    b = Decider(renewal_flow, "reference").decide(example_facts)
    assert a == b
    assert [o["offer"] for o in a["offers"]] == ["renewal_36m", "addon_seats"]
    assert a["status"] == "automatic"


def test_same_facts_same_decision(renewal_flow, example_facts):
    d = Decider(renewal_flow)
    try:
        first = d.decide(example_facts)
        assert all(d.decide(example_facts) == first for _ in range(20))
    finally:
        d.close()
