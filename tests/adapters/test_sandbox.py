"""The sandbox twin on SQLite and PostgreSQL: idempotency, compensation, faults, inspection, audit."""
from __future__ import annotations

import json
import threading
from argparse import Namespace
from io import StringIO

import pytest
from sqlalchemy import select

from adapters.store.models import AuditEntry
from adapters.tools.base import (ActionNotGranted, DatabaseAuditSink, NoCompensation, ToolRateLimited, ToolRejected,
                                 ToolTimeout, ToolUnavailable, compensation_key)
from adapters.tools.registry import build_registry
from adapters.tools.sandbox import add_fault, add_record, list_calls, list_faults, list_records, reset

from .conftest import ENV, TOKEN, catalog_for

QUOTE = {"account": "acme-001", "offer": "renewal_36m", "discount": 12, "contact_email": "jane.doe@example.com"}


@pytest.fixture()
def registry(factory):
    r = build_registry(catalog_for(adapter="sandbox"), environ=dict(ENV), session_factory=factory)
    yield r
    r.close()


def test_a_write_makes_one_record_and_the_same_key_replays_it(registry, factory):
    crm = registry.adapter_for("create_quote")
    first = crm.perform("create_quote", QUOTE, "key-1")
    assert first.reference.startswith("Q-") and first.status == 201 and not first.replayed
    assert first.data["status"] == "open" and first.data["offer"] == "renewal_36m"
    again = crm.perform("create_quote", QUOTE, "key-1")
    assert again.replayed and again.reference == first.reference and again.data == first.data
    [quote] = list_records(factory, kind="quote")
    assert quote["reference"] == first.reference and quote["account"] == "acme-001" and quote["status"] == "open"
    assert quote["idempotency_key"] == "key-1" and quote["tool"] == "crm"
    assert len(list_calls(factory, tool="crm")) == 1


def test_the_same_key_with_other_params_is_refused(registry, factory):
    crm = registry.adapter_for("create_quote")
    crm.perform("create_quote", QUOTE, "key-1")
    with pytest.raises(ToolRejected) as e:
        crm.perform("create_quote", {**QUOTE, "discount": 30}, "key-1")
    assert e.value.status == 422 and not e.value.retryable
    assert len(list_records(factory, kind="quote")) == 1


def test_keys_are_per_tool_and_per_action(registry, factory):
    registry.perform("create_quote", QUOTE, "key-1")
    registry.perform("schedule_outreach", {"account": "acme-001", "channel": "call"}, "key-1")  # another tool
    assert {r["kind"] for r in list_records(factory)} == {"quote", "outreach_task"}


def test_compensation_voids_the_quote_once(registry, factory):
    done = registry.perform("create_quote", QUOTE, "key-1")
    undo_key = compensation_key("key-1")
    undo = registry.compensate("create_quote", done.reference, undo_key)
    assert undo.action == "void_quote" and undo.data["status"] == "void" and undo.reference == done.reference
    assert registry.compensate("create_quote", done.reference, undo_key).replayed
    [quote] = list_records(factory, kind="quote")
    assert quote["status"] == "void" and quote["data"]["compensated_by"] == "void_quote"
    assert list_records(factory, kind="quote", status="void")[0]["reference"] == done.reference
    # outreach too
    task = registry.perform("schedule_outreach", {"account": "acme-001", "channel": "call"}, "key-2")
    registry.compensate("schedule_outreach", task.reference, compensation_key("key-2"))
    assert list_records(factory, kind="outreach_task")[0]["status"] == "cancelled"


def test_compensation_errors(registry):
    with pytest.raises(ToolRejected) as e:
        registry.compensate("create_quote", "Q-nope", "undo-1")
    assert e.value.status == 404
    with pytest.raises(ToolRejected) as e:
        registry.compensate("create_quote", None, "undo-2")
    assert e.value.status == 400
    with pytest.raises(NoCompensation):
        registry.compensate("alert_csm", "A-1", "undo-3")


def test_every_engine_action_type_has_a_sandbox_behaviour(registry, factory):
    kinds = {}
    for action, params in [("create_quote", QUOTE), ("update_opportunity", {"account": "acme-001", "stage": "won"}),
                           ("schedule_outreach", {"account": "acme-001", "channel": "email"}),
                           ("alert_csm", {"account": "acme-001", "severity": "high"}),
                           ("notify", {"account": "acme-001", "channel": "#renewals"}),
                           ("open_case", {"account": "acme-001", "team": "finance"}),
                           ("fetch_contract", {"account": "acme-001"})]:
        kinds[action] = registry.perform(action, params, f"k-{action}").data.get("kind")
    shown = {(r["tool"], r["kind"], r["status"]) for r in list_records(factory, account="acme-001")}
    assert shown == {("crm", "quote", "open"), ("crm", "opportunity_update", "applied"),
                     ("marketing", "outreach_task", "scheduled"), ("notifications", "alert", "sent"),
                     ("notifications", "notification", "sent"), ("cases", "case", "open"),
                     ("billing", "contract", "active")}
    assert list_records(factory, account="someone-else") == []


def test_fetch_contract_is_stable_per_account(registry):
    a = registry.perform("fetch_contract", {"account": "acme-001"}, "k1").data
    b = registry.perform("fetch_contract", {"account": "acme-001"}, "k2").data
    other = registry.perform("fetch_contract", {"account": "globex-9"}, "k3").data
    assert a == b and a["currency"] == "USD" and a["annual_value"] == a["seats"] * a["unit_price"] * 12
    assert other["id"] != a["id"]
    with pytest.raises(ToolRejected):
        registry.perform("fetch_contract", {}, "k4")


def test_a_seeded_contract_is_what_billing_answers(registry, factory):
    seeded = add_record(factory, "billing", "contract", "acme-001", {"seats": 40, "unit_price": 55})
    assert registry.perform("fetch_contract", {"account": "acme-001"}, "k1").reference == seeded["reference"]


def test_least_privilege_in_the_sandbox(registry, factory):
    with pytest.raises(ActionNotGranted):
        registry.adapter("crm").perform("open_case", {"team": "finance"}, "key-1")
    with pytest.raises(ActionNotGranted):
        registry.adapter_for("delete_account")
    assert list_calls(factory) == []


def test_faults_before_the_action(registry, factory):
    add_fault(factory, "crm", "unavailable", action="create_quote", times=2, retry_after=1.5)
    add_fault(factory, "marketing", "rate_limited", retry_after=4)
    add_fault(factory, "cases", "rejected")
    for _ in range(2):
        with pytest.raises(ToolUnavailable) as e:
            registry.perform("create_quote", QUOTE, "key-1")
        assert e.value.retry_after == 1.5
    assert registry.perform("create_quote", QUOTE, "key-1").status == 201
    with pytest.raises(ToolRateLimited) as e:
        registry.perform("schedule_outreach", {"account": "a", "channel": "call"}, "key-2")
    assert e.value.retry_after == 4
    with pytest.raises(ToolRejected):
        registry.perform("open_case", {"account": "a", "team": "finance"}, "key-3")
    assert list_faults(factory) and all(f["remaining"] == 0 for f in list_faults(factory))
    assert len(list_records(factory, kind="quote")) == 1


def test_timeout_fault_loses_the_answer_after_the_action_and_the_retry_replays(registry, factory):
    add_fault(factory, "crm", "timeout", action="create_quote")
    with pytest.raises(ToolTimeout) as e:
        registry.perform("create_quote", QUOTE, "key-1")
    assert e.value.retryable
    assert len(list_records(factory, kind="quote")) == 1  # it happened
    again = registry.perform("create_quote", QUOTE, "key-1")
    assert again.replayed and len(list_records(factory, kind="quote")) == 1  # and only once


def test_always_failing_until_reset(registry, factory):
    add_fault(factory, "notifications", "unavailable", times=None)
    for i in range(3):
        with pytest.raises(ToolUnavailable):
            registry.perform("notify", {"channel": "#x"}, f"k{i}")
    reset(factory, faults_only=True)
    registry.perform("notify", {"channel": "#x"}, "k9")
    reset(factory)
    assert list_records(factory) == [] and list_calls(factory) == [] and list_faults(factory) == []


def test_concurrent_calls_with_one_key_make_one_record(registry, factory):
    crm = registry.adapter_for("create_quote")
    results, errors = [], []
    barrier = threading.Barrier(6)

    def go():
        barrier.wait()
        try:
            results.append(crm.perform("create_quote", QUOTE, "same-key"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len({r.reference for r in results}) == 1 and sum(not r.replayed for r in results) == 1
    assert len(list_records(factory, kind="quote")) == 1


def test_calls_are_audited_in_the_database_without_secrets_or_params(factory):
    registry = build_registry(catalog_for(adapter="sandbox"), environ=dict(ENV), session_factory=factory)
    assert isinstance(registry.adapter("crm").audit, DatabaseAuditSink)
    done = registry.perform("create_quote", QUOTE, "key-1")
    registry.perform("create_quote", QUOTE, "key-1")
    registry.compensate("create_quote", done.reference, compensation_key("key-1"))
    with pytest.raises(ActionNotGranted):
        registry.adapter("crm").perform("notify", {"email": "jane.doe@example.com"}, "key-2")
    add_fault(factory, "crm", "rejected")
    with pytest.raises(ToolRejected):
        registry.perform("create_quote", QUOTE, "key-3")
    registry.close()
    with factory() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.kind == "tool.call").order_by(AuditEntry.id)).all()
    got = [(r.subject, r.detail["action"], r.detail["outcome"]) for r in rows]
    assert got == [("key-1", "create_quote", "ok"), ("key-1", "create_quote", "replayed"),
                   (compensation_key("key-1"), "void_quote", "ok"), ("key-2", "notify", "action_not_granted"),
                   ("key-3", "create_quote", "tool_rejected")]
    assert rows[2].detail["compensates"] == "create_quote" and rows[0].detail["reference"] == done.reference
    assert all(r.actor == "dispatcher" and r.detail["tool"] == "crm" and r.detail["adapter"] == "sandbox"
               and isinstance(r.detail["duration_ms"], float) for r in rows)
    dumped = json.dumps([r.detail for r in rows])
    for forbidden in (TOKEN, "jane.doe", "renewal_36m", "acme-001", "discount"):
        assert forbidden not in dumped


def test_cli_show_and_calls(registry, factory):
    from cli.tools import cmd_calls, cmd_fail, cmd_faults, cmd_reset, cmd_show
    registry.perform("create_quote", QUOTE, "key-1")
    registry.perform("alert_csm", {"account": "globex-9", "severity": "high"}, "key-2")
    out = StringIO()
    assert cmd_show(Namespace(kind="quote", account="acme-001", tool=None, status=None, limit=50, json=False),
                    out=out, factory=factory) == 0
    text = out.getvalue()
    assert text.splitlines()[0].split() == ["CREATED", "TOOL", "KIND", "REFERENCE", "ACCOUNT", "STATUS", "DETAILS"]
    assert "quote" in text and "acme-001" in text and "globex-9" not in text
    out = StringIO()
    cmd_show(Namespace(kind=None, account="globex-9", tool=None, status=None, limit=50, json=True), out=out,
             factory=factory)
    [alert] = json.loads(out.getvalue())
    assert alert["kind"] == "alert" and alert["data"]["severity"] == "high"
    out = StringIO()
    cmd_calls(Namespace(tool="crm", key=None, limit=50, json=False), out=out, factory=factory)
    assert "key-1" in out.getvalue() and "key-2" not in out.getvalue()
    out = StringIO()
    cmd_fail(Namespace(tool="crm", action="create_quote", error="timeout", times=2, always=False, retry_after=None),
             out=out, factory=factory)
    assert "crm.create_quote fails with timeout for the next 2 call(s)" in out.getvalue()
    out = StringIO()
    cmd_faults(Namespace(json=True), out=out, factory=factory)
    assert json.loads(out.getvalue())[0]["remaining"] == 2
    assert cmd_reset(Namespace(faults_only=False, yes=False), out=StringIO(), factory=factory) == 1
    assert cmd_reset(Namespace(faults_only=False, yes=True), out=StringIO(), factory=factory) == 0
    out = StringIO()
    cmd_show(Namespace(kind=None, account=None, tool=None, status=None, limit=50, json=False), out=out,
             factory=factory)
    assert out.getvalue().strip() == "(nothing)"


def test_cli_parser_wires_the_subcommands():
    import argparse
    from cli.tools import add_subcommands, cmd_show
    p = argparse.ArgumentParser(prog="postsale")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["sandbox", "show", "--kind", "quote", "--account", "acme-001"])
    assert args.func is cmd_show and args.kind == "quote" and args.account == "acme-001"
    assert p.parse_args(["sandbox", "fail", "crm", "--always"]).always
