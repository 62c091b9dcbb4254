"""Human in the loop over the API, on SQLite and PostgreSQL: held decisions, approve (exactly
once), reject (with a comment), expiry and escalation, discount edits within the guardrails."""
from __future__ import annotations

import io
import threading
from argparse import Namespace
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from adapters.store.approvals import ApprovalStore, escalation_target
from cli.approvals import build_store, cmd_expire, cmd_list
from adapters.store.db import now
from adapters.store.models import Approval, AuditEntry, DecisionEvent, Outbox

from .conftest import auth, deal_desk, decide, held, high_risk, key_id


def outbox(factory, decision_id) -> list[Outbox]:
    with factory() as s:
        return s.scalars(select(Outbox).where(Outbox.decision_id == decision_id).order_by(Outbox.step)).all()


def events(factory, decision_id, prefix="approval.") -> list[DecisionEvent]:
    with factory() as s:
        return s.scalars(select(DecisionEvent).where(DecisionEvent.decision_id == decision_id,
                                                     DecisionEvent.type.like(prefix + "%"))
                         .order_by(DecisionEvent.id)).all()


def audits(factory, subject) -> list[AuditEntry]:
    with factory() as s:
        return s.scalars(select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.id)).all()


def overdue(factory, approval_id, hours=1) -> None:
    with factory() as s, s.begin():
        s.execute(update(Approval).where(Approval.id == approval_id).values(expires_at=now() - timedelta(hours=hours)))


def approve(client, approval_id, body=None, key="k-approve"):
    return client.post(f"/v1/approvals/{approval_id}/approve", json=body, headers=auth(key))


def reject(client, approval_id, body=None, key="k-approve"):
    return client.post(f"/v1/approvals/{approval_id}/reject", json=body, headers=auth(key))


# ---- a held decision ----
def test_high_risk_large_account_is_held_for_the_csm(client, factory):
    d, item = held(client, high_risk())
    assert item["state"] == "pending" and item["queues"] == ["csm"]
    assert item["requested_by"] == key_id("k-decide") and item["account_id"] == "acme-001"
    assert "Churn risk 0.82" in item["reasons"][0]["reason"]
    assert [a["type"] for a in item["proposed"]["actions"]] == ["alert_csm", "create_quote", "schedule_outreach"]
    assert [r.state for r in outbox(factory, d["id"])] == ["awaiting_approval"] * 3

    one = client.get(f"/v1/approvals/{item['id']}", headers=auth())
    assert one.status_code == 200
    body = one.json
    assert body["decision"]["explanation"]["fired"][0] == "csm-review-high-risk"
    assert body["decision"]["explanation"]["escalations"][0]["queue"] == "csm"
    assert [o["state"] for o in body["outbox"]] == ["awaiting_approval"] * 3
    assert body["events"] == [] and body["discount_limits"] == {"addon_seats": 0, "renewal_24m": 25}


def test_listing_by_status_and_queue_newest_first(client):
    ids = [held(client, high_risk(f"hr-{i}"))[1]["id"] for i in range(3)]
    desk = held(client, deal_desk())[1]["id"]
    page = client.get("/v1/approvals?status=pending&queue=csm&limit=2", headers=auth()).json
    assert [i["id"] for i in page["items"]] == [ids[2], ids[1]] and page["next"] == ids[1]
    rest = client.get(f"/v1/approvals?status=pending&queue=csm&limit=2&after={page['next']}", headers=auth()).json
    assert [i["id"] for i in rest["items"]] == [ids[0]] and rest["next"] is None
    assert [i["id"] for i in client.get("/v1/approvals?queue=deal_desk", headers=auth()).json["items"]] == [desk]
    assert client.get("/v1/approvals?queue=deal", headers=auth()).json["items"] == []  # whole names only
    assert client.get("/v1/approvals?status=approved", headers=auth()).json["items"] == []
    assert approve(client, ids[0]).status_code == 200
    assert [i["id"] for i in client.get("/v1/approvals?status=approved", headers=auth()).json["items"]] == [ids[0]]
    assert len(client.get("/v1/approvals?status=all", headers=auth()).json["items"]) == 4
    assert len(client.get("/v1/approvals", headers=auth()).json["items"]) == 3  # pending by default

    r = client.get("/v1/approvals?status=maybe&limit=0&after=x&surprise=1", headers=auth())
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert [e["path"] for e in r.json["errors"]] == ["query.after", "query.limit", "query.status", "query.surprise"]


# ---- approve ----
def released(settings) -> str:
    """What an approved action is once the approval answers: run inline within the budget (the
    embedded default), or ready for the workers (PostgreSQL's default budget is 0)."""
    return "done" if settings.inline_dispatch_budget_ms > 0 else "ready"


def test_approve_releases_the_actions_exactly_once(client, factory, settings):
    d, item = held(client, high_risk())
    r = approve(client, item["id"], {"comment": "spoke to the CSM, go ahead"})
    assert r.status_code == 200, r.json
    assert r.json["state"] == "approved" and r.json["decided_by"] == key_id("k-approve")
    assert r.json["comment"] == "spoke to the CSM, go ahead" and r.json["decided_at"]
    rows = outbox(factory, d["id"])
    assert [x.state for x in rows] == [released(settings)] * 3
    assert [o["state"] for o in r.json["outbox"]] == [released(settings)] * 3
    assert all(x.updated_at is not None and (x.state != "ready" or x.next_attempt_at is not None) for x in rows)

    again = approve(client, item["id"], key="k-approve-2")
    assert again.status_code == 409 and again.json["state"] == "approved"
    assert again.mimetype == "application/problem+json" and key_id("k-approve") in again.json["detail"]
    assert reject(client, item["id"], {"comment": "too late"}).status_code == 409

    (ev,) = events(factory, d["id"])
    assert ev.type == "approval.approved" and ev.actor == key_id("k-approve")
    assert ev.payload["comment"] == "spoke to the CSM, go ahead"
    assert [a["state"] for a in ev.payload["actions"]] == ["ready"] * 3
    (entry,) = audits(factory, item["id"])
    assert entry.kind == "approval.approved" and entry.detail["decision_id"] == d["id"]
    # the decision's own record shows the verdict
    record = client.get(f"/v1/decisions/{d['id']}", headers=auth("k-read")).json
    kinds = [e["type"] for e in record["events"]]
    assert kinds[:2] == ["decided", "approval.approved"]
    assert kinds[2:] == (["action.started", "action.done"] * 3 if released(settings) == "done" else [])


def test_two_approvers_at_once_one_wins(app, factory, settings):
    d, item = held(app.test_client(), high_risk())
    barrier = threading.Barrier(2)
    statuses = []

    def go(key):
        c = app.test_client()
        barrier.wait(timeout=10)
        statuses.append(approve(c, item["id"], key=key).status_code)

    threads = [threading.Thread(target=go, args=(k,)) for k in ("k-approve", "k-approve-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [200, 409]
    assert len(events(factory, d["id"])) == 1
    assert [x.state for x in outbox(factory, d["id"])] == [released(settings)] * 3


def test_store_approves_once_under_many_threads(app, factory):
    d, item = held(app.test_client(), high_risk())
    store = ApprovalStore(factory, notify=False)
    barrier = threading.Barrier(6)
    outcomes = []

    def go(i):
        barrier.wait(timeout=10)
        try:
            store.approve(item["id"], f"approver-{i}")
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["NotPending"] * 5 + ["ok"]
    assert len(events(factory, d["id"])) == 1 and len(audits(factory, item["id"])) == 1


def test_the_key_that_asked_cannot_decide(client, factory):
    d, item = held(client, high_risk(), key="k-decide-approve")
    for r in (approve(client, item["id"], key="k-decide-approve"),
              reject(client, item["id"], {"comment": "mine"}, key="k-decide-approve")):
        assert r.status_code == 403 and r.mimetype == "application/problem+json"
        assert "asked for this decision" in r.json["detail"]
    assert client.get(f"/v1/approvals/{item['id']}", headers=auth()).json["state"] == "pending"
    assert events(factory, d["id"]) == []
    assert approve(client, item["id"]).status_code == 200  # another approver may


# ---- reject ----
def test_reject_needs_a_comment_and_cancels(client, factory):
    d, item = held(client, high_risk())
    for body in (None, {}, {"comment": "   "}):
        r = reject(client, item["id"], body)
        assert r.status_code == 400 and r.mimetype == "application/problem+json"
        assert [e["path"] for e in r.json["errors"]] == ["$.comment"]
    r = reject(client, item["id"], {"comment": "customer is churning anyway", "edits": {}})
    assert r.status_code == 400 and [e["path"] for e in r.json["errors"]] == ["$.edits"]
    assert events(factory, d["id"]) == []

    r = reject(client, item["id"], {"comment": "customer is churning anyway"})
    assert r.status_code == 200 and r.json["state"] == "rejected" and r.json["comment"] == "customer is churning anyway"
    assert [x.state for x in outbox(factory, d["id"])] == ["cancelled"] * 3
    (ev,) = events(factory, d["id"])
    assert ev.type == "approval.rejected" and ev.payload["comment"] == "customer is churning anyway"
    assert [e.kind for e in audits(factory, item["id"])] == ["approval.rejected"]
    r = approve(client, item["id"])
    assert r.status_code == 409 and r.json["state"] == "rejected"
    assert [x.state for x in outbox(factory, d["id"])] == ["cancelled"] * 3


# ---- expiry ----
def test_expiry_cancels_escalates_and_blocks_approval(client, factory):
    d, item = held(client, high_risk())
    keep = held(client, high_risk("acme-keep"))[1]
    overdue(factory, item["id"])
    # before any sweep, an overdue item already reads and lists as expired
    assert client.get(f"/v1/approvals/{item['id']}", headers=auth()).json["state"] == "expired"
    assert [i["id"] for i in client.get("/v1/approvals?status=pending", headers=auth()).json["items"]] == [keep["id"]]
    assert [i["id"] for i in client.get("/v1/approvals?status=expired", headers=auth()).json["items"]] == [item["id"]]

    store = ApprovalStore(factory, escalate_to="csm_lead", notify=True)
    done = store.expire_due()
    assert [x["id"] for x in done] == [item["id"]] and done[0]["escalation"]["queue"] == "csm_lead"
    assert store.expire_due() == []  # once
    rows = outbox(factory, d["id"])
    assert [(x.step, x.action_type, x.state) for x in rows] == [
        (0, "notify", "ready"), (1, "alert_csm", "cancelled"), (2, "create_quote", "cancelled"),
        (3, "schedule_outreach", "cancelled")]
    note = rows[0]
    assert note.params["queue"] == "csm_lead" and note.params["approval"] == item["id"]
    assert len(note.idempotency_key) == 40 and note.idempotency_key not in {x.idempotency_key for x in rows[1:]}
    # the dispatcher takes it although the plan's steps were cancelled (it depends on none of them)
    claims = pytest.importorskip("adapters.dispatch.claims")
    with factory() as s:
        assert s.scalars(claims.due_query(now(), decision_id=d["id"], limit=10)).all() == [note.id]
    expired, escalated = events(factory, d["id"])
    assert expired.type == "approval.expired" and expired.actor == "expiry"
    assert [a["state"] for a in expired.payload["actions"]] == ["cancelled"] * 3
    assert escalated.type == "approval.escalated" and escalated.payload["queue"] == "csm_lead"
    assert escalated.payload["from_queues"] == ["csm"] and escalated.payload["notify"]["type"] == "notify"
    assert [e.kind for e in audits(factory, item["id"])] == ["approval.expired", "approval.escalated"]

    r = approve(client, item["id"])
    assert r.status_code == 409 and r.json["state"] == "expired"
    assert client.get(f"/v1/approvals/{keep['id']}", headers=auth()).json["state"] == "pending"


def test_approving_an_overdue_item_expires_it_first(client, factory):
    d, item = held(client, high_risk())
    overdue(factory, item["id"])
    r = approve(client, item["id"])
    assert r.status_code == 409 and r.json["state"] == "expired" and "expired at" in r.json["detail"]
    assert [e.type for e in events(factory, d["id"])] == ["approval.expired", "approval.escalated"]
    assert {x.state for x in outbox(factory, d["id"]) if x.action_type != "notify"} == {"cancelled"}
    assert reject(client, item["id"], {"comment": "late"}).json["state"] == "expired"
    assert len(events(factory, d["id"])) == 2


def test_escalation_can_be_turned_off_or_have_no_message(client, factory):
    d1, a1 = held(client, high_risk("quiet-1"))
    d2, a2 = held(client, high_risk("quiet-2"))
    overdue(factory, a1["id"])
    ApprovalStore(factory, escalate_to=None).expire_due()
    assert [e.type for e in events(factory, d1["id"])] == ["approval.expired"]
    overdue(factory, a2["id"])
    ApprovalStore(factory, escalate_to="revops", notify=False).expire_due()
    assert [e.type for e in events(factory, d2["id"])] == ["approval.expired", "approval.escalated"]
    assert events(factory, d2["id"])[1].payload["notify"] is None
    assert all(x.action_type != "notify" for x in outbox(factory, d2["id"]))


def test_expire_command(client, factory, settings):
    d, item = held(client, high_risk())
    overdue(factory, item["id"])
    env = {"DATABASE_URL": settings.database_url, "POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO": "deal_desk_lead"}
    store = build_store(env, factory=factory)
    assert store.escalate_to == "deal_desk_lead"
    assert store.counts() == {"pending": 0, "approved": 0, "rejected": 0, "expired": 1}
    out = io.StringIO()
    assert cmd_list(Namespace(status="expired", queue=None, limit=10, json=False), out=out, store=store) == 0
    assert item["id"] in out.getvalue() and "1 item" in out.getvalue()
    out = io.StringIO()
    assert cmd_expire(Namespace(limit=500, json=False), out=out, store=store) == 0
    assert "escalated to deal_desk_lead" in out.getvalue() and "1 approval expired" in out.getvalue()
    out = io.StringIO()
    assert cmd_expire(Namespace(limit=500, json=True), out=out, store=store) == 0
    assert '"expired": []' in out.getvalue()
    assert escalation_target(environ={"POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO": "none"}) is None
    assert escalation_target(environ={}) == "csm_lead"


# ---- discount edits ----
def test_discount_edit_within_the_cap_goes_out_with_the_quote(client, factory, settings):
    d, item = held(client, deal_desk())
    assert item["queues"] == ["deal_desk"]
    detail = client.get(f"/v1/approvals/{item['id']}", headers=auth()).json
    assert detail["discount_limits"]["renewal_36m"] == 20
    r = approve(client, item["id"], {"comment": "18 is enough", "edits": {"offers": {"renewal_36m": {"discount": 18}}}})
    assert r.status_code == 200, r.json
    assert r.json["edits"] == {"offers": {"renewal_36m": {"discount": 18, "from": 20, "limit": 20}}}
    quote, outreach = outbox(factory, d["id"])
    assert quote.action_type == "create_quote" and quote.params == {"offer": "renewal_36m", "account": "acme-002",
                                                                     "discount": 18}
    assert quote.state == outreach.state == released(settings) and "discount" not in outreach.params
    (ev,) = events(factory, d["id"])
    assert ev.payload["edits"]["offers"]["renewal_36m"]["discount"] == 18
    assert audits(factory, item["id"])[0].detail["edits"] == r.json["edits"]


def test_discount_edit_up_to_the_cap_exactly(client, factory):
    d, item = held(client, deal_desk(requested=30))
    r = approve(client, item["id"], {"edits": {"offers": {"renewal_36m": {"discount": 20.0}}}})
    assert r.status_code == 200 and outbox(factory, d["id"])[0].params["discount"] == 20


def test_discount_edit_above_the_cap_is_refused_and_nothing_changes(client, factory):
    d, item = held(client, deal_desk())
    r = approve(client, item["id"], {"edits": {"offers": {"renewal_36m": {"discount": 21}}}})
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    (err,) = r.json["errors"]
    assert err["path"] == "$.edits.offers.renewal_36m.discount" and err["limit"] == 20 and "20%" in err["message"]
    r = approve(client, item["id"], {"edits": {"offers": {"renewal_12m": {"discount": 5},
                                                          "addon_seats": {"discount": 5}}}})
    assert r.status_code == 422
    assert [e["path"] for e in r.json["errors"]] == ["$.edits.offers.addon_seats.discount", "$.edits.offers.renewal_12m"]
    assert "proposes no offer 'renewal_12m'" in r.json["errors"][1]["message"]

    r = approve(client, item["id"], {"edits": {"offers": {"Bad": {"discount": "x", "y": 1}, "ok": {"discount": -1}}},
                                     "surprise": True})
    assert r.status_code == 400
    assert r.json["errors"] == [
        {"path": "$.edits.offers.Bad", "message": "not an offer code (lowercase letters, digits and _)"},
        {"path": "$.edits.offers.Bad.discount", "message": "Not a valid number."},
        {"path": "$.edits.offers.Bad.y", "message": "Unknown field."},
        {"path": "$.edits.offers.ok.discount",
         "message": "Must be greater than or equal to 0 and less than or equal to 100."},
        {"path": "$.surprise", "message": "Unknown field."}]
    assert approve(client, item["id"], {"edits": {"offers": {}}}).status_code == 400

    after = client.get(f"/v1/approvals/{item['id']}", headers=auth()).json
    assert after["state"] == "pending" and after["edits"] is None and after["events"] == []
    assert [(x.state, x.params) for x in outbox(factory, d["id"])] == [
        ("awaiting_approval", {"offer": "renewal_36m", "account": "acme-002"}),
        ("awaiting_approval", {"channel": "call", "account": "acme-002"})]
    assert audits(factory, item["id"]) == []


def test_edits_meet_the_live_policy_too(client, factory, rules_dir):
    """Caps lowered after the decision: the edit must meet the lower of the two versions."""
    d, item = held(client, deal_desk())
    src = rules_dir / "renewal" / "pricing_quote.yaml"
    src.write_text(src.read_text().replace("- [mid_market, \">= 24\", 20]", "- [mid_market, \">= 24\", 16]"))
    rt = client.application.extensions["postsale"]
    rt.reload(actor="test")
    assert rt.deciders["renewal"].flow.version != d["ruleset_version"]
    assert client.get(f"/v1/approvals/{item['id']}", headers=auth()).json["discount_limits"]["renewal_36m"] == 16
    r = approve(client, item["id"], {"edits": {"offers": {"renewal_36m": {"discount": 18}}}})
    assert r.status_code == 422 and r.json["errors"][0]["limit"] == 16
    assert approve(client, item["id"], {"edits": {"offers": {"renewal_36m": {"discount": 16}}}}).status_code == 200


# ---- the rest of the contract ----
def test_auth_and_unknown_items(client):
    _, item = held(client, high_risk())
    assert client.get("/v1/approvals").status_code == 401
    for key in ("k-decide", "k-read"):
        r = client.get("/v1/approvals", headers=auth(key))
        assert r.status_code == 403 and "approve" in r.json["detail"]
        assert approve(client, item["id"], key=key).status_code == 403
    for bad in ("0" * 32, "nope", "x" * 500):
        for r in (client.get(f"/v1/approvals/{bad}", headers=auth()), approve(client, bad),
                  reject(client, bad, {"comment": "c"})):
            assert r.status_code == 404 and r.mimetype == "application/problem+json"
    r = client.post(f"/v1/approvals/{item['id']}/approve", data="{nope", content_type="application/json",
                    headers=auth())
    assert r.status_code == 400 and r.json["errors"][0]["path"] == "$"
    r = client.post(f"/v1/approvals/{item['id']}/approve", json=[1], headers=auth())
    assert r.status_code == 400
    assert client.get(f"/v1/approvals/{item['id']}", headers=auth()).json["state"] == "pending"


def test_documented_in_openapi(client):
    spec = client.get("/openapi.json").json
    paths = spec["paths"]
    assert set(paths["/v1/approvals"]) == {"get"} and set(paths["/v1/approvals/{approval_id}"]) == {"get"}
    approve_op = paths["/v1/approvals/{approval_id}/approve"]["post"]
    assert {"200", "403", "409", "422"} <= set(map(str, approve_op["responses"]))
    assert "400" in map(str, paths["/v1/approvals/{approval_id}/reject"]["post"]["responses"])
    assert {"ApproveRequest", "RejectRequest", "ApprovalItem", "ApprovalPage"} <= set(spec["components"]["schemas"])


def test_approved_decision_with_no_held_actions(client, factory):
    """An approval whose decision planned nothing still records its verdict."""
    d = decide(client, high_risk())
    with factory() as s, s.begin():
        s.execute(text("UPDATE outbox SET state = 'cancelled' WHERE decision_id = :d"), {"d": d["id"]})
    item = [i for i in client.get("/v1/approvals", headers=auth()).json["items"] if i["decision_id"] == d["id"]][0]
    r = approve(client, item["id"])
    assert r.status_code == 200 and events(factory, d["id"])[0].payload["actions"] == []
