"""POST /v1/events and the account endpoints, on SQLite and PostgreSQL."""
from __future__ import annotations

import random

from sqlalchemy import func, select

from adapters.store.models import DueEvaluation, Event

from .conftest import auth, renewal_story


def count(app, model) -> int:
    with app.extensions["postsale"].factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_events_are_stored_once_and_fold_into_features(client, app):
    events = renewal_story("acme-001")
    r = client.post("/v1/events", json={"events": events}, headers=auth())
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["accepted"] == len(events) and body["duplicates"] == []
    assert body["scheduled"] == [{"account_id": "acme-001", "flow": "renewal", "trigger": "renewal-signals",
                                  "due_at": body["scheduled"][0]["due_at"]}]
    again = client.post("/v1/events", json=events[:5] + [events[0]], headers=auth()).get_json()
    assert again["accepted"] == 0 and sorted(again["duplicates"]) == sorted([e["id"] for e in events[:5]] + [events[0]["id"]])
    assert count(app, Event) == len(events)
    f = client.get("/v1/accounts/acme-001/features", headers=auth("k-read")).get_json()
    assert f["version"] == len(events)
    feats = f["features"]
    assert feats["segment"] == "mid_market" and feats["days_to_renewal"] == 60
    assert feats["seat_utilisation"] == round(115 / 120, 4) and feats["usage_growth_90d"] > 0.3
    assert feats["logins_30d"] == 60 * 10


def test_one_bad_event_rejects_the_batch_with_every_problem(client, app):
    events = renewal_story("acme-002")[:4]
    events[0]["type"] = "crm.acount_updated"
    events[1]["data"]["term_months"] = "twelve"
    events[3]["occurred_at"] = "yesterday"
    r = client.post("/v1/events", json={"events": events}, headers=auth())
    assert r.status_code == 400
    problems = {e["path"]: e["message"] for e in r.get_json()["errors"]}
    assert "did you mean 'crm.account_updated'" in problems["$.events[0].type"]
    assert "$.events[1].data.term_months" in problems
    assert "$.events[3].occurred_at" in problems
    assert count(app, Event) == 0 and count(app, DueEvaluation) == 0


def test_bodies_that_are_not_events(client):
    for body in ({"events": []}, {"events": {}}, [1], {"id": "x"}, {"events": [], "extra": 1}):
        r = client.post("/v1/events", json=body, headers=auth())
        assert r.status_code == 400, body
        assert r.get_json()["errors"]
    r = client.post("/v1/events", data="{nope", headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400


def test_scopes(client):
    event = renewal_story("acme-003")[0]
    assert client.post("/v1/events", json=event).status_code == 401
    assert client.post("/v1/events", json=event, headers=auth("k-decide")).status_code == 403
    assert client.post("/v1/events", json=event, headers=auth()).status_code == 202
    assert client.get("/v1/accounts/acme-003/features", headers=auth()).status_code == 403
    assert client.post("/v1/accounts/acme-003/features/rebuild", headers=auth("k-read")).status_code == 403


def test_unknown_account_and_paging(client):
    assert client.get("/v1/accounts/nobody/features", headers=auth("k-read")).status_code == 404
    events = renewal_story("acme-004")
    client.post("/v1/events", json=events, headers=auth())
    seen, after = [], None
    while True:
        url = "/v1/accounts/acme-004/events?limit=50" + (f"&after={after}" if after else "")
        page = client.get(url, headers=auth("k-read")).get_json()
        seen += [e["id"] for e in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == sorted(e["id"] for e in events)
    assert client.get("/v1/accounts/acme-004/events?limit=0", headers=auth("k-read")).status_code == 400


def test_replay_rebuilds_identical_state_whatever_the_arrival_order(client, app):
    events = renewal_story("acme-005", incidents=3)
    events += [{"id": "t1", "type": "support.ticket_opened", "account_id": "acme-005", "occurred_at": events[0]["occurred_at"],
                "data": {"ticket_id": "T1", "severity": "high"}},
               {"id": "t1c", "type": "support.ticket_closed", "account_id": "acme-005", "occurred_at": events[1]["occurred_at"],
                "data": {"ticket_id": "T1"}}]
    random.Random(7).shuffle(events)
    for i in range(0, len(events), 17):
        assert client.post("/v1/events", json=events[i:i + 17], headers=auth()).status_code == 202
    store = app.extensions["postsale"].events
    stored = store.snapshot("acme-005", use_cache=False)
    assert store.replay("acme-005") == stored.state
    r = client.post("/v1/accounts/acme-005/features/rebuild", headers=auth("k-admin")).get_json()
    assert r == {"account_id": "acme-005", "events": len(events), "identical": True, "version": len(events)}


def test_triggers_that_do_not_load_are_a_clear_503(settings, tmp_path):
    from dataclasses import replace

    from api import create_app
    bad = tmp_path / "triggers.yaml"
    bad.write_text("triggers:\n  - name: x\n    flow: renewl\n    on: [product.usage]\n    facts: {}\n")
    app = create_app(replace(settings, triggers_file=bad))
    try:
        c = app.test_client()
        r = c.post("/v1/events", json=renewal_story("acme-900")[0], headers=auth())
        assert r.status_code == 503 and r.mimetype == "application/problem+json"
        assert "postsale triggers check" in r.get_json()["detail"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["triggers"] == "do not load"
    finally:
        app.extensions["postsale"].close()


def test_documented_in_openapi(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/v1/events", "/v1/accounts/{account_id}/features", "/v1/accounts/{account_id}/events",
                 "/v1/accounts/{account_id}/features/rebuild", "/v1/outcomes", "/v1/decisions/{decision_id}/outcomes",
                 "/v1/kpis"):
        assert path in spec["paths"], path
    assert "OutcomeRequest" in spec["components"]["schemas"]


def test_decide_from_an_accounts_features_with_facts_laid_over(client):
    client.post("/v1/events", json=renewal_story("acme-030"), headers=auth())
    body = {"flow": "renewal", "account_id": "acme-030", "facts": {"contract": {"requested_discount": 5}}}
    r = client.post("/v1/decisions", json=body, headers=auth("k-decide"))
    assert r.status_code == 201, r.get_json()
    record = client.get(r.headers["Location"], headers=auth("k-read")).get_json()
    assert record["facts"]["contract"] == {"term_months": 12, "days_to_renewal": 60, "requested_discount": 5}
    assert record["facts"]["account"]["seats"] == 120
    signals = record["signals"]
    assert signals["trigger"] is None and signals["features"]["values"]["requested_discount"] == 10
    assert signals["features"]["version"] == len(renewal_story("acme-030"))


def test_decide_from_features_needs_events_and_something_to_decide_on(client):
    r = client.post("/v1/decisions", json={"flow": "renewal", "account_id": "nobody"}, headers=auth("k-decide"))
    assert r.status_code == 400
    assert r.get_json()["errors"] == [{"path": "$.account_id", "message": "no events for account 'nobody'"}]
    r = client.post("/v1/decisions", json={"flow": "renewal"}, headers=auth("k-decide"))
    assert r.status_code == 400 and r.get_json()["errors"][0]["path"] == "$.facts"


def test_facts_for_another_account_are_refused(client):
    client.post("/v1/events", json=renewal_story("acme-031"), headers=auth())
    body = {"flow": "renewal", "account_id": "acme-031", "facts": {"account": {"id": "globex-9"}}}
    r = client.post("/v1/decisions", json=body, headers=auth("k-decide"))
    assert r.status_code == 400 and r.get_json()["errors"][0]["path"] == "$.facts.account.id"


def test_hostile_values_are_400s_not_500s(client, app):
    base = renewal_story("acme-032")[2]  # product.seats_used
    cases = {
        "occurred_at": ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "0999-01-01T00:00:00Z"],
        "account_id": ["x\ud800y", "nul\u0000"],
        "source": ["\u0000"],
    }
    for field, values in cases.items():
        for value in values:
            r = client.post("/v1/events", json={**base, field: value}, headers=auth())
            assert r.status_code == 400, (field, value, r.get_json())
            assert r.get_json()["errors"][0]["path"] == f"$.{field}"
    r = client.post("/v1/events", json={**base, "data": {"seats_used": 10 ** 400}}, headers=auth())
    assert r.status_code == 400 and r.get_json()["errors"][0]["path"] == "$.data.seats_used"
    r = client.post("/v1/events", json={**base, "data": {"seats_used": 3.0}}, headers=auth())
    assert r.status_code == 202
    assert client.get("/v1/accounts/acme-032/features", headers=auth("k-read")).get_json()["features"]["seats_used"] == 3
    for query in ("as_of=0001-01-05T00:00:00Z", "as_of=9999-12-31T23:59:59-01:00"):
        assert client.get(f"/v1/accounts/acme-032/features?{query}", headers=auth("k-read")).status_code == 400
    r = client.get("/v1/accounts/acme-032/events?after=99999999999999999999999", headers=auth("k-read"))
    assert r.status_code == 400


def test_features_as_of_a_past_time_count_only_what_had_happened(client, app):
    events = renewal_story("acme-033")
    client.post("/v1/events", json=events, headers=auth())
    past = at_days(3)
    f = client.get(f"/v1/accounts/acme-033/features?as_of={past}", headers=auth("k-read")).get_json()
    assert "renewal_date" not in f["features"] and "seats_used" not in f["features"]  # both happened a day ago
    assert f["features"]["segment"] == "mid_market"
    happened = [e for e in events if e["occurred_at"] <= past]
    assert f["version"] == len(happened)
    now = client.get("/v1/accounts/acme-033/features", headers=auth("k-read")).get_json()
    assert now["features"]["days_to_renewal"] == 60 and now["version"] == len(events)
    assert client.get(f"/v1/accounts/acme-033/features?as_of={at_days(400)}",
                      headers=auth("k-read")).status_code == 404


def at_days(days: float) -> str:
    from .conftest import at
    return at(days)
