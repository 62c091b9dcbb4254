"""The registry: adapters from the catalog and the environment; adapter_for(action type)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from adapters.store.models import AuditEntry
from adapters.tools.base import ActionNotGranted, MemoryAuditSink, ToolUnavailable
from adapters.tools.http import HttpAdapter
from adapters.tools.registry import build_registry
from adapters.tools.sandbox import SandboxAdapter
from config.settings import SettingsError

from .conftest import ENV, TOKEN, catalog_for


def test_the_shipped_catalog_builds_sandboxes_on_a_fresh_machine(tmp_path):
    from adapters.store.db import migrate
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    registry = build_registry(environ={"DATABASE_URL": url})  # no credentials at all: sandboxes need none
    try:
        assert all(isinstance(a, SandboxAdapter) for a in registry.adapters.values())
        assert registry.adapter_for("create_quote").tool == "crm"
        assert registry.adapter_for("fetch_contract").tool == "billing"
        assert registry.compensation_for("create_quote") == "void_quote"
        result = registry.perform("create_quote", {"account": "acme-001", "offer": "renewal_standard"}, "k1")
        assert result.reference.startswith("Q-")
        described = {d["tool"]: d for d in registry.describe()}
        assert described["crm"]["credential"] == "env CRM_TOKEN" and described["crm"]["base_url"] is None
    finally:
        registry.close()


def test_unknown_action_type():
    registry = build_registry(catalog_for(adapter="sandbox"), environ={}, session_factory=object(),
                              audit=MemoryAuditSink())
    with pytest.raises(ActionNotGranted, match="no tool in test-tools.yaml performs 'refund'"):
        registry.adapter_for("refund")


def test_http_tools_need_their_credentials_at_start():
    with pytest.raises(SettingsError) as e:
        build_registry(catalog_for("http://127.0.0.1:9"), environ={"TEST_CRM_TOKEN": TOKEN}, audit=MemoryAuditSink())
    assert "TEST_BILLING_TOKEN" in str(e.value) and "TEST_CRM_TOKEN" not in str(e.value)
    assert TOKEN not in str(e.value)


def test_environment_overrides_adapter_and_base_url(server):
    env = {**ENV, "POSTSALE_TOOL_CRM_ADAPTER": "http", "POSTSALE_TOOL_CRM_BASE_URL": server.url + "/"}
    audit = MemoryAuditSink()
    registry = build_registry(catalog_for(adapter="sandbox"), environ=env, session_factory=object(), audit=audit)
    try:
        crm = registry.adapter_for("create_quote")
        assert isinstance(crm, HttpAdapter) and crm.spec.base_url == server.url
        assert isinstance(registry.adapter_for("open_case"), SandboxAdapter)
        assert crm.perform("create_quote", {"account": "a"}, "key-1").reference == "ext-1"
        assert server.app.seen[0]["path"] == "/quotes"
    finally:
        registry.close()


@pytest.mark.parametrize("env,needle", [
    ({"POSTSALE_TOOL_CRM_ADAPTER": "grpc"}, "POSTSALE_TOOL_CRM_ADAPTER='grpc'"),
    ({"POSTSALE_TOOL_CRM_BASE_URL": "crm.internal"}, "is not an http:// or https:// URL"),
])
def test_bad_overrides(env, needle):
    with pytest.raises(SettingsError, match=needle.replace("(", r"\(")):
        build_registry(catalog_for(adapter="sandbox"), environ=env, session_factory=object(), audit=MemoryAuditSink())


def test_http_calls_are_audited_in_the_database(server, sqlite_factory):
    registry = build_registry(catalog_for(server.url), environ=dict(ENV), session_factory=sqlite_factory)
    try:
        server.app.script = [("status", 503, {"Retry-After": "2"}, {"message": "jane.doe@example.com"})]
        with pytest.raises(ToolUnavailable):
            registry.perform("create_quote", {"account": "acme-001", "email": "jane.doe@example.com"}, "key-1")
        registry.perform("create_quote", {"account": "acme-001", "email": "jane.doe@example.com"}, "key-1")
    finally:
        registry.close()
    with sqlite_factory() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.kind, r.subject, r.detail["outcome"], r.detail.get("status")) for r in rows] == [
        ("tool.call", "key-1", "tool_unavailable", 503), ("tool.call", "key-1", "ok", 201)]
    assert rows[0].detail["retryable"] is True and rows[1].detail["adapter"] == "http"
    dumped = json.dumps([r.detail for r in rows])
    assert TOKEN not in dumped and "jane.doe" not in dumped and "acme-001" not in dumped


def test_a_failing_audit_sink_never_changes_the_outcome(server, caplog):
    class Broken:
        def record(self, call):
            raise RuntimeError("audit database down")

    registry = build_registry(catalog_for(server.url), environ=dict(ENV), session_factory=object(), audit=Broken())
    try:
        assert registry.perform("create_quote", {"account": "a"}, "key-1").reference == "ext-1"
    finally:
        registry.close()
    assert "audit of crm.create_quote (key key-1) failed" in caplog.text
