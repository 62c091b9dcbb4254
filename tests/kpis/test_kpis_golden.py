"""GET /v1/kpis on a fixed book with hand-computed answers, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from adapters.store.kpis import KpiQuery, compute, percentile

from . import golden
from .conftest import auth

EXPECTED = json.loads((Path(__file__).parent / "expected_kpis.json").read_text())


def test_every_case_matches_the_hand_computed_kpis(client, factory):
    golden.load(factory)
    for case in EXPECTED["cases"]:
        r = client.get("/v1/kpis?" + urlencode(case["query"]), headers=auth("k-read"))
        assert r.status_code == 200, (case["name"], r.json)
        assert r.json["groups"] == case["groups"], case["name"]


def test_the_answer_names_its_filters_and_groups(client, factory):
    golden.load(factory)
    r = client.get("/v1/kpis?flow=renewal&from=2026-03-01T00:00:00-05:00&group_by=segment&group_by=period",
                   headers=auth("k-read"))
    assert r.status_code == 200
    assert r.json["filters"] == {"flow": "renewal", "ruleset_version": None, "segment": None,
                                 "from": "2026-03-01T05:00:00Z", "to": None}
    assert r.json["group_by"] == ["segment", "period"] and r.json["period"] == "month"
    assert [g["key"] for g in r.json["groups"]] == [{"segment": "enterprise", "period": "2026-03-01"},
                                                    {"segment": "mid_market", "period": "2026-03-01"},
                                                    {"segment": "smb", "period": "2026-03-01"}]


def test_days(client, factory):
    golden.load(factory)
    r = client.get("/v1/kpis?group_by=period&period=day", headers=auth("k-read"))
    assert [(g["key"]["period"], g["decisions"]) for g in r.json["groups"]] == [
        ("2026-03-02", 1), ("2026-03-03", 1), ("2026-03-04", 1), ("2026-03-10", 1), ("2026-03-11", 1),
        ("2026-03-12", 1)]


def test_the_store_answers_the_same(factory):
    golden.load(factory)
    with factory() as s:
        answer = compute(s, KpiQuery(group_by=("flow", "segment")))
    case = next(c for c in EXPECTED["cases"] if c["name"] == "by flow and segment")
    assert answer["groups"] == case["groups"]


def test_query_problems_by_path(client):
    r = client.get("/v1/kpis?group_by=flow,colour&period=fortnight&from=yesterday&to=2026-01-01T00:00:00"
                   "&limit=3", headers=auth("k-read"))
    assert r.status_code == 400
    assert r.json["errors"] == [
        {"path": "query.from", "message": "not an RFC 3339 date-time with an offset, e.g. 2026-05-01T12:00:00Z"},
        {"path": "query.group_by", "message": "unknown: colour; choose from flow, ruleset_version, segment, period"},
        {"path": "query.limit", "message": "Unknown field."},
        {"path": "query.period", "message": "Must be one of: day, week, month."},
        {"path": "query.to", "message": "not an RFC 3339 date-time with an offset, e.g. 2026-05-01T12:00:00Z"},
    ]
    r = client.get("/v1/kpis?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z&period=week&group_by=flow,flow",
                   headers=auth("k-read"))
    assert [(e["path"], e["message"]) for e in r.json["errors"]] == [
        ("query.group_by", "names a group twice"), ("query.period", "only with group_by=period"),
        ("query.to", "must be after from")]


def test_scope(client):
    assert client.get("/v1/kpis").status_code == 401
    assert client.get("/v1/kpis", headers=auth("k-read")).status_code == 200


def test_percentile_is_percentile_cont():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([0.0, 3600.0, 7200.0], 0.9) == 6480.0
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 0.95) == 48.0


def test_decisions_made_through_the_api(client):
    from .conftest import decide
    d = decide(client)  # automatic: renewal_36m and addon_seats, one clamped discount, two actions
    assert d["status"] == "automatic" and len(d["adjustments"]) == 1
    r = client.post("/v1/outcomes", json={"outcomes": [
        {"decision_id": d["id"], "type": "renewed", "amount": 84000, "offer": "renewal_36m"},
        {"decision_id": d["id"], "type": "offer_declined", "offer": "addon_seats"}]}, headers=auth())
    assert r.status_code == 201
    k = client.get("/v1/kpis?flow=renewal", headers=auth("k-read")).json["groups"][0]["kpis"]
    assert k["renewal_rate"] == {"value": 1.0, "renewed": 1, "churned": 0}
    assert k["average_contract_value"] == {"value": 84000.0, "renewals": 1}
    assert k["upgrade_win_rate"] == {"value": 0.0, "accepted": 0, "declined": 1}
    assert k["guardrail_violations"] == {"value": 1, "blocked_offers": 0, "decisions_affected": 1, "decisions": 1}
    assert k["actions"]["automated"] == len(d["actions"]) and k["actions"]["human_approved"] == 0
    assert k["human_intervention_rate"] == {"value": 0.0, "intervened": 0, "decisions": 1}
    # made without approval and without a signal: the offer went out when the decision was made
    assert k["time_to_approved_offer_seconds"] == {"p50": 0.0, "p90": 0.0, "n": 1}
