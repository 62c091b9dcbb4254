"""Fixtures: a fake tool on a loopback port, catalogs pointing at it, and sandbox databases on
SQLite and PostgreSQL (PostgreSQL skips outside CI when absent, fails under CI=true)."""
from __future__ import annotations

import pytest

from adapters.store.db import make_engine, migrate, sessions
from adapters.tools.base import MemoryAuditSink
from adapters.tools.catalog import parse_catalog
from tests.servers import postgres_schema_url

from .fake_tool import Server

TOKEN = "s3cr3t-token-value"

CATALOG = """\
version: 1
defaults:
  adapter: sandbox
  timeout_seconds: 0.5
  retry: {{max_attempts: 4, base_backoff_seconds: 0.1, max_backoff_seconds: 2}}
  rate_limit: {{per_second: 3, burst: 6}}
tools:
  crm:
    adapter: {adapter}
    base_url: {url}
    credential: {{env: TEST_CRM_TOKEN}}
    actions:
      create_quote: {{path: /quotes, compensation: void_quote}}
      void_quote: {{path: "/quotes/{{ref}}/void"}}
      update_opportunity: {{method: PATCH, path: "/accounts/{{account}}/opportunity"}}
  billing:
    adapter: {adapter}
    base_url: {url}
    credential: {{env: TEST_BILLING_TOKEN}}
    actions:
      fetch_contract: {{method: GET, path: "/accounts/{{account}}/contract"}}
  marketing:
    adapter: {adapter}
    base_url: {url}
    actions:
      schedule_outreach: {{path: /outreach-tasks, compensation: cancel_outreach}}
      cancel_outreach: {{path: "/outreach-tasks/{{ref}}/cancel"}}
  notifications:
    adapter: {adapter}
    base_url: {url}
    actions:
      alert_csm: {{path: /alerts}}
      notify: {{path: /messages}}
  cases:
    adapter: {adapter}
    base_url: {url}
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

ENV = {"TEST_CRM_TOKEN": TOKEN, "TEST_BILLING_TOKEN": "billing-" + TOKEN}


def catalog_for(url: str = "http://127.0.0.1:9", adapter: str = "http"):
    return parse_catalog(CATALOG.format(url=url, adapter=adapter), "test-tools.yaml")


@pytest.fixture()
def server():
    with Server() as s:
        yield s


@pytest.fixture()
def audit():
    return MemoryAuditSink()


@pytest.fixture()
def http_catalog(server):
    return catalog_for(server.url)


@pytest.fixture()
def crm(http_catalog, audit):
    from adapters.tools.http import HttpAdapter
    a = HttpAdapter(http_catalog.tools["crm"], audit, environ=dict(ENV))
    yield a
    a.close()


@pytest.fixture()
def sqlite_factory(tmp_path):
    url = f"sqlite:///{tmp_path / 'postsale.db'}"
    migrate(url)
    engine = make_engine(url)
    yield sessions(engine)
    engine.dispose()
