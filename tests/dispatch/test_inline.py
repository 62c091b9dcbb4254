"""Inline dispatch: a decision's ready steps run before the response, within a time budget;
the HTTP answer reports each action's state; the rest is left to the workers. And the CLI."""
from __future__ import annotations

import json
from argparse import Namespace
from dataclasses import replace
from io import StringIO

import pytest

from adapters.dispatch import dispatch_decision
from cli import dispatch as cli
from adapters.tools.sandbox import list_records
from config.settings import from_env

from .conftest import catalog, events, make_dispatcher, record, rows

KEYS = {"k-decide": ["decide", "read"]}


def test_dispatch_decision_runs_only_that_decision(sqlite_factory):
    d = make_dispatcher(sqlite_factory)
    mine = record(sqlite_factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                   ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    other = record(sqlite_factory, [("create_quote", {"account": "a-2", "offer": "renewal_36m"})])
    states = dispatch_decision(d, mine, 2.0)
    assert [(s["step"], s["type"], s["state"], s["attempts"]) for s in states] == [
        (1, "create_quote", "done", 1), (2, "schedule_outreach", "done", 1)]
    assert [r.state for r in rows(sqlite_factory, other)] == ["ready"]


def test_the_budget_leaves_the_rest_to_the_workers(sqlite_factory, server):
    d = make_dispatcher(sqlite_factory, catalog(server.url, crm="http", marketing="http"))
    dec = record(sqlite_factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                  ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    server.app.script = [("slow", 0.3)]
    states = dispatch_decision(d, dec, 0.1)
    assert [s["state"] for s in states] == ["done", "ready"]  # a call once started finishes
    assert d.run_once().outcomes == {"done": 1}


def test_a_failing_step_inline_is_left_for_retry(sqlite_factory):
    from adapters.tools.sandbox import add_fault
    d = make_dispatcher(sqlite_factory, catalog(base=1))
    dec = record(sqlite_factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                                  ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    add_fault(sqlite_factory, "crm", "unavailable", times=1)
    states = dispatch_decision(d, dec, 1.0)
    assert [s["state"] for s in states] == ["retry", "ready"]


def test_a_spent_rate_limit_or_an_open_circuit_costs_no_transaction(sqlite_factory):
    """A decision just recorded whose first step's tool cannot be called now: nothing is
    claimed or written (the row stays ready for the workers), counted in statements."""
    from sqlalchemy import event
    limited = make_dispatcher(sqlite_factory, catalog(rate=0.001, burst=1))
    tripped = make_dispatcher(sqlite_factory, breaker_threshold=1)
    tripped.breakers["marketing"].failure()
    first = record(sqlite_factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"})])
    assert [s["state"] for s in dispatch_decision(limited, first, 1.0, "create_quote")] == ["done"]  # the one token
    spent = record(sqlite_factory, [("create_quote", {"account": "a-2", "offer": "renewal_36m"})])
    outreach = record(sqlite_factory, [("schedule_outreach", {"account": "a-3", "channel": "email"})])
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)
    engine = sqlite_factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert dispatch_decision(limited, spent, 1.0, "create_quote") == []
        assert dispatch_decision(tripped, outreach, 1.0, "schedule_outreach") == []
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    assert [r.state for r in rows(sqlite_factory, spent)] == ["ready"]
    assert [r.state for r in rows(sqlite_factory, outreach)] == ["ready"]
    # without the caller's word that the decision is new, the row is claimed and deferred as before
    assert [s["state"] for s in dispatch_decision(limited, spent, 1.0)] == ["ready"]
    assert "action.deferred" in [t for t, _ in events(sqlite_factory, spent)]


def test_the_runtime_builds_its_dispatcher_from_the_shipped_catalog(sqlite_factory, monkeypatch):
    monkeypatch.delenv("POSTSALE_TOOLS_FILE", raising=False)
    monkeypatch.delenv("POSTSALE_CONTACT_POLICY_FILE", raising=False)
    from adapters.dispatch.inline import build_dispatcher
    dispatcher = build_dispatcher(sqlite_factory)
    dec = record(sqlite_factory, [("create_quote", {"account": "inline-1", "offer": "renewal_36m"})])
    try:
        assert [s["state"] for s in dispatch_decision(dispatcher, dec, 2.0)] == ["done"]
    finally:
        dispatcher.close()
    assert list_records(sqlite_factory, kind="quote")[0]["data"]["discount"] == 20


def test_a_sandbox_step_inline_takes_four_transactions(sqlite_factory, monkeypatch):
    """Claim, start, the sandbox's call (with the fault it may spend), and the step's result
    together with the call's audit row; the decision is not read back, nothing is claimed after
    its last step: counted, so an extra round trip on the path shows."""
    from sqlalchemy import event, select

    from adapters.dispatch.inline import build_dispatcher
    from adapters.store.models import AuditEntry
    monkeypatch.delenv("POSTSALE_TOOLS_FILE", raising=False)
    monkeypatch.delenv("POSTSALE_CONTACT_POLICY_FILE", raising=False)
    from adapters.dispatch import dispatch_inline
    from adapters.store.models import Decision
    dispatcher = build_dispatcher(sqlite_factory)
    dec = record(sqlite_factory, [("create_quote", {"account": "inline-tx", "offer": "renewal_36m"})])
    with sqlite_factory() as s:
        result = s.get(Decision, dec).result
    body = {"actions": [{"step": 1, "type": "create_quote", "status": "ready"}]}
    begins = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("BEGIN"):
            begins.append(statement)
    engine = sqlite_factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        dispatch_inline(dispatcher, sqlite_factory, dec, 2.0, body, recorded=(result, "inline-tx", None))
    finally:
        event.remove(engine, "before_cursor_execute", count)
        dispatcher.close()
    assert body["actions"][0]["status"] == "done"
    assert len(begins) == 4
    [key] = [r.idempotency_key for r in rows(sqlite_factory, dec)]
    with sqlite_factory() as s:
        audited = s.scalars(select(AuditEntry).where(AuditEntry.kind == "tool.call", AuditEntry.subject == key)).all()
    assert [a.detail["outcome"] for a in audited] == ["ok"]


@pytest.fixture()
def app_for(root, ceiling_models_dir):
    """Apps serving hand-made response models: the renewal and its quote go out, whatever the
    shipped models would choose."""
    made = []

    def make(url, **env):
        from adapters.store.db import migrate
        from api import create_app
        migrate(url)
        settings = replace(from_env({"POSTSALE_API_KEYS": json.dumps(KEYS), **env}), database_url=url,
                           rules_dir=root / "rules", models_dir=ceiling_models_dir)
        app = create_app(settings)
        made.append(app)
        return app.test_client()
    yield make
    for app in made:
        app.extensions["postsale"].close()


def _post(client, facts, key=None):
    headers = {"Authorization": "Bearer k-decide"}
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/v1/decisions", json={"facts": facts}, headers=headers)


def test_the_api_acts_inline_on_sqlite_and_reports_it(app_for, sqlite_url, example_facts, monkeypatch):
    monkeypatch.delenv("POSTSALE_TOOLS_FILE", raising=False)
    monkeypatch.delenv("POSTSALE_CONTACT_POLICY_FILE", raising=False)
    # a generous budget: the first call also builds the dispatcher, slow on a cold machine
    client = app_for(sqlite_url, POSTSALE_INLINE_DISPATCH_MS="5000")
    first = _post(client, example_facts, "order-1")
    assert first.status_code == 201
    assert [(a["type"], a["status"]) for a in first.json["actions"]] == [("create_quote", "done"),
                                                                         ("schedule_outreach", "done")]
    again = _post(client, example_facts, "order-1")
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    second = _post(client, example_facts)  # the same account again: the contact policy holds it back
    assert [(a["type"], a["status"]) for a in second.json["actions"]] == [("create_quote", "done"),
                                                                          ("schedule_outreach", "suppressed")]
    record_ = client.get(f"/v1/decisions/{second.json['id']}", headers={"Authorization": "Bearer k-decide"}).json
    assert [e["type"] for e in record_["events"]] == ["decided", "action.started", "action.done",
                                                      "action.suppressed"]


def test_inline_dispatch_is_off_on_postgresql_and_when_set_to_zero(app_for, sqlite_url, example_facts):
    from tests.servers import postgres_schema_url
    url, drop = postgres_schema_url()
    try:
        for client in (app_for(url), app_for(sqlite_url, POSTSALE_INLINE_DISPATCH_MS="0")):
            r = _post(client, example_facts)
            assert r.status_code == 201 and {a["status"] for a in r.json["actions"]} == {"ready"}
    finally:
        drop()


def test_settings():
    assert from_env({}).inline_dispatch_budget_ms == 200
    assert from_env({"DATABASE_URL": "postgresql://x/y"}).inline_dispatch_budget_ms == 0
    assert from_env({"DATABASE_URL": "postgresql://x/y", "POSTSALE_INLINE_DISPATCH_MS": "150"}
                    ).inline_dispatch_budget_ms == 150


def test_worker_once_from_the_command_line(sqlite_url, sqlite_factory, monkeypatch, tmp_path):
    from .conftest import ENV, catalog_text
    tools = tmp_path / "tools.yaml"
    tools.write_text(catalog_text())
    for k, v in {**ENV, "DATABASE_URL": sqlite_url, "POSTSALE_TOOLS_FILE": str(tools), "REDIS_URL": ""}.items():
        monkeypatch.setenv(k, v)
    record(sqlite_factory, [("create_quote", {"account": "a-1", "offer": "renewal_36m"}),
                            ("schedule_outreach", {"account": "a-1", "channel": "email"})])
    args = Namespace(once=True, drain=False, concurrency=2, poll=0.1, limit=100, lease=5, breaker_threshold=5,
                     breaker_cooldown=30, max_seconds=None)
    out = StringIO()
    assert cli.cmd_worker(args, out) == 0
    assert json.loads(out.getvalue())["outcomes"] == {"done": 2}
    out = StringIO()
    assert cli.cmd_list(Namespace(state=None, decision=None, limit=10, json=True), out) == 0
    assert [r["state"] for r in json.loads(out.getvalue())] == ["done", "done"]

    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\nchannels: {email: {limit: 1}}\n")
    monkeypatch.setenv("POSTSALE_CONTACT_POLICY_FILE", str(bad))
    assert cli.cmd_worker(args, StringIO()) == 1  # refuses to start on a bad policy
    out = StringIO()
    assert cli.cmd_policy_check(Namespace(file=str(bad)), out) == 1
    assert f"{bad}:2:19: schema: 'window' is required" in out.getvalue()


def test_run_forever_works_until_stopped(sqlite_factory):
    import threading
    import time
    d = make_dispatcher(sqlite_factory)
    stop, swept = threading.Event(), []
    t = threading.Thread(target=d.run_forever, args=(stop,),
                         kwargs={"poll": 0.05, "concurrency": 2, "housekeeping": lambda: swept.append(1),
                                 "housekeeping_every": 0.05})
    t.start()
    try:
        decs = [record(sqlite_factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"})])
                for i in range(3)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not swept or any(r.state != "done" for r in rows(sqlite_factory))):
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert [r.state for dec in decs for r in rows(sqlite_factory, dec)] == ["done"] * 3
    assert swept
