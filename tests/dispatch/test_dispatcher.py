"""The dispatcher against the sandbox tools, on SQLite and PostgreSQL: order, enrichment,
retries with backoff, Retry-After, dead letter and re-drive, fencing, reclaiming."""
from __future__ import annotations

from argparse import Namespace
from datetime import timedelta
from io import StringIO

import pytest
from sqlalchemy import update

from cli import dispatch as cli
from adapters.dispatch.backoff import backoff_seconds
from adapters.dispatch.claims import aware
from adapters.dispatch.dispatcher import enrich
from adapters.store.db import now, transaction
from adapters.store.models import AuditEntry, Outbox
from adapters.tools.base import DatabaseAuditSink
from adapters.tools.catalog import RetryPolicy
from adapters.tools.sandbox import add_fault, list_calls, list_records

from .conftest import catalog, events, make_dispatcher, make_due, record, rows

QUOTE = ("create_quote", {"account": "acme-001", "offer": "renewal_36m"})
OUTREACH = ("schedule_outreach", {"account": "acme-001", "channel": "email"})


def test_steps_run_in_order_and_the_quote_carries_the_offer(factory):
    d = make_dispatcher(factory, audit=DatabaseAuditSink(factory))
    decision = record(factory, [QUOTE, OUTREACH])
    summary = d.run_once()
    assert summary.outcomes == {"done": 2}
    quote, outreach = rows(factory, decision)
    assert (quote.state, outreach.state) == ("done", "done")
    assert quote.attempts == outreach.attempts == 1
    assert quote.result["reference"].startswith("Q-") and quote.result["replayed"] is False
    assert set(quote.result["data"]) <= {"id", "status", "kind"}  # no echo of the params
    [q] = list_records(factory, kind="quote")
    assert q["data"] == {"account": "acme-001", "offer": "renewal_36m", "kind": "renewal", "discount": 20,
                         "term_months": 36}
    types = [t for t, _ in events(factory, decision)]
    assert types == ["decided", "action.started", "action.done", "action.started", "action.done"]
    started = [p for t, p in events(factory, decision) if t == "action.started"]
    assert [p["step"] for p in started] == [1, 2]
    with factory() as s:  # every call audited, keyed by the row's idempotency key
        audited = {a.subject for a in s.query(AuditEntry).filter(AuditEntry.kind == "tool.call")}
    assert audited == {quote.idempotency_key, outreach.idempotency_key}


def test_an_outreach_never_runs_before_its_quote(factory):
    d = make_dispatcher(factory, catalog(base=60, max_backoff=120))  # no loaded machine outlasts it; make_due ends it
    decision = record(factory, [QUOTE, OUTREACH])
    add_fault(factory, "crm", "unavailable", action="create_quote", times=1)
    assert d.run_once().outcomes == {"retry": 1}
    quote, outreach = rows(factory, decision)
    assert quote.state == "retry" and outreach.state == "ready" and outreach.attempts == 0
    assert d.claim(10) == []  # the quote waits for its backoff; the outreach waits for the quote
    make_due(factory)
    assert d.run_once().outcomes == {"done": 2}
    assert [r["kind"] for r in reversed(list_records(factory))] == ["quote", "outreach_task"]


def test_retries_back_off_then_succeed(factory):
    d = make_dispatcher(factory, catalog(attempts=5, base=0.2))
    decision = record(factory, [QUOTE])
    add_fault(factory, "crm", "unavailable", times=2)
    waits = []
    for attempt in (1, 2):
        before = now()
        assert d.run_once().outcomes == {"retry": 1}
        [row] = rows(factory, decision)
        assert row.state == "retry" and row.attempts == attempt and row.last_error.startswith("tool_unavailable")
        wait = (aware(row.next_attempt_at) - before).total_seconds()
        low = 0.2 * 2 ** (attempt - 1)
        assert low - 0.05 <= wait <= low + 0.2 + 1.0, (attempt, wait)  # base * 2^(n-1) + jitter(0..base)
        assert d.run_once().processed == 0  # not due before its time
        waits.append(wait)
        make_due(factory)
    assert d.run_once().outcomes == {"done": 1}
    [row] = rows(factory, decision)
    assert row.state == "done" and row.attempts == 3 and row.last_error is None
    retries = [p for t, p in events(factory, decision) if t == "action.retry"]
    assert [(p["attempt"], p["error"], p["status"]) for p in retries] == [(1, "tool_unavailable", 503),
                                                                            (2, "tool_unavailable", 503)]
    assert len(list_records(factory, kind="quote")) == 1


def test_backoff_is_exponential_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=8, base_backoff_seconds=1, max_backoff_seconds=10)
    for attempt, low in [(1, 1), (2, 2), (3, 4), (4, 8)]:
        samples = [backoff_seconds(policy, attempt) for _ in range(200)]
        assert all(low <= w <= min(low + 1, 10) for w in samples)
        assert len(set(samples)) > 100  # jittered
    assert all(backoff_seconds(policy, 9) == 10 for _ in range(20))  # capped
    assert backoff_seconds(policy, 1, retry_after=42) == 42
    assert backoff_seconds(policy, 4, retry_after=0.5) >= 8


def test_retry_after_from_the_tool_is_honoured(factory):
    d = make_dispatcher(factory, catalog(base=0.01))
    decision = record(factory, [QUOTE])
    add_fault(factory, "crm", "rate_limited", times=1, retry_after=30)
    before = now()
    assert d.run_once().outcomes == {"retry": 1}
    [row] = rows(factory, decision)
    assert 29.5 <= (aware(row.next_attempt_at) - before).total_seconds() <= 31
    [retry] = [p for t, p in events(factory, decision) if t == "action.retry"]
    assert retry["error"] == "tool_rate_limited" and retry["retry_after"] == 30 and retry["wait_seconds"] >= 30
    assert d.run_once().processed == 0
    make_due(factory)
    assert d.run_once().outcomes == {"done": 1}


def test_dead_letter_after_the_budget_then_redrive(factory):
    d = make_dispatcher(factory, catalog(attempts=3, base=0.5))
    decision = record(factory, [QUOTE])
    add_fault(factory, "crm", "unavailable", times=None)
    outcomes = []
    for _ in range(3):
        outcomes += list(d.run_once().outcomes.elements())
        make_due(factory)
    assert outcomes == ["retry", "retry", "dead"]
    [row] = rows(factory, decision)
    assert row.state == "dead" and row.attempts == 3
    assert row.last_error.startswith("retry budget spent: 3 of 3 attempts; last: tool_unavailable")
    dead = [p for t, p in events(factory, decision) if t == "action.dead"]
    assert dead == [{"step": 1, "action": "create_quote", "attempt": 3, "error": "tool_unavailable", "status": 503}]
    assert d.run_once().processed == 0  # a dead letter stays put

    out = StringIO()
    assert cli.cmd_list(Namespace(state="dead", decision=None, limit=10, json=False), out, factory) == 0
    assert str(row.id) in out.getvalue() and "retry budget spent" in out.getvalue()
    out = StringIO()
    assert cli.cmd_stats(Namespace(json=False), out, factory) == 0 and "dead 1" in out.getvalue()

    from adapters.tools.sandbox import reset
    reset(factory, faults_only=True)
    out = StringIO()
    assert cli.cmd_redrive(Namespace(ids=[row.id], all_dead=False), out, factory) == 0
    assert "is ready again" in out.getvalue()
    [row] = rows(factory, decision)
    assert row.state == "ready" and row.attempts == 0 and row.last_error is None
    assert [t for t, _ in events(factory, decision)][-1] == "action.redriven"
    assert d.run_once().outcomes == {"done": 1}
    assert cli.cmd_redrive(Namespace(ids=[row.id, 999999], all_dead=False), StringIO(), factory) == 1  # not dead


def test_a_rejection_is_dead_at_once(factory):
    d = make_dispatcher(factory)
    decision = record(factory, [QUOTE])
    add_fault(factory, "crm", "rejected", times=1)
    assert d.run_once().outcomes == {"dead": 1}
    [row] = rows(factory, decision)
    assert row.attempts == 1 and row.last_error.startswith("tool_rejected")


def test_a_timeout_is_retried_with_the_same_key_and_acts_once(factory):
    d = make_dispatcher(factory, catalog(base=60, max_backoff=120))  # no loaded machine outlasts it; make_due ends it
    decision = record(factory, [QUOTE])
    add_fault(factory, "crm", "timeout", times=1)  # the quote is made, the answer lost
    assert d.run_once().outcomes == {"retry": 1}
    make_due(factory)
    assert d.run_once().outcomes == {"done": 1}
    [row] = rows(factory, decision)
    assert row.result["replayed"] is True  # the second call was answered from the tool's record
    assert len(list_records(factory, kind="quote")) == 1 and len(list_calls(factory, tool="crm")) == 1


def test_an_expired_lease_is_taken_over_and_the_old_worker_writes_nothing(factory):
    a = make_dispatcher(factory, worker_id="worker-a")
    b = make_dispatcher(factory, worker_id="worker-b")
    decision = record(factory, [QUOTE])
    [claimed] = a.claim()
    assert b.claim() == []  # held
    with transaction(factory) as s:  # worker a stalls past its lease
        s.execute(update(Outbox).values(lease_until=now() - timedelta(seconds=1)))
    [again] = b.claim()
    assert again.id == claimed.id and again.reclaimed and again.previous_worker == "worker-a"
    assert b.process(again).state == "done"
    late = a.process(claimed)  # a wakes up: its writes are fenced off
    assert late.state == "lost"
    [row] = rows(factory, decision)
    assert row.state == "done" and row.claimed_by == "worker-b" and row.attempts == 1
    assert len(list_records(factory, kind="quote")) == 1
    assert "action.reclaimed" in [t for t, _ in events(factory, decision)]


def test_a_row_that_keeps_killing_workers_is_dead_after_the_budget(factory):
    d = make_dispatcher(factory, catalog(attempts=2))
    decision = record(factory, [QUOTE])
    with transaction(factory) as s:  # two calls started, both lost with their workers
        s.execute(update(Outbox).values(state="running", attempts=2, claimed_by="gone",
                                        lease_until=now() - timedelta(seconds=1)))
    assert d.run_once().outcomes == {"dead": 1}
    [row] = rows(factory, decision)
    assert "lost with its worker" in row.last_error
    assert list_records(factory, kind="quote") == []


def test_rows_awaiting_approval_are_not_touched(factory):
    d = make_dispatcher(factory)
    decision = record(factory, [QUOTE], approval=True)
    assert d.run_once().processed == 0
    [row] = rows(factory, decision)
    assert row.state == "awaiting_approval"
    with transaction(factory) as s:  # what an approval does
        s.execute(update(Outbox).values(state="ready", next_attempt_at=None))
    assert d.run_once().outcomes == {"done": 1}


def test_an_action_no_tool_performs_is_dead(factory):
    from adapters.tools.catalog import parse_catalog

    from .conftest import catalog_text
    text = catalog_text().replace("  open_case: cases\n", "")
    cat = parse_catalog(text, "t.yaml", action_types={"create_quote", "update_opportunity", "fetch_contract",
                                                      "schedule_outreach", "alert_csm", "notify"})
    d = make_dispatcher(factory, cat)
    decision = record(factory, [("open_case", {"team": "finance"})])
    assert d.run_once().outcomes == {"dead": 1}
    [row] = rows(factory, decision)
    assert row.last_error.startswith("action_not_granted") and row.attempts == 0


@pytest.mark.parametrize("params, offers, expected", [
    ({"offer": "renewal_36m"}, [{"offer": "renewal_36m", "kind": "renewal", "discount": 20, "term_months": 36}],
     {"offer": "renewal_36m", "kind": "renewal", "discount": 20, "term_months": 36}),
    ({"offer": "renewal_36m", "discount": 15}, [{"offer": "renewal_36m", "kind": "renewal", "discount": 20}],
     {"offer": "renewal_36m", "kind": "renewal", "discount": 15}),  # an approver's edit on the row wins
    ({"offer": "other"}, [{"offer": "renewal_36m", "discount": 20}], {"offer": "other"}),
    ({"channel": "email"}, [{"offer": "renewal_36m", "discount": 20}], {"channel": "email"}),
])
def test_enrich(params, offers, expected):
    assert enrich(params, {"offers": offers}) == expected


def test_retries_against_a_real_http_tool(sqlite_factory, server):
    """503, then a reset connection, then success: three calls with one key, one side effect."""
    d = make_dispatcher(sqlite_factory, catalog(server.url, crm="http", base=0.5))
    decision = record(sqlite_factory, [QUOTE])
    server.app.script = [("status", 503, {}, {"message": "maintenance"}), ("reset",)]
    for expected in ("retry", "retry", "done"):
        assert list(d.run_once().outcomes) == [expected]
        make_due(sqlite_factory)
    [row] = rows(sqlite_factory, decision)
    assert row.attempts == 3 and row.result["reference"] == "ext-1"
    assert server.app.keys == [row.idempotency_key] * 3 and server.app.side_effects == 1
    assert [p["error"] for t, p in events(sqlite_factory, decision) if t == "action.retry"] == [
        "tool_unavailable", "tool_unavailable"]


@pytest.mark.parametrize("header, low, high", [("7", 7, 9), ("date", 59, 63)])
def test_retry_after_over_http(sqlite_factory, server, header, low, high):
    """The next attempt is where the header says, however long the call itself took: bounded
    by the clock before the header was written and after the attempt (an HTTP date has whole
    seconds, hence 59)."""
    from email.utils import format_datetime
    before = now()
    if header == "date":
        header = format_datetime(before + timedelta(seconds=60), usegmt=True)
    d = make_dispatcher(sqlite_factory, catalog(server.url, crm="http", base=0.01))
    decision = record(sqlite_factory, [QUOTE])
    server.app.script = [("status", 429, {"Retry-After": header}, {"message": "slow down"})]
    assert d.run_once().outcomes == {"retry": 1}
    after = now()
    [row] = rows(sqlite_factory, decision)
    next_at = aware(row.next_attempt_at)
    assert before + timedelta(seconds=low) <= next_at <= after + timedelta(seconds=high), (
        next_at, before, after, header, row.last_error)
    assert d.run_once().processed == 0
