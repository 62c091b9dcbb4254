"""Corrections (the latest outcome's amount stands), bounded amounts, and dates outside 1900-9998,
on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest

from cli.main import parser

from .conftest import auth, decide

YEARS = "the year must be from 1900 to 9998"


def _post(client, body):
    return client.post("/v1/outcomes", json=body, headers=auth())


def _kpis(client, query: str = "") -> dict:
    r = client.get("/v1/kpis" + query, headers=auth("k-read"))
    assert r.status_code == 200, r.json
    json.loads(r.data)  # strict JSON: no Infinity or NaN
    return r.json["groups"][0]["kpis"]


def test_a_correction_replaces_the_amount_it_corrects(client):
    d, e = decide(client, "acme-001")["id"], decide(client, "acme-002")["id"]
    for body in (
        {"decision_id": d, "type": "renewed", "amount": 1000, "occurred_at": "2026-05-01T00:00:00Z"},
        {"decision_id": d, "type": "renewed", "amount": 3000, "occurred_at": "2026-05-02T00:00:00Z"},  # corrects
        {"decision_id": d, "type": "renewed", "amount": 2000, "occurred_at": "2026-05-01T12:00:00Z"},  # older
        {"decision_id": e, "type": "renewed", "amount": 5000, "occurred_at": "2026-05-01T00:00:00Z"},
    ):
        assert _post(client, body).status_code == 201
    k = _kpis(client)
    assert k["renewal_rate"] == {"value": 1.0, "renewed": 2, "churned": 0}
    assert k["average_contract_value"] == {"value": 4000.0, "renewals": 2}  # (3000 + 5000) / 2

    # the same instant, recorded later: the later record stands
    assert _post(client, {"decision_id": d, "type": "renewed", "amount": 7000,
                          "occurred_at": "2026-05-02T02:00:00+02:00"}).status_code == 201
    assert _kpis(client)["average_contract_value"] == {"value": 6000.0, "renewals": 2}

    # expansions: the latest per offer (no offer is one of them), summed
    for body in (
        {"decision_id": d, "type": "expanded", "amount": 500, "offer": "addon_seats"},
        {"decision_id": d, "type": "expanded", "amount": 700},
        {"decision_id": d, "type": "expanded", "amount": 800, "offer": "addon_seats"},
        {"decision_id": e, "type": "expanded", "amount": 100, "occurred_at": "2026-05-01T00:00:00Z"},
        {"decision_id": e, "type": "expanded", "amount": 50, "occurred_at": "2026-04-01T00:00:00Z"},
    ):
        assert _post(client, body).status_code == 201
    assert _kpis(client)["expansion_revenue"] == {"value": 1600.0, "outcomes": 3}  # 800 + 700 + 100

    # a batch: the same instant and the same recorded_at, then the greater id
    r = _post(client, {"outcomes": [
        {"id": "fix-b", "decision_id": e, "type": "renewed", "amount": 9000, "occurred_at": "2026-06-01T00:00:00Z"},
        {"id": "fix-a", "decision_id": e, "type": "renewed", "amount": 1, "occurred_at": "2026-06-01T00:00:00Z"},
    ]})
    assert r.status_code == 201
    assert _kpis(client)["average_contract_value"] == {"value": 8000.0, "renewals": 2}  # (7000 + 9000) / 2

    # every outcome is still there to read
    listed = client.get(f"/v1/decisions/{d}/outcomes", headers=auth("k-read")).json["outcomes"]
    assert [o["amount"] for o in listed if o["type"] == "renewed"] == [1000, 2000, 3000, 7000]


def test_amounts_are_bounded(client):
    d = decide(client)["id"]
    for amount in (1.7e308, 1e12 + 1, -0.01):
        r = _post(client, {"decision_id": d, "type": "expanded", "amount": amount})
        assert r.status_code == 400, amount
        assert [e["path"] for e in r.json["errors"]] == ["$.amount"]
        if amount < 1e18:  # beyond that, the request's own number bound speaks first (api/limits.py)
            assert r.json["errors"][0]["message"] == "must be from 0 to 1,000,000,000,000 (USD)"
    r = _post(client, {"outcomes": [{"decision_id": d, "type": "expanded", "amount": 1e12, "offer": "addon_seats"},
                                    {"decision_id": d, "type": "expanded", "amount": 1.7e308}]})
    assert r.status_code == 400
    assert [e["path"] for e in r.json["errors"]] == ["$.outcomes[1].amount"]
    assert _post(client, {"decision_id": d, "type": "expanded", "amount": 1e12}).status_code == 201
    assert _post(client, {"decision_id": d, "type": "expanded", "amount": 1e12, "offer": "addon_seats"}).status_code == 201
    assert _kpis(client)["expansion_revenue"] == {"value": 2e12, "outcomes": 2}


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00",
                                "1899-12-31T23:59:59Z", "9999-01-01T00:00:00Z"])
def test_outcome_times_outside_the_years_are_refused(client, at):
    d = decide(client)["id"]
    r = _post(client, {"decision_id": d, "type": "churned", "occurred_at": at})
    assert r.status_code == 400
    assert r.json["errors"] == [{"path": "$.occurred_at", "message": YEARS}]


def test_outcome_times_at_the_ends_of_the_years_are_kept_in_utc(client):
    d = decide(client)["id"]
    r = _post(client, {"decision_id": d, "type": "churned", "occurred_at": "1900-01-01T00:00:00+01:00"})
    assert r.status_code == 201 and r.json["occurred_at"] == "1899-12-31T23:00:00Z"
    r = _post(client, {"decision_id": d, "type": "churned", "occurred_at": "9998-12-31T23:00:00-05:00"})
    assert r.status_code == 201 and r.json["occurred_at"] == "9999-01-01T04:00:00Z"
    listed = client.get(f"/v1/decisions/{d}/outcomes", headers=auth("k-read")).json["outcomes"]
    assert [o["occurred_at"] for o in listed] == ["1899-12-31T23:00:00Z", "9999-01-01T04:00:00Z"]


def test_kpi_periods_outside_the_years_are_refused(client):
    decide(client)
    r = client.get("/v1/kpis?from=0001-01-01T00:00:00%2B01:00&to=9999-12-31T23:59:59-01:00", headers=auth("k-read"))
    assert r.status_code == 400
    assert r.json["errors"] == [{"path": "query.from", "message": YEARS}, {"path": "query.to", "message": YEARS}]
    r = client.get("/v1/kpis?from=1900-01-01T00:00:00%2B01:00&to=9998-12-31T23:59:59-01:00", headers=auth("k-read"))
    assert r.status_code == 200
    assert r.json["filters"]["from"] == "1899-12-31T23:00:00Z" and r.json["filters"]["to"] == "9999-01-01T00:59:59Z"
    assert r.json["groups"][0]["decisions"] == 1


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1899-12-31"])
def test_the_cli_refuses_them_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["kpis", "--from", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --from: '{value}': {YEARS}" in err and "Traceback" not in err
