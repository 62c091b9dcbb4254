"""Fixtures for the dispatcher: databases (SQLite and PostgreSQL), a tool catalog whose tools
are sandbox twins or a real loopback HTTP server, recorded decisions, dispatchers."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import update

from adapters.dispatch.contact import parse_contact_policy
from adapters.dispatch.dispatcher import Dispatcher
from adapters.store.db import make_engine, migrate, now, sessions, transaction
from adapters.store.decisions import DecisionStore
from adapters.store.models import Outbox
from adapters.tools.base import MemoryAuditSink
from adapters.tools.catalog import parse_catalog
from adapters.tools.registry import build_registry
from tests.adapters.fake_tool import Server
from tests.servers import postgres_schema_url

ENV = {"TEST_CRM_TOKEN": "crm-token-for-tests", "TEST_MARKETING_TOKEN": "marketing-token-for-tests"}

CATALOG = """\
version: 1
defaults:
  adapter: sandbox
  timeout_seconds: {timeout}
  retry: {{max_attempts: {attempts}, base_backoff_seconds: {base}, max_backoff_seconds: {max_backoff}}}
  rate_limit: {{per_second: {rate}, burst: {burst}}}
tools:
  crm:
    adapter: {crm}
    base_url: {url}
    credential: {{env: TEST_CRM_TOKEN}}
    actions:
      create_quote: {{path: /quotes, compensation: void_quote}}
      void_quote: {{path: "/quotes/{{ref}}/void"}}
      update_opportunity: {{method: PATCH, path: "/accounts/{{account}}/opportunity"}}
  billing:
    actions:
      fetch_contract: {{method: GET, path: "/accounts/{{account}}/contract"}}
  marketing:
    adapter: {marketing}
    base_url: {url}
    credential: {{env: TEST_MARKETING_TOKEN}}
    actions:
      schedule_outreach: {{path: /outreach-tasks, compensation: cancel_outreach}}
      cancel_outreach: {{path: "/outreach-tasks/{{ref}}/cancel"}}
  notifications:
    actions:
      alert_csm: {{path: /alerts}}
      notify: {{path: /messages}}
  cases:
    actions:
      open_case: {{path: /cases}}
routes:
  create_quote: crm
  update_opportunity: crm
  fetch_contract: billing
  schedule_outreach: marketing
  alert_csm: notifications
  notify: notifications
  open_case: cases
"""

NO_LIMITS = parse_contact_policy("version: 1\n", "no-limits.yaml")


def catalog_text(url: str = "http://127.0.0.1:9", crm: str = "sandbox", marketing: str = "sandbox", *,
                 attempts: int = 4, base: float = 0.05, rate: float = 1000, burst: int = 1000,
                 timeout: float = 2, max_backoff: float = 1) -> str:
    return CATALOG.format(url=url, crm=crm, marketing=marketing, attempts=attempts, base=base, rate=rate,
                          burst=burst, timeout=timeout, max_backoff=max_backoff)


def catalog(*args, **kw):
    return parse_catalog(catalog_text(*args, **kw), "test-tools.yaml")


@pytest.fixture()
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'postsale.db'}"
    migrate(url)
    return url


@pytest.fixture()
def sqlite_factory(sqlite_url):
    engine = make_engine(sqlite_url)
    yield sessions(engine)
    engine.dispose()


@pytest.fixture()
def pg_factory():
    url, drop = postgres_schema_url()
    migrate(url)
    engine = make_engine(url)
    yield sessions(engine)
    engine.dispose()
    drop()


@pytest.fixture()
def server():
    with Server() as s:
        yield s


@pytest.fixture()
def redis_prefix():
    """Redis with a key prefix of its own (so runs never share counters); cleaned up after."""
    from tests.servers import redis_client
    _, client = redis_client()
    prefix = f"ptest-{secrets.token_hex(4)}"
    yield client, prefix
    for k in client.scan_iter(f"{prefix}:*"):
        client.delete(k)


def make_dispatcher(factory, cat=None, *, audit=None, **kw) -> Dispatcher:
    registry = build_registry(cat or catalog(), environ=dict(ENV), session_factory=factory,
                              audit=audit if audit is not None else MemoryAuditSink())
    kw.setdefault("contact_policy", NO_LIMITS)
    kw.setdefault("lease_seconds", 5.0)
    return Dispatcher(factory, registry, **kw)


OFFERS = [{"offer": "renewal_36m", "kind": "renewal", "discount": 20, "term_months": 36, "rank": 1,
           "params": {}, "reason": "healthy", "rule": "extended-term-offer"}]


def record(factory, actions, *, account: str = "acme-001", offers=None, approval: bool = False) -> str:
    """Record a decision planning `actions` [(type, params)] the way the API does; its id."""
    planned = [{"type": t, "params": p, "status": "awaiting_approval" if approval else "ready",
                "reason": "test", "rule": "test-rule"} for t, p in actions]
    result = {"status": "approval_required" if approval else "automatic", "flow": "renewal",
              "ruleset_version": "test", "offers": OFFERS if offers is None else offers, "actions": planned,
              "approval": {"required": approval, "queues": ["csm"] if approval else [], "reasons": []}}
    decision_id, _, _ = DecisionStore(factory).record(
        flow="renewal", version="test", facts={"account": {"id": account}}, context={}, result=result,
        request_hash="0" * 64, api_key_id="k-test")
    return decision_id


def rows(factory, decision_id=None) -> list[Outbox]:
    from sqlalchemy import select
    with factory() as s:
        q = select(Outbox).order_by(Outbox.decision_id, Outbox.step)
        if decision_id:
            q = q.where(Outbox.decision_id == decision_id)
        return list(s.scalars(q))


def events(factory, decision_id) -> list[tuple[str, dict]]:
    from sqlalchemy import select

    from adapters.store.models import DecisionEvent
    with factory() as s:
        return [(e.type, e.payload) for e in s.scalars(select(DecisionEvent).where(
            DecisionEvent.decision_id == decision_id).order_by(DecisionEvent.id))]


def make_due(factory) -> None:
    """Time travel: every waiting row (retry backoff, deferred, pending compensation) is due now."""
    past = now() - timedelta(seconds=1)
    with transaction(factory) as s:
        s.execute(update(Outbox).where(Outbox.state.in_(("ready", "retry"))).values(next_attempt_at=past))
        s.execute(update(Outbox).where(Outbox.state == "done", Outbox.next_attempt_at.is_not(None))
                  .values(next_attempt_at=past))
