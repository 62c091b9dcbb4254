"""POST /v1/decisions and reading decisions back, on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from .conftest import auth


@pytest.fixture()
def models_dir(ceiling_models_dir):
    """The renewal goes out at its ceiling with the upsell, whatever the shipped models would choose."""
    return ceiling_models_dir


def facts(example_facts, **account):
    f = json.loads(json.dumps(example_facts))
    f["account"].update(account)
    return f


def test_decide_read_back_and_history(client, example_facts):
    r = client.post("/v1/decisions", json={"facts": example_facts, "context": {"source": "crm"}}, headers=auth())
    assert r.status_code == 201, r.json
    body = r.json
    assert body["status"] == "automatic" and body["flow"] == "renewal" and len(body["ruleset_version"]) == 12
    assert body["offers"][0]["offer"] == "renewal_36m" and body["discount"] == 20
    assert body["explanation"]["fired"][0] == "renewal-window-open"
    assert {a["type"] for a in body["actions"]} == {"create_quote", "schedule_outreach"}
    assert all(len(a["idempotency_key"]) == 40 for a in body["actions"])
    assert r.headers["Location"] == f"/v1/decisions/{body['id']}"

    rec = client.get(f"/v1/decisions/{body['id']}", headers=auth("k-read"))
    assert rec.status_code == 200
    assert rec.json["decision"]["trace"]["fired"][0]["matched"] == {"contract.days_to_renewal": 60}
    # the record keeps the facts the decision was made on: as sent, plus what the models added
    stored = rec.json["facts"]
    assert stored["account"] == example_facts["account"] and rec.json["context"] == {"source": "crm"}
    assert {k: v for k, v in stored["scores"].items() if k in example_facts["scores"]} == example_facts["scores"]
    assert stored["scores"]["drift_alert"] is False
    assert rec.json["events"][0]["type"] == "decided"

    for _ in range(2):
        assert client.post("/v1/decisions", json={"facts": example_facts}, headers=auth()).status_code == 201
    page1 = client.get("/v1/decisions?account_id=acme-001&limit=2", headers=auth("k-read")).json
    assert len(page1["items"]) == 2 and page1["next"]
    page2 = client.get(f"/v1/decisions?account_id=acme-001&limit=2&after={page1['next']}", headers=auth("k-read")).json
    assert len(page2["items"]) == 1 and page2["next"] is None
    ids = [i["id"] for i in page1["items"] + page2["items"]]
    assert ids == sorted(ids, reverse=True) and body["id"] == ids[-1]


def test_dry_run_records_nothing(client, example_facts):
    r = client.post("/v1/decisions", json={"facts": example_facts, "dry_run": True}, headers=auth())
    assert r.status_code == 200 and r.json["id"] is None and r.json["dry_run"] is True
    assert client.get("/v1/decisions?account_id=acme-001", headers=auth()).json["items"] == []


def test_every_problem_listed_by_path(client, example_facts):
    bad = facts(example_facts, segment="galactic", arr=-1)
    bad["contract"].pop("days_to_renewal")
    r = client.post("/v1/decisions", json={"facts": bad, "surprise": 1, "dry_run": "maybe"}, headers=auth())
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    paths = [e["path"] for e in r.json["errors"]]
    assert paths == ["$.dry_run", "$.facts.account.arr", "$.facts.account.segment", "$.facts.contract", "$.surprise"]


def test_bad_bodies(client, app):
    assert client.post("/v1/decisions", data="{nope", content_type="application/json", headers=auth()).status_code == 400
    assert client.post("/v1/decisions", json=[1, 2], headers=auth()).status_code == 400
    r = client.post("/v1/decisions", json={"facts": {}, "flow": "nope"}, headers=auth())
    assert r.status_code == 400 and r.json["errors"][0]["path"] == "$.flow"
    big = {"facts": {"account": {"id": "x" * (70 * 1024)}}}
    r = client.post("/v1/decisions", json=big, headers=auth())
    assert r.status_code == 413 and r.mimetype == "application/problem+json"
    assert client.get("/v1/decisions/does-not-exist", headers=auth()).status_code == 404
    assert client.get("/v1/decisions?limit=5", headers=auth()).status_code == 400


def test_auth(client, example_facts):
    r = client.post("/v1/decisions", json={"facts": example_facts})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/v1/decisions", json={"facts": example_facts}, headers=auth("wrong")).status_code == 401
    r = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth("k-read"))
    assert r.status_code == 403 and "decide" in r.json["detail"]
    assert client.post("/v1/rulesets/reload", headers=auth()).status_code == 403


def test_idempotency(client, example_facts):
    h = auth(**{"Idempotency-Key": "order-1"})
    first = client.post("/v1/decisions", json={"facts": example_facts}, headers=h)
    again = client.post("/v1/decisions", json={"facts": example_facts}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/decisions", json={"facts": facts(example_facts, arr=1)}, headers=h)
    assert other.status_code == 422 and "different request body" in other.json["detail"]
    # keys are per API key: another caller's same header value is another key
    mine = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth("k-other", **{"Idempotency-Key": "order-1"}))
    assert mine.status_code == 201 and mine.json["id"] != first.json["id"]
    assert len(client.get("/v1/decisions?account_id=acme-001", headers=auth()).json["items"]) == 2


def test_records_are_append_only(app, client, example_facts):
    import pytest
    from sqlalchemy.exc import DBAPIError
    client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    engine = app.extensions["postsale"].db
    for stmt in ("UPDATE decisions SET status = 'x'", "DELETE FROM decision_events"):
        with pytest.raises(DBAPIError) as exc:
            with engine.begin() as conn:
                conn.execute(text(stmt))
        assert "append-only" in str(exc.value)


def test_ops_endpoints(client, example_facts):
    assert client.get("/healthz").json == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["flows"]["renewal"]
    client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    m = client.get("/metrics").get_data(as_text=True)
    assert "postsale_decisions_total" in m and "postsale_decision_seconds_bucket" in m
    spec = client.get("/openapi.json").json
    assert "/v1/decisions" in spec["paths"] and "DecisionRequest" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200
    assert client.get("/nope").mimetype == "application/problem+json"


def test_reload_refuses_broken_rules_and_keeps_serving(client, rules_dir, example_facts):
    before = client.get("/v1/rulesets", headers=auth()).json["flows"][0]["version"]
    p = rules_dir / "renewal" / "escalation.yaml"
    good = p.read_text()
    p.write_text(good.replace("gte: 0.7", "gte: high"))
    r = client.post("/v1/rulesets/reload", headers=auth("k-admin"))
    assert r.status_code == 422
    assert any(e["location"].startswith("rules/renewal/escalation.yaml:") for e in r.json["errors"])
    d = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    assert d.status_code == 201 and d.json["ruleset_version"] == before
    p.write_text(good.replace("gte: 0.7", "gte: 0.75"))
    r = client.post("/v1/rulesets/reload", headers=auth("k-admin"))
    assert r.status_code == 200 and r.json["flows"][0]["changed"] is True
    after = r.json["flows"][0]["version"]
    assert after != before
    d = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    assert d.json["ruleset_version"] == after


def test_second_worker_converges_on_reloaded_version(settings, rules_dir, example_facts):
    """Two runtimes on one database stand for two workers (or hosts)."""
    from api import create_app
    a, b = create_app(settings), create_app(settings)
    try:
        p = rules_dir / "renewal" / "escalation.yaml"
        p.write_text(p.read_text().replace("gte: 0.7", "gte: 0.71"))
        r = a.test_client().post("/v1/rulesets/reload", headers=auth("k-admin"))
        new = r.json["flows"][0]["version"]
        import time
        deadline = time.monotonic() + 10
        while b.extensions["postsale"].deciders["renewal"].flow.version != new and time.monotonic() < deadline:
            time.sleep(0.05)  # b's watcher polls every reload_poll_seconds
        d = b.test_client().post("/v1/decisions", json={"facts": example_facts}, headers=auth())
        assert d.json["ruleset_version"] == new
    finally:
        a.extensions["postsale"].close()
        b.extensions["postsale"].close()


def test_idempotency_with_redis(settings, example_facts):
    """Production: completed responses are served from Redis; the database stays the arbiter."""
    from dataclasses import replace

    from api import create_app
    from tests.servers import redis_client
    url, r = redis_client()
    app = create_app(replace(settings, redis_url=url))
    try:
        c = app.test_client()
        h = auth(**{"Idempotency-Key": "redis-" + example_facts["account"]["id"] + str(id(app))})
        first = c.post("/v1/decisions", json={"facts": example_facts}, headers=h)
        again = c.post("/v1/decisions", json={"facts": example_facts}, headers=h)
        assert first.status_code == 201 and again.json["id"] == first.json["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert c.post("/v1/decisions", json={"facts": {**example_facts, "context": 1}}, headers=h).status_code in (400, 422)
        keys = [k for k in r.scan_iter("postsale:idem:*")]
        assert keys and all(r.ttl(k) > 0 for k in keys)
    finally:
        app.extensions["postsale"].close()


def test_readme_example_request(client, root):
    """README's first decision posts examples/decision-request.json."""
    body = json.loads((root / "examples" / "decision-request.json").read_text())
    r = client.post("/v1/decisions", json=body, headers=auth())
    assert r.status_code == 201 and r.json["offers"]
    assert "examples/decision-request.json" in (root / "README.md").read_text()


def test_hashed_keys_file(settings, tmp_path, example_facts):
    """Production keys: a file of SHA-256 hashes with scopes; the plain key is never stored."""
    import hashlib
    from dataclasses import replace

    from api import create_app
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"crm:\n  sha256: {hashlib.sha256(b'prod-secret').hexdigest()}\n  scopes: [decide]\n")
    app = create_app(replace(settings, api_keys={}, api_keys_file=keys))
    try:
        c = app.test_client()
        assert c.post("/v1/decisions", json={"facts": example_facts}, headers=auth("prod-secret")).status_code == 201
        assert c.get("/v1/rulesets", headers=auth("prod-secret")).status_code == 403
        assert c.post("/v1/decisions", json={"facts": example_facts}, headers=auth("k-decide")).status_code == 401
    finally:
        app.extensions["postsale"].close()


def test_expired_idempotency_keys_are_purged(app, client, example_facts):
    from datetime import timedelta

    from sqlalchemy import update

    from adapters.store.db import now, transaction
    from adapters.store.models import IdempotencyKey
    rt = app.extensions["postsale"]
    h = auth(**{"Idempotency-Key": "old"})
    first = client.post("/v1/decisions", json={"facts": example_facts}, headers=h).json["id"]
    with transaction(rt.factory) as s:
        s.execute(update(IdempotencyKey).values(expires_at=now() - timedelta(seconds=1)))
    again = client.post("/v1/decisions", json={"facts": example_facts}, headers=h)
    assert again.status_code == 201 and again.json["id"] != first  # past the retention window: a new decision
    assert rt.idempotency.purge_expired() == 0


def test_models_score_when_the_caller_sends_no_scores(client, example_facts):
    """The service scores churn and upsell with the selected models; the record names them."""
    f = json.loads(json.dumps(example_facts))
    f.pop("scores")
    r = client.post("/v1/decisions", json={"facts": f}, headers=auth())
    assert r.status_code == 201
    assert r.json["models"] == {"churn_risk": "churn-gbm@1.0.0", "upsell_propensity": "upsell-gbm@1.0.0",
                                "renewal_response": "renewal-response@1.0.0",
                                "upsell_response": "upsell-response@1.0.0"}
    rec = client.get(f"/v1/decisions/{r.json['id']}", headers=auth()).json
    scores = rec["facts"]["scores"]
    assert 0 <= scores["churn_risk"] <= 1 and 0 <= scores["churn_risk_confidence"] <= 1
    assert rec["decision"]["trace"]["scores"]["churn_risk"]["model"] == "churn-gbm@1.0.0"
    # replaying the recorded facts gives the same decision
    again = client.post("/v1/decisions", json={"facts": rec["facts"], "dry_run": True}, headers=auth()).json
    assert again["offers"] == r.json["offers"] and again["status"] == r.json["status"]
    models = client.get("/v1/models", headers=auth()).json["models"]
    assert sorted(m["model_version"] for m in models) == ["churn-gbm@1.0.0", "upsell-gbm@1.0.0"]
    assert all("auc" in json.dumps(m["metrics"]).lower() and "drift" in m for m in models)
    m = client.get("/metrics").get_data(as_text=True)
    assert "postsale_drift_alert" in m
