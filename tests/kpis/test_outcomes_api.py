"""POST /v1/outcomes and GET /v1/decisions/<id>/outcomes on SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import func, select

from adapters.store.models import AuditEntry
from adapters.store.outcomes import outcomes

from .conftest import auth, decide


def _count(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(outcomes))


def test_one_outcome_is_recorded_with_an_audit_entry(client, factory):
    d = decide(client)
    r = client.post("/v1/outcomes", json={"decision_id": d["id"], "type": "renewed", "amount": 84000,
                                          "offer": "renewal_36m", "occurred_at": "2026-05-01T14:00:00+02:00",
                                          "detail": {"crm": "opp-1"}}, headers=auth())
    assert r.status_code == 201, r.json
    rec = r.json
    assert rec["decision_id"] == d["id"] and rec["type"] == "renewed" and rec["amount"] == 84000
    assert rec["offer"] == "renewal_36m" and rec["offer_kind"] == "renewal"
    assert rec["occurred_at"] == "2026-05-01T12:00:00Z"
    assert rec["detail"] == {"crm": "opp-1"} and rec["id"]
    with factory() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.kind == "outcome.recorded")).one()
    assert entry.subject == rec["id"] and entry.detail["decision_id"] == d["id"]
    listed = client.get(f"/v1/decisions/{d['id']}/outcomes", headers=auth("k-read"))
    assert listed.status_code == 200
    assert listed.json == {"decision_id": d["id"], "outcomes": [rec]}


def test_a_batch_and_its_order(client):
    d = decide(client)
    r = client.post("/v1/outcomes", json={"outcomes": [
        {"id": "o-2", "decision_id": d["id"], "type": "offer_accepted", "offer": "addon_seats",
         "occurred_at": "2026-05-02T00:00:00Z"},
        {"id": "o-1", "decision_id": d["id"], "type": "expanded", "amount": 21000, "occurred_at": "2026-05-01T00:00:00Z"},
    ]}, headers=auth())
    assert r.status_code == 201, r.json
    assert [o["id"] for o in r.json["outcomes"]] == ["o-2", "o-1"]
    assert r.json["outcomes"][0]["offer_kind"] == "upsell"
    listed = client.get(f"/v1/decisions/{d['id']}/outcomes", headers=auth()).json["outcomes"]
    assert [o["id"] for o in listed] == ["o-1", "o-2"]


def test_every_problem_by_path_and_nothing_written(client, factory):
    d = decide(client)
    r = client.post("/v1/outcomes", json={"outcomes": [
        {"decision_id": d["id"], "type": "renewed", "amount": 100},                       # fine
        {"decision_id": d["id"], "type": "renewed"},                                      # no amount
        {"decision_id": "0" * 32, "type": "churned"},                                     # unknown decision
        {"decision_id": d["id"], "type": "offer_accepted", "offer": "premium_support"},   # not an offer of it
        {"decision_id": d["id"], "type": "offer_declined"},                               # no offer
        {"decision_id": d["id"], "type": "won", "amount": -1, "occurred_at": "2026-05-01 12:00", "x": 1},
    ]}, headers=auth())
    assert r.status_code == 400, r.json
    assert r.headers["Content-Type"].startswith("application/problem+json")
    paths = [e["path"] for e in r.json["errors"]]
    assert paths == ["$.outcomes[1].amount", "$.outcomes[2].decision_id", "$.outcomes[3].offer",
                     "$.outcomes[4].offer", "$.outcomes[5].amount", "$.outcomes[5].occurred_at",
                     "$.outcomes[5].type", "$.outcomes[5].x"]
    assert "no decision 000" in r.json["errors"][1]["message"]
    assert "addon_seats, renewal_36m" in r.json["errors"][2]["message"]
    assert _count(factory) == 0


def test_unknown_decision_of_a_single_outcome(client, factory):
    r = client.post("/v1/outcomes", json={"decision_id": "f" * 32, "type": "churned"}, headers=auth())
    assert r.status_code == 400
    assert r.json["errors"] == [{"path": "$.decision_id", "message": "no decision " + "f" * 32}]
    # shape problems and the unknown decision in one answer
    r = client.post("/v1/outcomes", json={"decision_id": "f" * 32, "type": "renewed", "amount": "x"}, headers=auth())
    assert [e["path"] for e in r.json["errors"]] == ["$.amount", "$.decision_id"]
    assert _count(factory) == 0


def test_bodies_that_are_not_outcomes(client):
    assert client.post("/v1/outcomes", json=[1], headers=auth()).status_code == 400
    r = client.post("/v1/outcomes", json={"outcomes": []}, headers=auth())
    assert r.status_code == 400 and r.json["errors"][0]["path"] == "$.outcomes"
    r = client.post("/v1/outcomes", data="{", headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["errors"][0]["path"] == "$"


def test_idempotent_by_id(client, factory):
    d = decide(client)
    body = {"id": "crm-renewal-17", "decision_id": d["id"], "type": "renewed", "amount": 84000}
    first = client.post("/v1/outcomes", json=body, headers=auth())
    assert first.status_code == 201
    again = client.post("/v1/outcomes", json={**body, "amount": 84000.0}, headers=auth())
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    other = client.post("/v1/outcomes", json={**body, "amount": 90000}, headers=auth())
    assert other.status_code == 409
    assert other.json["errors"] == [{"path": "$.id", "message": "outcome 'crm-renewal-17' was recorded with another body"}]
    # a batch with a replay and a new item: the new one is written, 201
    r = client.post("/v1/outcomes", json={"outcomes": [body, {"id": "n-1", "decision_id": d["id"], "type": "churned"}]},
                    headers=auth())
    assert r.status_code == 201 and [o["id"] for o in r.json["outcomes"]] == ["crm-renewal-17", "n-1"]
    assert r.json["outcomes"][0] == first.json
    # a batch with a conflict writes nothing
    r = client.post("/v1/outcomes", json={"outcomes": [{"id": "n-2", "decision_id": d["id"], "type": "churned"},
                                                       {**body, "type": "churned"}]}, headers=auth())
    assert r.status_code == 409 and r.json["errors"][0]["path"] == "$.outcomes[1].id"
    # the same id twice in one batch
    r = client.post("/v1/outcomes", json={"outcomes": [{"id": "n-3", "decision_id": d["id"], "type": "churned"},
                                                       {"id": "n-3", "decision_id": d["id"], "type": "churned"}]},
                    headers=auth())
    assert r.status_code == 400 and r.json["errors"][0]["path"] == "$.outcomes[1].id"
    assert _count(factory) == 2


def test_scopes(client):
    d = decide(client)
    body = {"decision_id": d["id"], "type": "churned"}
    assert client.post("/v1/outcomes", json=body).status_code == 401
    assert client.post("/v1/outcomes", json=body, headers=auth("k-read")).status_code == 403
    assert client.get(f"/v1/decisions/{d['id']}/outcomes", headers=auth("k-approve")).status_code == 200
    assert client.get(f"/v1/decisions/{'0' * 32}/outcomes", headers=auth()).status_code == 404


def test_outcomes_are_append_only(client, factory):
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import DBAPIError
    d = decide(client)
    client.post("/v1/outcomes", json={"id": "x-1", "decision_id": d["id"], "type": "churned"}, headers=auth())
    with pytest.raises(DBAPIError):
        with factory() as s, s.begin():
            s.execute(update(outcomes).values(type="renewed"))
