"""Approval flows end to end: the real server (`python -m cli serve`, gunicorn with two
workers) on a loopback port, over HTTP, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.choice_models import CEILING
from tests.e2e.conftest import Server

from .conftest import deal_desk, high_risk

pytestmark = pytest.mark.integration

KEYS = {"e2e-decide": ["decide", "read"], "e2e-approve": ["approve", "read"], "e2e-approve-2": ["approve"],
        "e2e-both": ["decide", "approve"]}


class ApprovalServer(Server):
    def env(self) -> dict:
        env = super().env()
        env["POSTSALE_API_KEYS"] = json.dumps(KEYS)
        return env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"approvals-{request.param}")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{work / 'postsale.db'}"
    else:
        from tests.servers import postgres_schema_url
        url, drop = postgres_schema_url()
    srv = ApprovalServer(work, url, choice=CEILING)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if drop:
            drop()


def held(server, facts, key="e2e-decide") -> tuple[dict, dict]:
    r = server.post("/v1/decisions", {"facts": facts}, key=key)
    assert r.status == 201 and r.json["status"] == "approval_required", r
    page = server.get("/v1/approvals?status=pending&limit=500", key="e2e-approve")
    assert page.status == 200, page
    (item,) = [i for i in page.json["items"] if i["decision_id"] == r.json["id"]]
    return r.json, item


def account() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def test_deal_desk_edit_and_approve(server):
    d, item = held(server, deal_desk(account()))
    desk = server.get("/v1/approvals?status=pending&queue=deal_desk", key="e2e-approve").json["items"]
    assert item["id"] in [i["id"] for i in desk]
    assert server.get(f"/v1/approvals/{item['id']}", key="e2e-approve").json["discount_limits"]["renewal_36m"] == 20

    over = server.post(f"/v1/approvals/{item['id']}/approve",
                       {"edits": {"offers": {"renewal_36m": {"discount": 25}}}}, key="e2e-approve")
    assert over.status == 422 and over.mimetype == "application/problem+json" and over.json["errors"][0]["limit"] == 20
    ok = server.post(f"/v1/approvals/{item['id']}/approve",
                     {"comment": "18 it is", "edits": {"offers": {"renewal_36m": {"discount": 18}}}}, key="e2e-approve")
    assert ok.status == 200 and ok.json["state"] == "approved", ok
    again = server.post(f"/v1/approvals/{item['id']}/approve", key="e2e-approve-2")
    assert again.status == 409 and again.json["state"] == "approved"

    one = server.get(f"/v1/approvals/{item['id']}", key="e2e-approve").json
    quote = [o for o in one["outbox"] if o["type"] == "create_quote"][0]
    assert quote["params"]["discount"] == 18 and quote["state"] in ("ready", "running", "done")
    assert [e["type"] for e in one["events"]] == ["approval.approved"]
    record = server.get(f"/v1/decisions/{d['id']}", key="e2e-decide").json
    assert [e["type"] for e in record["events"]][:2] == ["decided", "approval.approved"]


def test_reject_self_approval_and_concurrent_approvers(server):
    _, item = held(server, high_risk(account()))
    r = server.post(f"/v1/approvals/{item['id']}/reject", {}, key="e2e-approve")
    assert r.status == 400 and r.json["errors"][0]["path"] == "$.comment"
    r = server.post(f"/v1/approvals/{item['id']}/reject", {"comment": "account is leaving"}, key="e2e-approve")
    assert r.status == 200 and r.json["state"] == "rejected"
    assert {o["state"] for o in server.get(f"/v1/approvals/{item['id']}", key="e2e-approve").json["outbox"]} == \
        {"cancelled"}

    _, mine = held(server, high_risk(account()), key="e2e-both")
    r = server.post(f"/v1/approvals/{mine['id']}/approve", key="e2e-both")
    assert r.status == 403 and r.mimetype == "application/problem+json"

    _, race = held(server, high_risk(account()))
    barrier = threading.Barrier(4)

    def send(key):
        barrier.wait(timeout=10)
        return server.post(f"/v1/approvals/{race['id']}/approve", key=key).status

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, ["e2e-approve", "e2e-approve-2"] * 2))
    assert sorted(statuses) == [200, 409, 409, 409]
    events = server.get(f"/v1/approvals/{race['id']}", key="e2e-approve").json["events"]
    assert [e["type"] for e in events] == ["approval.approved"]
    assert server.errors_logged() == []
