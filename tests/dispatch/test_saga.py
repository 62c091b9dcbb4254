"""Sagas: a step that fails for good undoes the steps done before it (latest first) and
cancels the ones after it, recorded step by step; against the sandbox and a real HTTP tool."""
from __future__ import annotations

from argparse import Namespace
from io import StringIO

from cli import dispatch as cli
from adapters.tools.base import compensation_key
from adapters.tools.sandbox import add_fault, list_records

from .conftest import catalog, events, make_dispatcher, make_due, record, rows

PLAN = [("alert_csm", {"account": "acme-001", "severity": "high"}),
        ("create_quote", {"account": "acme-001", "offer": "renewal_36m"}),
        ("schedule_outreach", {"account": "acme-001", "channel": "email"}),
        ("notify", {"channel": "#renewals"})]


def test_outreach_failing_for_good_voids_the_quote(factory):
    d = make_dispatcher(factory, catalog(attempts=2, base=0.5))
    decision = record(factory, PLAN)
    add_fault(factory, "marketing", "unavailable", action="schedule_outreach", times=None)
    d.run_once()
    make_due(factory)
    summary = d.run_once()
    assert summary.outcomes == {"dead": 1} and summary.compensations == {"compensated": 1}
    alert, quote, outreach, notify = rows(factory, decision)
    assert [r.state for r in (alert, quote, outreach, notify)] == ["done", "compensated", "dead", "cancelled"]
    assert quote.result["compensation"]["action"] == "void_quote"
    assert quote.result["compensation"]["idempotency_key"] == compensation_key(quote.idempotency_key)
    assert notify.last_error == "saga aborted: step 3 (schedule_outreach) failed for good"
    [q] = list_records(factory, kind="quote")
    assert q["status"] == "void" and q["data"]["compensated_by"] == "void_quote"
    assert list_records(factory, kind="alert")[0]["status"] == "sent"  # a message cannot be unsent: kept
    assert list_records(factory, kind="outreach_task") == [] and list_records(factory, kind="notification") == []

    saga = [(t, p) for t, p in events(factory, decision) if t.startswith("saga.") or t in (
        "action.dead", "action.cancelled", "action.kept", "action.compensating", "action.compensated")]
    assert saga == [
        ("action.dead", {"step": 3, "action": "schedule_outreach", "attempt": 2, "error": "tool_unavailable",
                         "status": 503}),
        ("action.cancelled", {"step": 4, "action": "notify", "reason": "saga_aborted", "failed_step": 3}),
        ("action.kept", {"step": 1, "action": "alert_csm", "reason": "no_compensating_action"}),
        ("saga.aborted", {"failed_step": 3, "action": "schedule_outreach", "error": "tool_unavailable",
                          "compensate": [2], "kept": [1], "cancelled": [4]}),
        ("action.compensating", {"step": 2, "action": "create_quote", "compensation": "void_quote", "attempt": 1}),
        ("action.compensated", {"step": 2, "action": "create_quote", "compensation": "void_quote", "attempt": 1,
                                "reference": q["reference"]}),
        ("saga.compensated", {"failed_step": 3, "compensated": [2], "not_compensated": []}),
    ]
    # a saga that undid its quote is not re-driven step by step: ask for a new decision
    out = StringIO()
    assert cli.cmd_redrive(Namespace(ids=[outreach.id], all_dead=False), out, factory) == 1
    assert "undid step(s) 2" in out.getvalue()


def test_compensations_run_latest_first_and_retry(factory):
    d = make_dispatcher(factory, catalog(base=0.5))
    plan = [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
            ("schedule_outreach", {"account": "a-1", "channel": "email"}),
            ("open_case", {"team": "finance"})]
    decision = record(factory, plan)
    add_fault(factory, "cases", "rejected", times=1)
    add_fault(factory, "marketing", "unavailable", action="cancel_outreach", times=1)
    summary = d.run_once()
    assert summary.outcomes == {"done": 2, "dead": 1}
    assert summary.compensations == {"retry": 1}  # cancel_outreach failed once: the quote waits its turn
    quote, outreach, case = rows(factory, decision)
    assert (quote.state, outreach.state, case.state) == ("done", "done", "dead")
    assert outreach.last_error.startswith("compensation: tool_unavailable")
    make_due(factory)
    assert d.run_once().compensations == {"compensated": 2}
    order = [p["step"] for t, p in events(factory, decision) if t == "action.compensated"]
    assert order == [2, 1]
    assert [r.state for r in rows(factory, decision)] == ["compensated", "compensated", "dead"]
    assert list_records(factory, kind="outreach_task")[0]["status"] == "cancelled"
    assert list_records(factory, kind="quote")[0]["status"] == "void"


def test_a_compensation_that_cannot_succeed_is_recorded(factory):
    d = make_dispatcher(factory, catalog(base=0.01))
    decision = record(factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                ("open_case", {"team": "finance"})])
    add_fault(factory, "cases", "rejected", times=1)
    add_fault(factory, "crm", "rejected", action="void_quote", times=1)
    summary = d.run_once()
    assert summary.compensations == {"failed": 1}
    quote, case = rows(factory, decision)
    assert quote.state == "done" and quote.next_attempt_at is None
    assert quote.last_error.startswith("compensation failed for good after 1 attempts: tool_rejected")
    assert events(factory, decision)[-1] == ("saga.compensated", {"failed_step": 2, "compensated": [],
                                                                  "not_compensated": [1]})


def test_a_dead_first_step_cancels_the_rest_and_redrive_resumes_them(factory):
    d = make_dispatcher(factory)
    decision = record(factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    add_fault(factory, "crm", "rejected", times=1)
    assert d.run_once().outcomes == {"dead": 1}
    quote, outreach = rows(factory, decision)
    assert (quote.state, outreach.state) == ("dead", "cancelled")
    out = StringIO()
    assert cli.cmd_redrive(Namespace(ids=[], all_dead=True), out, factory) == 0
    assert "and step(s) 2 of its saga" in out.getvalue()
    assert d.run_once().outcomes == {"done": 2}
    assert [(t, p.get("step")) for t, p in events(factory, decision)][-7:] == [
        ("action.redriven", 1), ("action.redriven", 2), ("saga.resumed", 1),
        ("action.started", 1), ("action.done", 1), ("action.started", 2), ("action.done", 2)]
    assert [r.state for r in rows(factory, decision)] == ["done", "done"]


def test_saga_against_a_real_http_tool(sqlite_factory, server):
    """The quote is voided over HTTP with the compensation's own idempotency key."""
    factory = sqlite_factory
    d = make_dispatcher(factory, catalog(server.url, crm="http", marketing="http"))
    decision = record(factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    server.app.script = [("ok",), ("status", 422, {}, {"message": "no such channel"})]
    summary = d.run_once()
    assert summary.outcomes == {"done": 1, "dead": 1} and summary.compensations == {"compensated": 1}
    quote, outreach = rows(factory, decision)
    seen = [(r["method"], r["path"], r["idempotency_key"]) for r in server.app.seen]
    assert seen == [("POST", "/quotes", quote.idempotency_key),
                    ("POST", "/outreach-tasks", outreach.idempotency_key),
                    ("POST", "/quotes/ext-1/void", compensation_key(quote.idempotency_key))]
    assert server.app.seen[0]["body"]["discount"] == 20
    assert outreach.last_error == "tool_rejected: marketing.schedule_outreach: HTTP 422: no such channel"
    assert quote.state == "compensated"
