"""Protecting the tools and the customers: circuit breakers, shared rate limits, the contact policy."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from adapters.dispatch.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from adapters.dispatch.claims import claim
from adapters.dispatch.contact import ContactPolicyError, load_contact_policy, parse_contact_policy
from adapters.dispatch.ratelimit import LocalRateLimiter, RedisRateLimiter
from adapters.store.db import now
from adapters.tools.base import MemoryAuditSink, ToolRejected, ToolUnavailable
from adapters.tools.catalog import RateLimit
from adapters.tools.sandbox import add_fault, list_records, reset
from adapters.tools.sandbox_models import SandboxRecord

from .conftest import catalog, events, make_dispatcher, make_due, record, rows


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


# --------------------------------------------------------------------------- circuit breaker

def test_breaker_states():
    clock = Clock()
    b = CircuitBreaker("crm", threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        p = b.allow()
        b.outcome(p, ToolUnavailable("x"))
    b.outcome(b.allow(), ToolRejected("no"))  # the tool answered: not a failure, not a success
    assert b.state == CLOSED
    b.outcome(b.allow(), ToolUnavailable("x"))
    assert b.state == OPEN
    p = b.allow()
    assert not p.allowed and p.wait == pytest.approx(10)
    clock.t += 10
    assert b.state == HALF_OPEN
    trial = b.allow()
    assert trial.allowed and trial.trial
    assert not b.allow().allowed  # one trial at a time
    b.outcome(trial, ToolUnavailable("still down"))
    assert b.state == OPEN  # the trial failed: open again for a whole cool-down
    clock.t += 10
    trial = b.allow()
    b.outcome(trial, None)
    assert b.state == CLOSED and b.allow().allowed


def test_breaker_opens_defers_without_calls_and_recovers_half_open(factory):
    clock = Clock()
    audit = MemoryAuditSink()
    d = make_dispatcher(factory, catalog(base=0.5), audit=audit, breaker_threshold=2, breaker_cooldown=30,
                        clock=clock)
    decisions = [record(factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"})])
                 for i in range(5)]
    add_fault(factory, "crm", "unavailable", times=None)
    summary = d.run_once()
    assert summary.outcomes == {"retry": 2}  # two failures open the circuit; the rest are left alone
    assert d.breakers["crm"].state == OPEN
    assert len([c for c in audit.records if c.tool == "crm"]) == 2
    untouched = [r for dec in decisions for r in rows(factory, dec) if r.attempts == 0]
    assert len(untouched) == 3 and all(r.state == "ready" for r in untouched)

    # a row claimed before the circuit opened (or by a claim that raced it) is deferred, not called
    make_due(factory)
    [c] = claim(factory, d.dialect, d.worker_id, 30, 1)
    r = d.process(c)
    assert r.state == "deferred" and r.error == "circuit_open" and r.wait == pytest.approx(30)
    [row] = [x for x in rows(factory) if x.id == c.id]
    assert row.state in ("ready", "retry") and row.attempts == c.attempts  # no attempt spent
    assert ("action.deferred", {"step": 1, "action": "create_quote", "reason": "circuit_open",
                                "wait_seconds": 30.0}) in events(factory, c.decision_id)
    assert len([c for c in audit.records if c.tool == "crm"]) == 2

    # the tool recovers; after the cool-down one trial call closes the circuit, then all run
    reset(factory, faults_only=True)
    clock.t += 30
    make_due(factory)
    summary = d.run_once()
    assert summary.outcomes == {"done": 5}
    assert d.breakers["crm"].state == CLOSED
    assert len(list_records(factory, kind="quote")) == 5


# --------------------------------------------------------------------------- rate limits

def test_local_bucket():
    clock = Clock()
    lim = LocalRateLimiter(clock)
    rate = RateLimit(per_second=2, burst=3)
    assert [lim.acquire("crm", rate) for _ in range(3)] == [0, 0, 0]
    assert lim.acquire("crm", rate) == pytest.approx(0.5)
    clock.t += 0.5
    assert lim.acquire("crm", rate) == 0
    assert lim.acquire("billing", rate) == 0  # per tool


def test_redis_bucket_is_shared(redis_prefix):
    client, prefix = redis_prefix
    a, b = RedisRateLimiter(client, prefix), RedisRateLimiter(client, prefix)
    rate = RateLimit(per_second=1, burst=2)
    assert a.acquire("crm", rate) == 0 and b.acquire("crm", rate) == 0
    assert 0.9 < a.acquire("crm", rate) <= 1.0 and 0.9 < b.acquire("crm", rate) <= 1.0


def _call_times(factory) -> list[float]:
    with factory() as s:
        return sorted(r.created_at.timestamp() for r in s.scalars(select(SandboxRecord)
                                                                    .where(SandboxRecord.kind == "quote")))


def test_two_dispatchers_share_a_rate_limit_through_redis(sqlite_factory, redis_prefix):
    client, prefix = redis_prefix
    factory = sqlite_factory
    rate, burst, n = 10.0, 2, 14
    cat = catalog(rate=rate, burst=burst)
    for i in range(n):
        record(factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"})])
    ds = [make_dispatcher(factory, cat, redis=client, redis_prefix=prefix) for _ in range(2)]
    granted, lock = [], threading.Lock()
    for d in ds:  # note when each call was let through
        def acquire(tool, r, _inner=d.limiter.acquire):
            wait = _inner(tool, r)
            if wait == 0:
                with lock:
                    granted.append(time.time())
            return wait
        d.limiter.acquire = acquire
    threads = [threading.Thread(target=d.run_once, kwargs={"concurrency": 2}) for d in ds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.state for r in rows(factory)) == ["done"] * n
    times = sorted(granted)
    assert len(times) == n
    # a token bucket lets at most burst + rate * t calls through in any t seconds, both dispatchers together
    for i in range(n):
        for j in range(i + 1, n):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 0.5, (i, j, times[j] - times[i])
    assert times[-1] - times[0] >= (n - burst) / rate - 0.1
    assert len(_call_times(factory)) == n


def test_a_long_wait_for_a_token_defers_the_row(sqlite_factory):
    d = make_dispatcher(sqlite_factory, catalog(rate=0.1, burst=1), max_rate_wait=0.2)
    for i in range(2):
        record(sqlite_factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"})])
    summary = d.run_once(limit=2)
    assert summary.outcomes == {"done": 1, "deferred": 1}
    deferred = [r for r in rows(sqlite_factory) if r.state == "ready"]
    assert len(deferred) == 1 and deferred[0].attempts == 0
    assert deferred[0].next_attempt_at.replace(tzinfo=None) > now().replace(tzinfo=None) + timedelta(seconds=8)


# --------------------------------------------------------------------------- contact policy

POLICY = parse_contact_policy("""\
version: 1
channels:
  email: {limit: 1, window: 1h}
  call: {limit: 5, window: 1h}
account: {limit: 3, window: 1d}
""", "policy.yaml")


@pytest.fixture(params=["database", "redis"])
def counters(request):
    if request.param == "database":
        yield {}
        return
    from tests.servers import redis_client
    _, client = redis_client()
    import secrets
    prefix = f"ptest-{secrets.token_hex(4)}"
    yield {"redis": client, "redis_prefix": prefix}
    for k in client.scan_iter(f"{prefix}:*"):
        client.delete(k)


def outreach(account, channel):
    return ("schedule_outreach", {"account": account, "channel": channel})


def test_contact_policy_suppresses_and_records(factory, counters):
    d = make_dispatcher(factory, contact_policy=POLICY, **counters)
    first = record(factory, [outreach("acme", "email")])
    second = record(factory, [outreach("acme", "email"), ("alert_csm", {"account": "acme"})])
    other = record(factory, [outreach("globex", "email")])
    calls = [record(factory, [outreach("acme", "call")]) for _ in range(3)]
    d.run_once()
    state = {dec: [r.state for r in rows(factory, dec)] for dec in [first, second, other, *calls]}
    assert state[first] == ["done"] and state[other] == ["done"]
    assert state[second] == ["suppressed", "done"]  # recorded, not lost; the later step still runs
    assert state[calls[0]] == ["done"] and state[calls[1]] == ["done"]
    assert state[calls[2]] == ["suppressed"]  # call 3/1h is fine, but the account's 3/1d is spent
    [row, _] = rows(factory, second)
    assert row.last_error == "contact policy: at most 1 email outreach per 1h per account" and row.attempts == 0
    assert ("action.suppressed", {"step": 1, "action": "schedule_outreach", "reason": "contact_policy",
                                  "channel": "email", "scope": "channel:email", "limit": 1, "window": "1h",
                                  "detail": row.last_error}) in events(factory, second)
    assert rows(factory, calls[2])[0].last_error == \
        "contact policy: at most 3 outreach actions on any channel per 1d per account"
    assert len(list_records(factory, kind="outreach_task")) == 4


def test_a_failed_outreach_gives_its_slot_back(factory, counters):
    d = make_dispatcher(factory, contact_policy=POLICY, **counters)
    failed = record(factory, [outreach("acme", "email")])
    add_fault(factory, "marketing", "rejected", times=1)
    d.run_once()
    assert rows(factory, failed)[0].state == "dead"
    later = record(factory, [outreach("acme", "email")])
    d.run_once()
    assert rows(factory, later)[0].state == "done"


def test_a_retried_outreach_keeps_its_own_slot(factory, counters):
    d = make_dispatcher(factory, catalog(base=0.5), contact_policy=POLICY, **counters)
    dec = record(factory, [outreach("acme", "email")])
    add_fault(factory, "marketing", "unavailable", times=1)
    assert d.run_once().outcomes == {"retry": 1}
    make_due(factory)
    assert d.run_once().outcomes == {"done": 1}  # not counted against itself
    assert rows(factory, dec)[0].attempts == 2


def test_contact_policy_holds_across_racing_workers(factory, counters):
    policy = parse_contact_policy("version: 1\nchannels: {email: {limit: 2, window: 1h}}\n", "p.yaml")
    for _ in range(8):
        record(factory, [outreach("acme", "email")])
    ds = [make_dispatcher(factory, contact_policy=policy, **counters) for _ in range(3)]
    threads = [threading.Thread(target=d.run_once, kwargs={"concurrency": 2}) for d in ds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.state for r in rows(factory)) == ["done"] * 2 + ["suppressed"] * 6
    assert len(list_records(factory, kind="outreach_task")) == 2


def test_the_shipped_policy_loads():
    p = load_contact_policy()
    assert p.actions == {"schedule_outreach"} and p.account is not None
    assert {"email", "call", "meeting"} <= set(p.channels)


def test_policy_errors_have_positions():
    text = """\
version: 1
actions: [schedule_outreech]
channels:
  email: {limit: 1, windw: 7d}
  Call: {limit: 1, window: 7d}
default: {limit: -1, window: 7 days}
"""
    with pytest.raises(ContactPolicyError) as e:
        parse_contact_policy(text, "policy.yaml")
    lines = [str(d) for d in e.value.diagnostics]
    assert any(x.startswith("policy.yaml:4:21: schema:") and "'windw'" in x and "did you mean 'window'" in x
               for x in lines), lines
    assert any(x.startswith("policy.yaml:5:3: schema:") and "'Call' is not a channel name" in x for x in lines), lines
    assert any(x.startswith("policy.yaml:6:18: schema:") for x in lines), lines
    assert any("window '7 days'" in x for x in lines), lines
    with pytest.raises(ContactPolicyError) as e:
        parse_contact_policy("version: 1\nactions: [schedule_outreech]\n", "p.yaml")
    assert str(e.value.diagnostics[0]) == ("p.yaml:2:11: unknown-action-type: 'schedule_outreech' is not an action "
                                           "type rules can request; did you mean 'schedule_outreach'?")


def test_dispatch_goes_on_when_redis_is_down(sqlite_factory):
    """Rate limits fall back to the process, contact counters to the database."""
    import redis

    from tests.adapters.fake_tool import closed_port
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    broken = redis.Redis(host="127.0.0.1", port=closed_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
    policy = parse_contact_policy("version: 1\nchannels: {email: {limit: 1, window: 1h}}\n", "p.yaml")
    d = make_dispatcher(sqlite_factory, contact_policy=policy, redis=broken)
    first = record(sqlite_factory, [outreach("acme", "email")])
    second = record(sqlite_factory, [outreach("acme", "email")])
    d.run_once()
    assert [r.state for r in rows(sqlite_factory, first) + rows(sqlite_factory, second)] == ["done", "suppressed"]
    assert not d.redis_outage.usable()  # left alone for a while: no Redis timeouts on every call
