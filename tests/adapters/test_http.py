"""The HTTP adapter against a real HTTP server on a loopback port."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from adapters.tools.base import (ActionNotGranted, NoCompensation, ToolBadResponse, ToolError, ToolMisconfigured,
                                 ToolRateLimited, ToolRejected, ToolTimeout, ToolUnavailable, compensation_key,
                                 parse_retry_after)
from adapters.tools.http import HttpAdapter

from .conftest import ENV, TOKEN, catalog_for
from .fake_tool import closed_port

PARAMS = {"account": "acme-001", "offer": "renewal_36m", "contact_email": "jane.doe@example.com"}


def test_request_mapping_auth_and_idempotency_key(crm, server):
    result = crm.perform("create_quote", PARAMS, "key-1")
    assert result.reference == "ext-1" and result.status == 201 and not result.replayed
    assert result.data == {"id": "ext-1", "status": "open"}
    [seen] = server.app.seen
    assert seen["method"] == "POST" and seen["path"] == "/quotes"
    assert seen["idempotency_key"] == "key-1"
    assert seen["authorization"] == f"Bearer {TOKEN}"
    assert seen["content_type"] == "application/json"
    assert seen["body"] == PARAMS


def test_path_placeholders_query_and_methods(http_catalog, server, audit):
    billing = HttpAdapter(http_catalog.tools["billing"], audit, environ=dict(ENV))
    crm = HttpAdapter(http_catalog.tools["crm"], audit, environ=dict(ENV))
    try:
        billing.perform("fetch_contract", {"account": "acme/001 x", "as_of": "2025-01-01"}, "key-g")
        crm.perform("update_opportunity", {"account": "acme-001", "stage": "negotiation"}, "key-p")
    finally:
        billing.close()
        crm.close()
    get, patch = server.app.seen
    assert get["method"] == "GET" and get["path"] == "/accounts/acme/001 x/contract"  # quoted on the wire
    assert get["query"] == "as_of=2025-01-01" and get["body"] is None
    assert get["authorization"] == f"Bearer billing-{TOKEN}"
    assert patch["method"] == "PATCH" and patch["path"] == "/accounts/acme-001/opportunity"
    assert patch["body"] == {"account": "acme-001", "stage": "negotiation"}


def test_request_for_quotes_path_values(crm):
    req = crm.request_for(crm.spec.actions["update_opportunity"], {"account": "a/b?c"}, "k", None)
    assert str(req.url).endswith("/accounts/a%2Fb%3Fc/opportunity")
    assert "Authorization" not in req.headers  # added per call, never part of the mapping
    with pytest.raises(ToolRejected, match="params.account"):
        crm.request_for(crm.spec.actions["update_opportunity"], {}, "k", None)


def test_compensation_uses_its_own_key_and_the_reference(crm, server):
    done = crm.perform("create_quote", PARAMS, "key-1")
    undo = crm.compensate("create_quote", done.reference, compensation_key("key-1"))
    assert undo.action == "void_quote"
    assert server.app.seen[1]["path"] == "/quotes/ext-1/void"
    assert server.app.seen[1]["idempotency_key"] == compensation_key("key-1") != "key-1"


def test_no_compensation_declared(http_catalog, server, audit):
    notifications = HttpAdapter(http_catalog.tools["notifications"], audit, environ={})
    try:
        with pytest.raises(NoCompensation) as e:
            notifications.compensate("alert_csm", "ext-1", "key-c")
    finally:
        notifications.close()
    assert not e.value.retryable and server.app.seen == []


def test_slow_answer_within_the_timeout_succeeds(crm, server):
    server.app.script = [("slow", 0.2)]
    assert crm.perform("create_quote", PARAMS, "key-1").reference == "ext-1"


def test_no_answer_is_a_timeout_and_the_retry_carries_the_same_key(crm, server):
    server.app.script = [("effect_then_hang",)]
    started = time.monotonic()
    with pytest.raises(ToolTimeout) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert time.monotonic() - started < 2
    assert e.value.retryable and e.value.phase == "read" and e.value.tool == "crm"
    # the dispatcher retries the same planned action: same key, the tool answers from its record
    again = crm.perform("create_quote", PARAMS, "key-1")
    assert again.replayed and again.reference == "ext-1" and again.status == 200
    assert server.app.keys == ["key-1", "key-1"]
    assert server.app.side_effects == 1  # no side effect twice


def test_hang_is_a_timeout(crm, server):
    server.app.script = [("hang",)]
    with pytest.raises(ToolTimeout):
        crm.perform("create_quote", PARAMS, "key-1")


def test_500_is_unavailable_and_retryable_then_the_retry_succeeds(crm, server):
    server.app.script = [("status", 500, {}, {"message": "boom"})]
    with pytest.raises(ToolUnavailable) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retryable and e.value.status == 500 and e.value.retry_after is None
    assert crm.perform("create_quote", PARAMS, "key-1").reference == "ext-1"
    assert server.app.keys == ["key-1", "key-1"] and server.app.side_effects == 1


def test_503_with_retry_after(crm, server):
    server.app.script = [("status", 503, {"Retry-After": "7"}, "")]
    with pytest.raises(ToolUnavailable) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retry_after == 7


def test_429_retry_after_seconds(crm, server):
    server.app.script = [("status", 429, {"Retry-After": "3"}, {"message": "slow down"})]
    with pytest.raises(ToolRateLimited) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retryable and e.value.retry_after == 3 and e.value.status == 429


def test_429_retry_after_http_date(crm, server):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    server.app.script = [("status", 429, {"Retry-After": when}, "")]
    with pytest.raises(ToolRateLimited) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert 27 <= e.value.retry_after <= 30


def test_429_without_retry_after(crm, server):
    server.app.script = [("status", 429, {}, "")]
    with pytest.raises(ToolRateLimited) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retry_after is None


@pytest.mark.parametrize("code,body,reason", [
    (400, {"message": "offer unknown"}, "offer unknown"),
    (404, {"error": {"message": "no such account"}}, "no such account"),
    (422, "plain text refusal", "plain text refusal"),
    (403, {"detail": "token lacks scope quotes:write"}, "token lacks scope quotes:write"),
])
def test_4xx_is_rejected_and_not_retryable(crm, server, code, body, reason):
    server.app.script = [("status", code, {}, body)]
    with pytest.raises(ToolRejected) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert not e.value.retryable and e.value.status == code and e.value.reason == reason


@pytest.mark.parametrize("code,cls", [(408, ToolTimeout), (409, ToolUnavailable), (425, ToolUnavailable)])
def test_4xx_that_mean_try_again(crm, server, code, cls):
    server.app.script = [("status", code, {}, "")]
    with pytest.raises(cls) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retryable


def test_redirect_is_not_followed(crm, server):
    server.app.script = [("status", 301, {"Location": "http://elsewhere.example/"}, "")]
    with pytest.raises(ToolRejected) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.status == 301 and len(server.app.seen) == 1


def test_connection_reset(crm, server):
    server.app.script = [("reset",)]
    with pytest.raises(ToolUnavailable) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert e.value.retryable and e.value.status is None


def test_connection_refused(audit):
    catalog = catalog_for(f"http://127.0.0.1:{closed_port()}")
    crm = HttpAdapter(catalog.tools["crm"], audit, environ=dict(ENV))
    try:
        with pytest.raises(ToolUnavailable, match="cannot connect") as e:
            crm.perform("create_quote", PARAMS, "key-1")
    finally:
        crm.close()
    assert e.value.retryable and audit.records[-1].outcome == "tool_unavailable"


def test_invalid_json(crm, server):
    server.app.script = [("badjson",)]
    with pytest.raises(ToolBadResponse) as e:
        crm.perform("create_quote", PARAMS, "key-1")
    assert isinstance(e.value, ToolUnavailable) and e.value.retryable and e.value.status == 200


def test_json_that_is_not_an_object(crm, server):
    server.app.script = [("status", 200, {}, [1, 2])]
    with pytest.raises(ToolBadResponse):
        crm.perform("create_quote", PARAMS, "key-1")


def test_empty_2xx_is_fine(crm, server):
    server.app.script = [("status", 204, {}, None)]
    result = crm.perform("create_quote", PARAMS, "key-1")
    assert result.reference is None and result.data == {} and result.status == 204


def test_least_privilege_refuses_before_any_call(crm, server, audit):
    with pytest.raises(ActionNotGranted) as e:
        crm.perform("open_case", {"team": "finance"}, "key-1")
    assert not e.value.retryable and "open_case" in str(e.value)
    assert server.app.seen == []
    assert audit.records[-1].outcome == "action_not_granted"


def test_missing_credential_refuses_before_any_call(http_catalog, server, audit):
    crm = HttpAdapter(http_catalog.tools["crm"], audit, environ={})
    try:
        with pytest.raises(ToolMisconfigured, match="TEST_CRM_TOKEN") as e:
            crm.perform("create_quote", PARAMS, "key-1")
    finally:
        crm.close()
    assert not e.value.retryable and server.app.seen == []


def test_credential_from_a_file_read_per_call(server, tmp_path, audit):
    secret = tmp_path / "crm.token"
    secret.write_text("file-token-1\n")
    from dataclasses import replace
    from adapters.tools.catalog import Credential
    spec = replace(catalog_for(server.url).tools["crm"], credential=Credential(file=str(secret)))
    crm = HttpAdapter(spec, audit, environ={})
    try:
        crm.perform("create_quote", PARAMS, "key-1")
        secret.write_text("file-token-2\n")  # rotated
        crm.perform("create_quote", PARAMS, "key-2")
    finally:
        crm.close()
    assert [r["authorization"] for r in server.app.seen] == ["Bearer file-token-1", "Bearer file-token-2"]


def test_bad_idempotency_key_is_a_programming_error(crm, server):
    for bad in ("", "has space", "x" * 256, None):
        with pytest.raises(ValueError):
            crm.perform("create_quote", PARAMS, bad)
    assert server.app.seen == []


def test_audit_records_every_call_without_secrets_or_params(crm, server, audit):
    server.app.script = [("status", 500, {}, {"message": "jane.doe@example.com exploded"})]
    with pytest.raises(ToolUnavailable):
        crm.perform("create_quote", PARAMS, "key-1")
    crm.perform("create_quote", PARAMS, "key-1")
    crm.perform("create_quote", PARAMS, "key-1")
    with pytest.raises(ActionNotGranted):
        crm.perform("notify", PARAMS, "key-2")
    outcomes = [(r.action, r.idempotency_key, r.outcome, r.status) for r in audit.records]
    assert outcomes == [("create_quote", "key-1", "tool_unavailable", 500), ("create_quote", "key-1", "ok", 201),
                        ("create_quote", "key-1", "replayed", 200), ("notify", "key-2", "action_not_granted", None)]
    assert all(r.adapter == "http" and r.tool == "crm" and r.duration_ms >= 0 for r in audit.records)
    dumped = repr([r.detail() for r in audit.records])
    for forbidden in (TOKEN, "jane.doe", "renewal_36m", "acme-001", "Bearer"):
        assert forbidden not in dumped


def test_policy_from_the_catalog(crm):
    assert crm.timeout == 0.5
    assert (crm.retry.max_attempts, crm.retry.base_backoff_seconds, crm.retry.max_backoff_seconds) == (4, 0.1, 2)
    assert (crm.rate_limit.per_second, crm.rate_limit.burst) == (3, 6)
    assert [crm.retry.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2]
    assert crm.retry.backoff(1, retry_after=5) == 5
    assert crm.retry.backoff(3, jitter=0.5) == 0.2
    assert crm.compensation_for("create_quote") == "void_quote"
    assert crm.compensation_for("update_opportunity") is None


def test_errors_share_one_root():
    for cls in (ToolTimeout, ToolUnavailable, ToolBadResponse, ToolRateLimited, ToolRejected, ActionNotGranted,
                NoCompensation, ToolMisconfigured):
        assert issubclass(cls, ToolError)
    assert {c.__name__ for c in (ToolTimeout, ToolUnavailable, ToolBadResponse, ToolRateLimited)
            if c.retryable} == {"ToolTimeout", "ToolUnavailable", "ToolBadResponse", "ToolRateLimited"}
    assert not any(c.retryable for c in (ToolRejected, ActionNotGranted, NoCompensation, ToolMisconfigured))


def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 0 ", now) == 0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0  # in the past: now
    for junk in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(junk, now) is None
