"""Redis is a cache: killed, frozen or failing on one command, every keyed decision is still
decided once and answered (never a 500), the database arbitrates, /readyz says "degraded",
and no in-flight marker outlives its request. A private redis-server per test."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from adapters import metrics
from tests.api.conftest import auth

from .private import PrivateRedis


@pytest.fixture()
def redis_server():
    srv = PrivateRedis().start()
    yield srv
    srv.close()


@pytest.fixture()
def app(settings, redis_server):
    from api import create_app
    app = create_app(replace(settings, redis_url=redis_server.url, inline_dispatch_ms=0))
    yield app
    app.extensions["postsale"].close()


def _facts(example_facts, n):
    return {**example_facts, "account": {**example_facts["account"], "id": f"redis-fault-{n}"}}


def _post(client, body, key):
    return client.post("/v1/decisions", json=body, headers=auth(**{"Idempotency-Key": key}))


def _errors(what="idempotency") -> float:
    return sum(s.value for m in metrics.REDIS_ERRORS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("what") == what)


def _decisions(app) -> list:
    from sqlalchemy import select

    from adapters.store.models import Decision
    with app.extensions["postsale"].factory() as s:
        return list(s.scalars(select(Decision.account_id)))


def test_redis_killed_decisions_and_replays_come_from_the_database(app, client, redis_server, example_facts):
    first = _post(client, {"facts": _facts(example_facts, 0)}, "k-0")
    assert first.status_code == 201
    redis_server.kill()
    for n in range(1, 6):
        r = _post(client, {"facts": _facts(example_facts, n)}, f"k-{n}")
        assert r.status_code == 201, r.get_json()
    replay = _post(client, {"facts": _facts(example_facts, 3)}, "k-3")
    assert replay.status_code in (200, 201) and replay.headers["Idempotent-Replayed"] == "true"
    assert _post(client, {"facts": _facts(example_facts, 4)}, "k-3").status_code == 422
    cached_before = _post(client, {"facts": _facts(example_facts, 0)}, "k-0")  # cached in Redis, then Redis died
    assert cached_before.headers["Idempotent-Replayed"] == "true" and cached_before.get_json() == first.get_json()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["redis"] == "down" and ready.get_json()["status"] == "degraded"
    assert sorted(_decisions(app)) == [f"redis-fault-{n}" for n in range(6)]


def test_redis_frozen_costs_one_timeout_per_pause_not_one_per_request(app, client, redis_server, example_facts):
    assert _post(client, {"facts": _facts(example_facts, 0)}, "f-0").status_code == 201
    before = _errors()
    redis_server.freeze()
    try:
        for n in range(1, 11):
            assert _post(client, {"facts": _facts(example_facts, n)}, f"f-{n}").status_code == 201
        assert client.get("/readyz").get_json()["redis"] == "down"
    finally:
        redis_server.thaw()
    assert _errors() - before == 1, "after one timeout Redis is bypassed for the pause"
    assert len(_decisions(app)) == 11


def test_redis_back_is_used_again(app, client, redis_server, example_facts):
    guard = app.extensions["postsale"].idempotency.guard
    guard.pause = 0.0
    redis_server.kill()
    assert _post(client, {"facts": _facts(example_facts, 1)}, "b-1").status_code == 201
    assert client.get("/readyz").get_json()["redis"] == "down"
    redis_server.start()
    assert client.get("/readyz").get_json()["redis"] == "ok"
    assert _post(client, {"facts": _facts(example_facts, 2)}, "b-2").status_code == 201
    import redis
    stored = [json.loads(redis.Redis.from_url(redis_server.url).get(k)) for k in
              redis.Redis.from_url(redis_server.url).keys("postsale:idem:*")]
    assert [e["state"] for e in stored] == ["done"]


def test_a_failed_cache_write_after_the_commit_still_answers_the_decision(app, client, redis_server, example_facts):
    rt = app.extensions["postsale"]
    real_set = rt.redis.set

    def set_(name, value, *args, **kwargs):
        if '"state": "done"' in value:
            from redis.exceptions import ConnectionError
            raise ConnectionError("connection reset by peer")
        return real_set(name, value, *args, **kwargs)
    rt.redis.set = set_
    try:
        r = _post(client, {"facts": _facts(example_facts, 1)}, "c-1")
    finally:
        rt.redis.set = real_set
    assert r.status_code == 201 and r.get_json()["id"]
    assert _decisions(app) == ["redis-fault-1"]
    replay = _post(client, {"facts": _facts(example_facts, 1)}, "c-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json()["id"] == r.get_json()["id"]
    assert _decisions(app) == ["redis-fault-1"]


def test_a_refused_request_leaves_no_in_flight_marker(app, client, redis_server):
    import redis
    r = _post(client, {"account_id": "no-such-account"}, "m-1")
    assert r.status_code == 400
    assert redis.Redis.from_url(redis_server.url).keys("postsale:idem:*") == []


def test_a_marker_left_by_a_dead_request_is_waited_for_briefly_then_decided(app, client, redis_server, example_facts):
    """The request holding the key died (SIGKILL): its marker expires on its own, and in the
    meantime a retry decides after WAIT_SECONDS instead of failing; the key's row admits one."""
    import redis

    from adapters.store.idempotency import key_hash
    from api.auth import digest
    rt = app.extensions["postsale"]
    rkey = rt.idempotency._rkey(key_hash(digest("k-decide")[:12], "d-1"))
    other = redis.Redis.from_url(redis_server.url)
    other.set(rkey, json.dumps({"state": "pending", "hash": "x", "token": "dead"}), ex=60)
    r = _post(client, {"facts": _facts(example_facts, 1)}, "d-1")
    assert r.status_code == 201
    assert json.loads(other.get(rkey))["state"] == "done"
    assert 0 < other.ttl(rkey) and _decisions(app) == ["redis-fault-1"]


def test_the_features_cache_is_bypassed_after_one_timeout(app, redis_server):
    """The features cache goes through the same guard as idempotency: a frozen Redis costs one
    timeout per pause, not one per read, and the database answers alone meanwhile."""
    rt = app.extensions["postsale"]
    events = rt.events
    assert events.snapshot("frozen-acct") is None
    before = _errors("features")
    redis_server.freeze()
    try:
        for _ in range(5):
            assert events.snapshot("frozen-acct") is None
    finally:
        redis_server.thaw()
    assert _errors("features") - before == 1
    assert events.guard.state == "down"
