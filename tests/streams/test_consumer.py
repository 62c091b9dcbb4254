"""The consumer, one batch at a time, on a real Redis and a real database (SQLite, PostgreSQL)."""
from __future__ import annotations

import json
import threading

import pytest

from adapters.signals.streams import Consumer, Outage, decode_entry, EntryError
from adapters.store.events import EventStore

from .conftest import add, event, stored_ids


def consumer(rds, store, stream, **kw) -> Consumer:
    kw.setdefault("block_ms", 0)
    c = Consumer(rds, store, stream=stream, group="g", consumer=kw.pop("name", "c1"), **kw)
    c.ensure_group()
    return c


def drain(c: Consumer, seconds: float = 10) -> str:
    return c.run(threading.Event(), drain=True, max_seconds=seconds)


def dead(rds, stream) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in rds.xrange(stream + ":dead")]


def test_good_events_are_ingested_then_acknowledged(rds, stream, store, factory):
    for i in range(25):
        add(rds, stream, event(i))
    c = consumer(rds, store, stream, batch=10)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(25))
    s = c.summary
    assert (s.accepted, s.duplicates, s.dead_lettered, s.acked, s.batches) == (25, 0, 0, 25, 3)
    assert c.pending() == 0 and rds.xlen(stream + ":dead") == 0
    for account in store.accounts():
        assert store.snapshot(account, use_cache=False).state == store.replay(account)


def test_bad_entries_are_parked_with_the_reason_and_acknowledged(rds, stream, store, factory):
    add(rds, stream, event(1))
    bad_json = add(rds, stream, "{not json")
    bad_schema = add(rds, stream, event(2, type="product.usag", data={"count": -1}))
    no_field = rds.xadd(stream, {"payload": "{}"}).decode()
    rds.xadd(stream, {"events": json.dumps([event(3), event(4)])})
    half_bad = rds.xadd(stream, {"events": json.dumps([event(5), event(8, data={"count": "x"})])}).decode()
    c = consumer(rds, store, stream)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == ["ev-1", "ev-3", "ev-4"]  # an entry is taken whole or not at all
    assert c.summary.dead_lettered == 4 and c.summary.acked == 6 and c.pending() == 0
    parked = {d["entry_id"]: d for d in dead(rds, stream)}
    assert set(parked) == {bad_json, bad_schema, no_field, half_bad}
    assert parked[bad_json]["reason"] == "not-json" and parked[bad_json]["event"] == "{not json"
    assert parked[bad_schema]["reason"] == "invalid-event"
    problems = json.loads(parked[bad_schema]["problems"])
    assert any(p["path"] == "$.type" and "did you mean 'product.usage'" in p["message"] for p in problems)
    assert parked[no_field]["reason"] == "no-event" and parked[no_field]["payload"] == "{}"
    assert [p["path"] for p in json.loads(parked[half_bad]["problems"])] == ["$[1].data.count"]
    assert {d["consumer"] for d in parked.values()} == {"c1"} and {d["delivered"] for d in parked.values()} == {"1"}


def test_decode_entry_names_each_problem():
    with pytest.raises(EntryError) as exc:
        decode_entry({b"event": b"\xff\xfe"})
    assert exc.value.reason == "not-utf8"
    assert [e.id for e in decode_entry({b"event": json.dumps(event(9)).encode()})] == ["ev-9"]


def test_a_repeated_event_id_is_stored_once(rds, stream, store, factory):
    store.ingest([decode_entry({"event": json.dumps(event(0))})[0]])  # already stored
    for i in [0, 1, 2, 1, 3, 2]:
        add(rds, stream, event(i))
    c = consumer(rds, store, stream, batch=4)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == ["ev-0", "ev-1", "ev-2", "ev-3"]
    assert (c.summary.accepted, c.summary.duplicates, c.summary.acked) == (3, 3, 6)
    for account in store.accounts():
        snap = store.snapshot(account, use_cache=False)
        assert snap.state == store.replay(account)


def test_an_entry_delivered_too_often_is_parked(rds, stream, store, factory):
    poison = add(rds, stream, event(1))
    fine = add(rds, stream, event(2))
    rds.xgroup_create(stream, "g", id="0")
    rds.xreadgroup("g", "crashed", {stream: ">"}, count=10)  # a consumer that died holding both
    rds.xclaim(stream, "g", "crashed", 0, [poison], retrycount=5)  # it kept dying on this one
    rds.xclaim(stream, "g", "crashed", 0, [fine], retrycount=4)
    c = consumer(rds, store, stream, claim_idle_ms=0, max_deliveries=5)
    assert drain(c) == "done"
    assert stored_ids(factory) == ["ev-2"]  # claimed for the 5th time: still in
    (parked,) = dead(rds, stream)
    assert parked["entry_id"] == poison and parked["reason"] == "max-deliveries" and parked["delivered"] == "6"
    assert c.summary.reclaimed == 2 and c.pending() == 0


def test_entries_stay_pending_while_the_database_is_down_then_go_in(rds, stream, store, factory):
    from adapters.store.db import make_engine, sessions
    for i in range(12):
        add(rds, stream, event(i))
    down = EventStore(sessions(make_engine("postgresql://postgres@127.0.0.1:9/nothing?connect_timeout=1")))
    c = consumer(rds, down, stream, batch=5)
    for _ in range(3):
        with pytest.raises(Outage):
            c.step()
    assert c.pending() == 5 and c.summary.acked == 0 and stored_ids(factory) == []
    times = {int(r["times_delivered"]) for r in rds.xpending_range(stream, "g", "-", "+", 100)}
    assert times == {1}  # retrying the batch in hand is not a new delivery
    c.store = store  # the database is back
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(12))
    assert c.pending() == 0 and c.summary.retries == 3 and c.summary.accepted == 12


def test_a_restarted_consumer_takes_its_own_pending_entries_first(rds, stream, store, factory):
    for i in range(6):
        add(rds, stream, event(i))
    rds.xgroup_create(stream, "g", id="0")
    rds.xreadgroup("g", "worker-1", {stream: ">"}, count=4)  # read, then the process died
    c = consumer(rds, store, stream, name="worker-1", claim_idle_ms=3_600_000)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(6)) and c.pending() == 0


class Refusing(EventStore):
    """A store with a bug for one event: it raises on any batch holding it."""

    refuse = "ev-3"

    def ingest(self, events):
        if any(e.id == self.refuse for e in events):
            raise ValueError(f"cannot fold {self.refuse}")
        return super().ingest(events)


def test_the_entry_the_store_refuses_is_isolated_and_parked(rds, stream, factory):
    for i in range(8):
        add(rds, stream, event(i))
    c = consumer(rds, Refusing(factory), stream, batch=8)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(8) if i != 3)
    (parked,) = dead(rds, stream)
    assert parked["reason"] == "ingest-error" and "cannot fold ev-3" in parked["problems"]
    assert c.pending() == 0 and c.summary.acked == 8


class Flaky(EventStore):
    """The database is unreachable for the first `down` batches."""

    down = 2

    def ingest(self, events):
        if self.down:
            self.down -= 1
            from sqlalchemy.exc import OperationalError
            raise OperationalError("INSERT INTO events ...", {}, ConnectionRefusedError("connection refused"))
        return super().ingest(events)


def test_a_running_consumer_rides_out_a_database_outage(rds, stream, factory, caplog):
    for i in range(7):
        add(rds, stream, event(i))
    c = consumer(rds, Flaky(factory), stream, batch=5)
    assert c.run(threading.Event(), drain=True, max_seconds=10, backoff_cap=0.3) == "done"
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(7))
    assert c.summary.retries == 2 and c.summary.accepted == 7 and c.pending() == 0
    assert sum("the database is unavailable" in r.message for r in caplog.records) == 2


def test_a_batch_held_through_an_outage_is_not_taken_over(rds, stream, factory):
    import time
    for i in range(7):
        add(rds, stream, event(i))
    c = consumer(rds, Flaky(factory), stream, batch=5, claim_idle_ms=100)
    other = consumer(rds, EventStore(factory), stream, name="c2", claim_idle_ms=100)
    with pytest.raises(Outage):
        c.step()
    time.sleep(0.15)  # idle past --claim-idle-ms while c waits
    with pytest.raises(Outage):
        c.step()  # the retry resets the idle time first
    other.step(block=False)
    assert other.summary.reclaimed == 0 and other.summary.accepted == 2  # only the entries nobody had read
    c.step()
    assert c.summary.accepted == 5 and c.summary.duplicates == 0 and c.pending() == 0
    assert sorted(stored_ids(factory)) == sorted(f"ev-{i}" for i in range(7))


def test_hostile_text_is_parked_and_the_good_entries_go_in(rds, stream, store, factory):
    add(rds, stream, event(1))
    bad = event(2)
    bad["data"]["\ud800"] = 1  # an unpaired surrogate, escaped in the JSON
    add(rds, stream, json.dumps(bad))
    old = event(3, occurred_at="0001-01-01T00:00:00+01:00")
    add(rds, stream, old)
    add(rds, stream, event(4))
    c = consumer(rds, store, stream)
    assert drain(c) == "done"
    assert sorted(stored_ids(factory)) == sorted([event(1)["id"], event(4)["id"]])
    parked = dead(rds, stream)
    assert len(parked) == 2 and {p["reason"] for p in parked} == {"invalid-event"}
