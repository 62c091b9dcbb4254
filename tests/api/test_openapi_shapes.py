"""The OpenAPI document describes what is sent: POST and GET /v1/decisions bodies have exactly
the fields of DecisionResponse and DecisionRecord, and nested objects no field the schema lacks."""
from __future__ import annotations

from tests.api.conftest import auth


def _props(spec, name):
    return spec["components"]["schemas"][name]["properties"]


def test_decision_bodies_match_the_openapi_schemas(client, example_facts):
    spec = client.get("/openapi.json").json
    posted = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth()).json
    dry = client.post("/v1/decisions", json={"facts": example_facts, "dry_run": True}, headers=auth()).json
    got = client.get(f"/v1/decisions/{posted['id']}", headers=auth()).json
    assert set(posted) == set(dry) == set(_props(spec, "DecisionResponse"))
    assert set(got) == set(_props(spec, "DecisionRecord"))
    assert set(_props(spec, "DecisionResponse")) <= set(_props(spec, "DecisionRecord"))
    for nested, items in (("Offer", posted["offers"]), ("PlannedAction", posted["actions"]),
                          ("Citation", posted["citations"]), ("Escalation", posted["escalations"])):
        for item in items:
            assert set(item) <= set(_props(spec, nested)), (nested, set(item) - set(_props(spec, nested)))
    assert posted["offers"] and posted["citations"]
    shared = set(_props(spec, "DecisionResponse")) - {"actions"}  # GET shows actions as planned
    assert {k: got[k] for k in shared} == {k: posted[k] for k in shared}
