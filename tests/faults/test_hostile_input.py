"""Input that used to pass validation and then fail (a 500, or a row that broke every later
query): each is refused with a 400 naming its path, on SQLite and PostgreSQL, and nothing is
written."""
from __future__ import annotations

import json

import pytest

from tests.api.conftest import KEYS, auth


@pytest.fixture()
def api_keys():
    return {**KEYS, "k-all": ["decide", "read", "admin", "ingest", "approve"]}


def _facts(example_facts, **account):
    f = json.loads(json.dumps(example_facts))
    f["account"].update(account)
    return f


def _raw(client, body: str, key="k-decide", path="/v1/decisions"):
    return client.post(path, data=body, content_type="application/json", headers=auth(key))


def _refused(r, path: str):
    assert r.status_code == 400, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/problem+json"
    paths = [e["path"] for e in r.get_json()["errors"]]
    assert path in paths, paths


def _nothing_recorded(client):
    from sqlalchemy import func, select

    from adapters.store.models import Decision
    with client.application.extensions["postsale"].factory() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 0


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_float_that_overflows_in_arithmetic(client, example_facts, dry_run):
    r = client.post("/v1/decisions", json={"facts": _facts(example_facts, arr=1e308), "dry_run": dry_run},
                    headers=auth())
    _refused(r, "$.facts.account.arr")
    _nothing_recorded(client)


def test_an_integer_beyond_any_machine_number(client, example_facts):
    body = json.dumps({"facts": _facts(example_facts, seats=1)}).replace('"seats": 1', '"seats": 1' + "0" * 4000)
    _refused(_raw(client, body), "$.facts.account.seats")
    _refused(_raw(client, json.dumps({"facts": _facts(example_facts, arr=1)}).replace('"arr": 1', '"arr": 1e400')),
             "$.facts.account.arr")


def test_unknown_facts_nested_deeper_than_the_validators_recurse(client, example_facts):
    for depth in (40, 600, 950):
        nested = "[" * depth + "]" * depth
        body = json.dumps({"facts": {**example_facts, "junk": "X"}}).replace('"X"', nested)
        r = _raw(client, body)
        assert r.status_code == 400, r.get_data(as_text=True)[:300]
        path = r.get_json()["errors"][0]["path"]
        assert path.startswith("$.facts.junk") or depth > 900 and path == "$", path  # the parser's own limit
    _nothing_recorded(client)


def test_a_lone_surrogate_in_an_id(client, example_facts):
    body = json.dumps({"facts": _facts(example_facts, id="acme-X")}).replace("acme-X", "acme-\\ud800")
    _refused(_raw(client, body), "$.facts.account.id")
    body = json.dumps({"facts": example_facts, "context": {"X": 1}}).replace('"X"', '"\\udc00"')
    _refused(_raw(client, body), '$.context["\\udc00"]')
    _nothing_recorded(client)


def test_an_account_id_wider_than_its_column(client, example_facts):
    _refused(client.post("/v1/decisions", json={"facts": _facts(example_facts, id="a" * 129)}, headers=auth()),
             "$.facts.account.id")
    assert client.post("/v1/decisions", json={"facts": _facts(example_facts, id="a" * 128)},
                       headers=auth()).status_code == 201


def test_nul_in_ids_and_in_stored_json(client, example_facts):
    _refused(client.post("/v1/decisions", json={"facts": _facts(example_facts, id="acme\x00")}, headers=auth()),
             "$.facts.account.id")
    _refused(client.post("/v1/decisions", json={"facts": example_facts, "context": {"note": "a\x00b"}},
                         headers=auth()), "$.context.note")
    _refused(client.post("/v1/decisions", json={"account_id": "acme\x00"}, headers=auth()), "$.account_id")
    _nothing_recorded(client)
    assert client.get("/v1/decisions?account_id=acme-001", headers=auth("k-read")).status_code == 200


def test_nul_and_surrogates_in_every_path_and_query_parameter(client):
    rules = [r for r in client.application.url_map.iter_rules() if r.arguments and "GET" in r.methods]
    assert len(rules) >= 5
    for rule in rules:
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "x%00y").replace(f"<path:{arg}>", "x%00y")
            for conv in ("int", "string"):
                url = url.replace(f"<{conv}:{arg}>", "x%00y")
        r = client.get(url, headers=auth("k-all"))
        assert r.status_code in (400, 404), (url, r.status_code)
        if r.status_code == 400 and rule.rule.startswith("/console/"):  # a page for a person, naming the part
            assert r.mimetype == "text/html" and "path " in r.get_data(as_text=True), url
        elif r.status_code == 400:
            assert r.get_json()["errors"][0]["path"].startswith("path ")
    for path in ("/v1/decisions", "/v1/approvals", "/v1/kpis"):
        r = client.get(path + "?account_id=a%00b&flow=a%00", headers=auth("k-all"))
        _refused(r, "query account_id")
        r = client.get(path + "?account_id=a%ED%A0%80", headers=auth("k-all"))  # an encoded surrogate
        assert r.status_code < 500


def test_nul_in_events_and_outcomes(client):
    for path, body in (("/v1/events", {"events": [{"id": "e\x00", "type": "x"}]}),
                       ("/v1/outcomes", {"decision_id": "d\x00", "type": "renewed", "amount": 1})):
        r = client.post(path, json=body, headers=auth("k-all"))
        assert r.status_code == 400, (path, r.get_data(as_text=True)[:300])
        assert any("\\u0000" in e["message"] or "NUL" in e["message"] for e in r.get_json()["errors"])
