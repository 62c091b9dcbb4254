"""The Redis cache of feature state (real Redis): read-through, forward-only, dropped on rebuild."""
from __future__ import annotations

import json
import secrets

import pytest

from adapters.store.events import EventStore
from engine.signals.events import parse_events
from tests.servers import redis_client

from .conftest import renewal_story


@pytest.fixture()
def redis():
    _, client = redis_client()
    yield client


def test_cache_serves_what_the_database_holds(factory, redis):
    account = "cache-" + secrets.token_hex(4)
    store = EventStore(factory, redis=redis)
    events = parse_events(renewal_story(account))
    store.ingest(events[:50])
    store.ingest(events[50:])
    cached = json.loads(redis.hget(store.cache_key(account), "doc"))
    assert cached["version"] == len(events)
    from_db = store.snapshot(account, use_cache=False)
    from_cache = store.snapshot(account)
    assert from_cache.state == from_db.state and from_cache.version == from_db.version
    assert from_cache.newest_event_at == from_db.newest_event_at
    redis.delete(store.cache_key(account))
    assert store.snapshot(account).version == len(events)  # read through, and cached again
    assert int(redis.hget(store.cache_key(account), "version")) == len(events)
    redis.delete(store.cache_key(account))


def test_an_older_version_never_overwrites_a_newer_one(factory, redis):
    account = "cache-" + secrets.token_hex(4)
    store = EventStore(factory, redis=redis)
    events = parse_events(renewal_story(account))
    store.ingest(events[:10])
    old = store.snapshot(account, use_cache=False)
    store.ingest(events[10:])
    store._cache(old)  # a slow writer arriving late
    assert store.snapshot(account).version == len(events)
    redis.delete(store.cache_key(account))


def test_rebuild_replaces_a_damaged_state_and_the_cache(factory, redis):
    from adapters.store.db import transaction
    from adapters.store.models import FeatureState
    account = "cache-" + secrets.token_hex(4)
    store = EventStore(factory, redis=redis)
    store.ingest(parse_events(renewal_story(account)))
    good = store.snapshot(account, use_cache=False).state
    with transaction(factory) as s:
        s.get(FeatureState, account).state = {**good, "usage": {}}
    redis.delete(store.cache_key(account))
    assert store.snapshot(account).state["usage"] == {}
    r = store.rebuild(account)
    assert r["identical"] is False
    assert store.snapshot(account).state == good == store.snapshot(account, use_cache=False).state
    assert store.rebuild(account)["identical"] is True
    redis.delete(store.cache_key(account))


def test_cache_outage_falls_back_to_the_database(factory):
    import redis as redis_lib
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    store = EventStore(factory, redis=dead)
    account = "cache-" + secrets.token_hex(4)
    result = store.ingest(parse_events(renewal_story(account)[:5]))
    assert len(result.accepted) == 5
    assert store.snapshot(account).version == 5


def test_two_databases_on_one_redis_never_share_states(tmp_path, redis):
    from adapters.store.db import make_engine, migrate, sessions
    stores = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate(url)
        stores.append(EventStore(sessions(make_engine(url)), redis=redis))
    account = "cache-" + secrets.token_hex(4)
    events = parse_events(renewal_story(account))
    stores[0].ingest(events)
    stores[1].ingest(events[:2])
    assert stores[0].snapshot(account).version == len(events)
    assert stores[1].snapshot(account).version == 2
    assert stores[0].cache_key(account) != stores[1].cache_key(account)
    same = EventStore(sessions(make_engine(f"sqlite:///{tmp_path}/./a.db")), redis=redis)  # spelled otherwise
    assert same.cache_key(account) == stores[0].cache_key(account)
    assert same.snapshot(account).version == len(events)
    for store in stores:
        redis.delete(store.cache_key(account))
