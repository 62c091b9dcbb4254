"""Every recorded decision carries its arm and the propensity of its plan: in the answer, in
GET /v1/decisions/<id> and in its database row, on SQLite and PostgreSQL."""
from __future__ import annotations

import copy

import pytest
from sqlalchemy import select

from adapters.store.models import Decision
from engine.explore import Exploration
from tests.api.conftest import auth


@pytest.fixture()
def settings_overrides():
    return {"holdout_share": 0.3, "explore_share": 0.5, "experiment_salt": "t"}


def test_arm_and_propensity_in_the_answer_the_record_and_the_row(app, client, example_facts):
    ex = Exploration(0.3, 0.5, "t")
    ids = {}
    for i in range(12):
        facts = copy.deepcopy(example_facts)
        facts["account"]["id"] = f"acct-{i}"
        r = client.post("/v1/decisions", json={"facts": facts}, headers=auth())
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        policy = body["policy"]
        assert policy["arm"] == ("holdout" if ex.held_out(f"acct-{i}") else policy["arm"])
        assert policy["arm"] in ("holdout", "explore", "exploit") and 0 < policy["propensity"] <= 1
        if policy["arm"] == "holdout":
            assert body["offers"] == []
        got = client.get(f"/v1/decisions/{body['id']}", headers=auth("k-read")).get_json()
        assert got["policy"] == policy
        ids[body["id"]] = policy
    assert {p["arm"] for p in ids.values()} >= {"holdout"}
    factory = app.extensions["postsale"].factory
    with factory() as s:
        rows = {d.id: (d.arm, d.propensity) for d in s.scalars(select(Decision))}
    assert rows == {k: (p["arm"], p["propensity"]) for k, p in ids.items()}


def test_a_dry_run_says_its_arm_too(client, example_facts):
    r = client.post("/v1/decisions", json={"facts": example_facts, "dry_run": True}, headers=auth())
    assert r.status_code == 200 and r.get_json()["policy"]["arm"] in ("holdout", "explore", "exploit")
