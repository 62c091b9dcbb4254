"""One trace follows an account: the event that came in, the trigger's evaluation, the decision
(scores, rules, guardrails, the write), the outbox row's dispatch and the CRM call, whose
request carries `traceparent`; events published to Redis Streams carry their trace through."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from adapters import telemetry
from adapters.store.models import Decision, DueEvaluation
from service.evaluate import Evaluator
from tests.adapters.fake_tool import Server
from tests.api.conftest import app, client, rules_dir  # noqa: F401 - fixtures (db_url: tests/conftest.py)
from tests.dispatch.conftest import ENV, catalog_text
from tests.signals.conftest import api_keys, auth, renewal_story  # noqa: F401 - fixtures

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture()
def crm():
    with Server() as server:
        yield server


@pytest.fixture()
def settings(db_url, rules_dir, api_keys, crm, tmp_path, monkeypatch):  # noqa: F811 - the CRM over HTTP
    from adapters.store.db import migrate
    from config.settings import from_env
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    tools = tmp_path / "tools.yaml"
    tools.write_text(catalog_text(crm.url, crm="http", marketing="http"))
    migrate(db_url)
    base = from_env({"POSTSALE_API_KEYS": json.dumps(api_keys)})
    return replace(base, database_url=db_url, rules_dir=rules_dir, tools_file=tools, inline_dispatch_ms=0)


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_one_trace_from_the_event_to_the_crm_call(spans, client, app, crm):  # noqa: F811
    rt = app.extensions["postsale"]
    r = client.post("/v1/events", json=renewal_story("acme-trace"),
                    headers={**auth(), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert r.status_code in (200, 202), r.get_json()
    assert Evaluator(rt, worker_id="w", clock=lambda: later(31)).run_due().outcomes["decided"] == 1
    summary = rt.dispatcher().run_once(limit=20)
    assert summary.processed >= 1
    with rt.factory() as s:
        decision = s.scalars(select(Decision)).one()
    assert decision.context["traceparent"].split("-")[1] == CALLER_TRACE

    request = spans.one("POST /v1/events")
    assert format(request.parent.span_id, "016x") == CALLER_SPAN and request.parent.is_remote
    ingest = spans.one("events.ingest")
    evaluate = spans.one("evaluate renewal")
    decide = spans.one("decide renewal")
    assert spans.parent_of(ingest) is request
    assert spans.parent_of(evaluate) is ingest  # the evaluation continues the trace of the event behind it
    assert spans.parent_of(decide) is evaluate
    for step in ("score", "rules", "guardrails", "decision.record"):
        assert spans.parent_of(spans.one(step)) is decide, step
    assert spans.one("rules").attributes["postsale.rules_fired"] > 0
    assert decide.attributes["postsale.decision_id"] == decision.id

    dispatches = spans.named("outbox.dispatch create_quote")
    call = spans.one("tool crm.create_quote")
    assert spans.parent_of(dispatches[0]) is decide  # the worker continues the recorded decision's trace
    assert spans.parent_of(call) is dispatches[0]
    assert call.kind == telemetry.SpanKind.CLIENT and call.attributes["postsale.outcome"] == "ok"
    assert {s.context.trace_id for s in spans.all} == {int(CALLER_TRACE, 16)}
    [seen] = [r for r in crm.app.seen if r["path"] == "/quotes"]
    assert seen["traceparent"] == f"00-{CALLER_TRACE}-{format(call.context.span_id, '016x')}-01"


def test_log_lines_carry_the_trace_and_span_ids(spans):
    from api.logs import JsonFormatter
    record = logging.LogRecord("postsale.test", logging.INFO, __file__, 1, "inside", None, None)
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
    with telemetry.tracer("postsale.test").start_as_current_span("work") as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


def test_tracing_is_off_by_default():
    from config.settings import SettingsError, from_env
    assert from_env({}).traces_exporter == ("none",)
    assert from_env({"OTEL_TRACES_EXPORTER": "console, otlp"}).traces_exporter == ("console", "otlp")
    with pytest.raises(SettingsError, match="^OTEL_TRACES_EXPORTER='jaeger'"):
        from_env({"OTEL_TRACES_EXPORTER": "jaeger"})
    assert not telemetry.enabled() and telemetry.carrier() == {} and telemetry.traceparent() is None


def test_events_carry_their_trace_through_the_stream(spans, factory):
    from adapters.signals.streams import Consumer, publish
    from adapters.store.events import EventStore
    from engine.signals.events import parse_events
    from engine.signals.triggers import load_triggers
    from tests.conftest import ROOT
    from tests.servers import redis_client
    import secrets
    _, rds = redis_client()
    stream = f"test:events:{secrets.token_hex(5)}"
    try:
        events = parse_events(renewal_story("acme-stream")[:3])
        publish(rds, stream, events)
        store = EventStore(factory, triggers=load_triggers(ROOT / "config" / "triggers.yaml", ROOT / "rules"))
        consumer = Consumer(rds, store, stream=stream, group="g", block_ms=0)
        consumer.ensure_group()
        consumer.run(threading.Event(), drain=True, max_seconds=10)
    finally:
        rds.delete(stream, stream + ":dead")
        rds.close()
    produced = spans.one(f"publish {stream}")
    consumed = spans.one(f"consume {stream}")
    ingest = spans.one("events.ingest")
    assert spans.parent_of(consumed) is produced and spans.parent_of(ingest) is consumed
    with factory() as s:
        [due] = s.scalars(select(DueEvaluation)).all()
    assert due.trace_context.split("-")[1] == format(produced.context.trace_id, "032x")
