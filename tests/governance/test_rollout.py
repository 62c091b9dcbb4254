"""Rolling out a rule change: a candidate in shadow (decided beside the active version, recorded,
never acted on) or canary (a stable share of accounts), promoted or rolled back, every step
audited, on SQLite and PostgreSQL; two apps on one database and Redis converge."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import replace

import pytest
from sqlalchemy import select

from adapters.store.audit import verify
from adapters.store.models import AuditEntry, Decision, Outbox
from api.auth import digest
from engine.explore import in_share
from tests.api.conftest import rules_dir, settings  # noqa: F401 - fixtures (db_url: tests/conftest.py)

KEYS = {"k-author": ["author", "read"], "k-admin": ["admin", "read"], "k-admin-author": ["admin", "author", "read"],
        "k-decide": ["decide", "read"], "k-read": ["read"]}
CAP = "- [mid_market, \">= 24\", 20]"


@pytest.fixture()
def api_keys():
    return KEYS


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def key_id(key):
    return digest(key)[:12]


@pytest.fixture()
def models_dir(ceiling_models_dir):
    """The renewal offer goes out at its ceiling, so a lower cap shows in the plan."""
    return ceiling_models_dir


@pytest.fixture()
def app(settings):  # noqa: F811
    from api import create_app
    app = create_app(replace(settings, inline_dispatch_ms=0))
    yield app
    app.extensions["postsale"].close()


@pytest.fixture()
def client(app):
    return app.test_client()


def lower_cap(rules_dir, to=16):  # noqa: F811
    """The candidate: the mid-market 24-month discount cap lowered from 20 to `to`."""
    src = rules_dir / "renewal" / "pricing_quote.yaml"
    src.write_text(src.read_text().replace(CAP, CAP.replace("20]", f"{to}]")))


def deal_desk(example_facts, account_id="acme-002"):
    """Mid-market, asking 27 on 36 months: the cap clamps the offer's discount to it."""
    f = copy.deepcopy(example_facts)
    f["account"]["id"] = account_id
    f["contract"]["requested_discount"] = 27
    return f


def decide(client, facts):
    r = client.post("/v1/decisions", json={"facts": facts}, headers=auth("k-decide"))
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def row(app, decision_id):
    with app.extensions["postsale"].factory() as s:
        return s.get(Decision, decision_id)


def audited(app, kind):
    with app.extensions["postsale"].factory() as s:
        return s.scalars(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.id)).all()


def discount(body):
    return {o["offer"]: o["discount"] for o in body["offers"]}.get("renewal_36m")


def test_shadow_decides_beside_the_active_version_and_counts_the_difference(app, client, rules_dir, example_facts):
    active = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["active"]["version"]
    lower_cap(rules_dir)
    r = client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=auth("k-author"))
    assert r.status_code == 200, r.get_json()
    candidate = r.get_json()["candidate"]
    assert candidate["mode"] == "shadow" and candidate["version"] != active

    changed = decide(client, deal_desk(example_facts))
    assert changed["ruleset_version"] == active and discount(changed) == 20, "the active version acts"
    recorded = row(app, changed["id"])
    assert recorded.shadow_version == candidate["version"] and recorded.shadow_changed is True
    assert {o["offer"]: o["discount"] for o in recorded.shadow_plan["offers"]}["renewal_36m"] == 16
    with app.extensions["postsale"].factory() as s:  # only the active plan's actions are queued
        queued = s.scalars(select(Outbox.params).where(Outbox.decision_id == changed["id"])).all()
    assert all(p.get("discount") in (None, 20) for p in queued), queued

    same = decide(client, {**example_facts, "account": {**example_facts["account"], "id": "small-1", "segment": "smb"}})
    assert row(app, same["id"]).shadow_changed is False, "a decision the cap does not touch is the same"

    status = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["candidate"]
    assert (status["shadow"]["same"], status["shadow"]["changed"]) == (1, 1)
    assert [e["decision_id"] for e in status["shadow"]["examples"]] == [changed["id"]]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'postsale_shadow_decisions_total{flow="renewal",outcome="changed"}' in metrics
    [started] = audited(app, "rollout.started")
    assert started.actor == key_id("k-author") and started.detail["mode"] == "shadow"


def test_a_canary_serves_a_stable_share_of_accounts(app, client, rules_dir, example_facts):
    active = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["active"]["version"]
    lower_cap(rules_dir)
    r = client.post("/v1/rollouts/renewal", json={"mode": "canary", "share": 0.5}, headers=auth("k-author"))
    assert r.status_code == 200, r.get_json()
    candidate = r.get_json()["candidate"]["version"]
    salt = app.extensions["postsale"].settings.experiment_salt
    seen = {}
    for n in range(24):
        account = f"canary-{n}"
        body = decide(client, deal_desk(example_facts, account))
        expected = candidate if in_share(salt, "canary:renewal", account, 0.5) else active
        assert body["ruleset_version"] == expected, account
        assert discount(body) == (16 if expected == candidate else 20)
        seen[account] = body["ruleset_version"]
    assert set(seen.values()) == {active, candidate}, "both versions decide some accounts"
    again = decide(client, deal_desk(example_facts, "canary-0"))
    assert again["ruleset_version"] == seen["canary-0"], "an account stays on its side"
    counts = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["candidate"]["decisions"]
    assert counts == {v: list(seen.values()).count(v) + (v == seen["canary-0"]) for v in set(seen.values())}


def test_promote_then_rollback_audited_with_segregation_of_duties(app, client, rules_dir, example_facts):
    before = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["active"]["version"]
    lower_cap(rules_dir)
    assert client.post("/v1/rollouts/renewal/promote", headers=auth("k-admin")).status_code == 409, "no candidate"
    r = client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=auth("k-admin-author"))
    candidate = r.get_json()["candidate"]["version"]
    r = client.post("/v1/rollouts/renewal/promote", headers=auth("k-admin-author"))
    assert r.status_code == 403 and "started this candidate" in r.get_json()["detail"]
    assert client.post("/v1/rollouts/renewal/promote", headers=auth("k-author")).status_code == 403
    r = client.post("/v1/rollouts/renewal/promote", headers=auth("k-admin"))
    assert r.status_code == 200 and r.get_json()["active"]["version"] == candidate and r.get_json()["candidate"] is None
    promoted = decide(client, deal_desk(example_facts))
    assert promoted["ruleset_version"] == candidate and discount(promoted) == 16
    assert row(app, promoted["id"]).shadow_version is None, "no shadow once promoted"

    r = client.post("/v1/rollouts/renewal/rollback", headers=auth("k-admin"))
    assert r.status_code == 200 and r.get_json()["active"]["version"] == before
    back = decide(client, deal_desk(example_facts))
    assert back["ruleset_version"] == before and discount(back) == 20
    r = client.post("/v1/rollouts/renewal/rollback", headers=auth("k-admin"))
    assert r.status_code == 409 and "already" in r.get_json()["title"].lower(), "a second rollback is no redo"
    steps = [s["step"] for s in client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["steps"]]
    assert steps == ["rollback", "promote", "start"]
    [p] = audited(app, "rollout.promoted")
    assert (p.actor, p.detail["proposed_by"], p.detail["previous"]) == (key_id("k-admin"), key_id("k-admin-author"),
                                                                       before)
    [b] = audited(app, "rollout.rolled_back")
    assert (b.actor, b.detail["version"], b.detail["from"]) == (key_id("k-admin"), before, candidate)
    assert verify(app.extensions["postsale"].factory, None).ok, "the audit chain covers the steps"


def test_abort_clears_the_candidate_and_rollback_clears_it_too(app, client, rules_dir, example_facts):
    lower_cap(rules_dir)
    client.post("/v1/rollouts/renewal", json={"mode": "canary", "share": 1.0}, headers=auth("k-author"))
    assert decide(client, deal_desk(example_facts))["ruleset_version"] != \
        client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["active"]["version"]
    r = client.delete("/v1/rollouts/renewal", headers=auth("k-author"))
    assert r.status_code == 200 and r.get_json()["candidate"] is None
    assert discount(decide(client, deal_desk(example_facts))) == 20
    assert client.delete("/v1/rollouts/renewal", headers=auth("k-author")).status_code == 409
    assert client.post("/v1/rollouts/renewal/rollback", headers=auth("k-admin")).status_code == 409, \
        "one version only: nothing to roll back to"
    assert [e.detail["version"] for e in audited(app, "rollout.aborted")] == [r.get_json()["steps"][1]["version"]]


def test_refusals(client, rules_dir):
    h = auth("k-author")
    assert client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=h).status_code == 409, \
        "the rules on disk are the active version"
    r = client.post("/v1/rollouts/renewal", json={"mode": "canary"}, headers=h)
    assert r.status_code == 400 and r.get_json()["errors"][0]["path"] == "$.share"
    r = client.post("/v1/rollouts/renewal", json={"mode": "blue", "share": 2}, headers=h)
    assert r.status_code == 400 and {e["path"] for e in r.get_json()["errors"]} == {"$.mode", "$.share"}
    assert client.get("/v1/rollouts/nope", headers=auth("k-read")).status_code == 404
    assert client.post("/v1/rollouts/renewal", json={"mode": "shadow", "version_id": 999999},
                       headers=h).status_code == 404
    src = rules_dir / "renewal" / "pricing_quote.yaml"
    src.write_text(src.read_text().replace(CAP, "- [mid_market, \">= 24\""))
    r = client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=h)
    assert r.status_code == 422 and r.get_json()["errors"]


def test_a_recorded_version_can_be_the_candidate(client, rules_dir, example_facts):
    """Rolling an older version out again: the candidate is a ruleset_versions row by id."""
    first = client.get("/v1/rollouts/renewal", headers=auth("k-read")).get_json()["active"]
    lower_cap(rules_dir)
    client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=auth("k-author"))
    client.post("/v1/rollouts/renewal/promote", headers=auth("k-admin"))
    r = client.post("/v1/rollouts/renewal", json={"mode": "canary", "share": 1.0, "version_id": first["id"]},
                    headers=auth("k-author"))
    assert r.status_code == 200 and r.get_json()["candidate"]["version"] == first["version"]
    assert discount(decide(client, deal_desk(example_facts))) == 20


# ---- every process converges ----
def _until(condition, what, limit=60.0, nudge=None):
    """Wait for `condition`; `nudge()` again every second (a broadcast sent before the other
    watcher subscribed is lost, as Redis pub/sub is; the step is recorded all the same)."""
    deadline, nudged = time.monotonic() + limit, time.monotonic()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not converged: {what}")
        if nudge is not None and time.monotonic() - nudged > 1.0:
            nudge()
            nudged = time.monotonic()
        time.sleep(0.05)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # two processes share a server, not a file
def test_two_apps_on_one_database_converge_through_the_redis_broadcast(settings, rules_dir, example_facts):  # noqa: F811
    """Two apps (two workers) on one PostgreSQL schema and Redis: the poll is an hour, so only the
    broadcast can wake the other one; each step one app takes, the other adopts."""
    from api import create_app
    from tests.servers import redis_client
    from service.runtime import CHANNEL
    url, redis = redis_client()
    shared = replace(settings, inline_dispatch_ms=0, redis_url=url, reload_poll_seconds=3600.0)
    one, two = create_app(shared), create_app(shared)

    def broadcast():
        redis.publish(CHANNEL, "reload")
    try:
        rt1, rt2 = one.extensions["postsale"], two.extensions["postsale"]
        c1, c2 = one.test_client(), two.test_client()
        active = rt1.deciders["renewal"].flow.version
        lower_cap(rules_dir)
        c1.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=auth("k-author"))
        candidate = rt1.candidates["renewal"].version
        _until(lambda: "renewal" in rt2.candidates, "the second app adopts the shadow", nudge=broadcast)
        assert rt2.candidates["renewal"].version == candidate
        assert row(two, decide(c2, deal_desk(example_facts))["id"]).shadow_changed is True

        c2.post("/v1/rollouts/renewal/promote", headers=auth("k-admin"))
        _until(lambda: rt1.deciders["renewal"].flow.version == candidate and "renewal" not in rt1.candidates,
               "the first app adopts the promotion", nudge=broadcast)
        assert decide(c1, deal_desk(example_facts))["ruleset_version"] == candidate

        c1.post("/v1/rollouts/renewal/rollback", headers=auth("k-admin"))
        _until(lambda: rt2.deciders["renewal"].flow.version == active, "the second app adopts the rollback",
               nudge=broadcast)
        assert discount(decide(c2, deal_desk(example_facts))) == 20
    finally:
        for a in (one, two):
            a.extensions["postsale"].close()


def test_a_redis_outage_only_delays_convergence_to_the_poll(settings, rules_dir):  # noqa: F811
    """Without a broadcast (no Redis) the other process adopts the candidate at its next poll."""
    from api import create_app
    shared = replace(settings, inline_dispatch_ms=0, redis_url=None, reload_poll_seconds=0.2)
    one, two = create_app(shared), create_app(shared)
    try:
        lower_cap(rules_dir)
        one.test_client().post("/v1/rollouts/renewal", json={"mode": "canary", "share": 0.1},
                               headers=auth("k-author"))
        rt2 = two.extensions["postsale"]
        _until(lambda: "renewal" in rt2.candidates, "the second app adopts the canary by polling")
        assert (rt2.candidates["renewal"].mode, rt2.candidates["renewal"].share) == ("canary", 0.1)
    finally:
        for a in (one, two):
            a.extensions["postsale"].close()



def test_a_shadow_adds_no_statement_to_the_decisions_write(app, client, rules_dir, example_facts):
    """The shadow's verdict goes into the decision's own row: the same statements as the same
    decision without a candidate (tests/api/test_statement_budget.py counts those)."""
    from tests.api.test_statement_budget import counting
    rt = app.extensions["postsale"]

    def statements(account):
        with counting(rt) as (sql, _):
            body = decide(client, deal_desk(example_facts, account))
        return [q.split("(")[0].strip() for q in sql], body
    decide(client, deal_desk(example_facts, "warm"))
    without, _ = statements("plain")
    lower_cap(rules_dir)
    client.post("/v1/rollouts/renewal", json={"mode": "shadow"}, headers=auth("k-author"))
    decide(client, deal_desk(example_facts, "warm-shadow"))
    for n in range(3):
        shadowed, body = statements(f"shadowed-{n}")
        assert shadowed == without
        assert row(app, body["id"]).shadow_changed is True


def test_a_canary_decision_replays_and_is_approved_on_the_candidates_sources(app, client, rules_dir, example_facts,
                                                                              ceiling_models_dir, monkeypatch, capsys):
    """A canary decides with a version that may never be activated: replay and the approval's
    discount limits find its sources in the rollout."""
    from cli.replay import OK, replay_one
    monkeypatch.setenv("POSTSALE_MODELS_DIR", str(ceiling_models_dir))
    lower_cap(rules_dir)
    client.post("/v1/rollouts/renewal", json={"mode": "canary", "share": 1.0}, headers=auth("k-author"))
    body = decide(client, deal_desk(example_facts))
    assert discount(body) == 16 and body["approval"]["required"]
    client.delete("/v1/rollouts/renewal", headers=auth("k-author"))  # never promoted
    rt = app.extensions["postsale"]
    assert replay_one(body["id"], True, None, rt.factory) == OK
    assert json.loads(capsys.readouterr().out)["reproduced"] is True
    from adapters.store.approvals import RecordedFlows
    [flow] = RecordedFlows(rt.factory)("renewal", body["ruleset_version"])
    assert flow.version == body["ruleset_version"]
