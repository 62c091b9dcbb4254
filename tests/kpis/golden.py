"""A fixed book of decisions, approvals, outbox rows and outcomes whose KPIs were worked out by
hand (expected_kpis.json; the arithmetic is in docs/kpis.md's worked example)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from adapters.store.db import transaction
from adapters.store.models import Approval, Decision, Outbox
from adapters.store.outcomes import OutcomeStore


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _offer(code, kind):
    return {"offer": code, "kind": kind, "discount": 0, "rank": 1}


CLAMP = {"guardrail": "discount-cap", "offer": "renewal_36m", "action": "clamp", "reason": "clamped"}
BLOCK = {"guardrail": "premium-support-eligibility", "offer": "premium_support", "action": "block", "reason": "no"}
LOW = {"guardrail": "score-confidence", "action": "approval", "reason": "low confidence"}

# id, flow, version, segment, status, created_at, signal_at, newest_event_at, trigger, latency_ms, cpu_ms,
# offers, adjustments, blocked
DECISIONS = [
    ("d1", "renewal", "v1", "mid_market", "automatic", "2026-03-02T10:00:00", "2026-03-02T09:00:00",
     "2026-03-02T09:59:00", "renewal_window", 10, 4,
     [_offer("renewal_36m", "renewal"), _offer("addon_seats", "upsell")], [CLAMP], []),
    ("d2", "renewal", "v1", "mid_market", "approval_required", "2026-03-03T12:00:00", None, None, None, 20, 6,
     [_offer("renewal_36m", "renewal")], [{**CLAMP, "approval": "deal_desk"}], []),
    ("d3", "renewal", "v1", "enterprise", "escalated", "2026-03-04T08:00:00", "2026-03-04T07:30:00",
     "2026-03-04T07:58:00", "usage_drop", 30, 8,
     [], [BLOCK, {**BLOCK, "offer": "renewal_36m", "guardrail": "extended-term-health"}],
     [{"offer": "premium_support", "reason": "no"}, {"offer": "renewal_36m", "reason": "no"}]),
    ("d4", "renewal", "v2", "enterprise", "approval_required", "2026-03-10T09:00:00", "2026-03-10T08:00:00",
     "2026-03-10T08:30:00", "renewal_window", 40, 10,
     [_offer("renewal_standard", "renewal"), _offer("premium_support", "upsell")], [LOW], []),
    ("d5", "renewal", "v2", "smb", "automatic", "2026-03-11T10:00:00", None, None, None, 50, None,
     [_offer("addon_seats", "upsell")], [], []),
    ("d6", "expansion", "v9", None, "no_action", "2026-03-12T00:00:00", None, None, None, None, 2, [], [], []),
]

# decision, state, decided_at
APPROVALS = [("d2", "approved", "2026-03-03T14:00:00"), ("d4", "rejected", "2026-03-10T12:00:00")]

# decision: [(action, state)]
OUTBOX = {
    "d1": [("create_quote", "done"), ("schedule_outreach", "dead")],
    "d2": [("create_quote", "done"), ("schedule_outreach", "done")],
    "d3": [("alert_csm", "done")],
    "d4": [("create_quote", "cancelled"), ("schedule_outreach", "cancelled")],
    "d5": [("create_quote", "retry")],
}

OUTCOMES = [
    {"id": "o1", "decision_id": "d1", "type": "renewed", "amount": 84000, "offer": "renewal_36m"},
    {"id": "o2", "decision_id": "d1", "type": "offer_accepted", "offer": "addon_seats"},
    {"id": "o3", "decision_id": "d1", "type": "expanded", "amount": 21000},
    {"id": "o4", "decision_id": "d2", "type": "renewed", "amount": 50000},
    {"id": "o5", "decision_id": "d2", "type": "offer_declined", "offer": "renewal_36m"},   # a renewal: not an upgrade
    {"id": "o6", "decision_id": "d3", "type": "churned"},
    {"id": "o7", "decision_id": "d4", "type": "churned"},
    {"id": "o8", "decision_id": "d4", "type": "offer_declined", "offer": "premium_support"},
    {"id": "o9", "decision_id": "d5", "type": "offer_accepted", "offer": "addon_seats"},
    {"id": "o10", "decision_id": "d5", "type": "offer_accepted", "offer": "addon_seats"},  # the same offer again
    {"id": "o11", "decision_id": "d5", "type": "expanded", "amount": 9000},
    # corrections: the latest outcome of a (decision, type) stands for its amount
    {"id": "o12", "decision_id": "d1", "type": "renewed", "amount": 86000, "occurred_at": "2026-04-02T00:00:00"},
    {"id": "o13", "decision_id": "d5", "type": "expanded", "amount": 9500},  # same instant as o11: the greater id
    {"id": "o14", "decision_id": "d2", "type": "renewed", "amount": 1, "occurred_at": "2026-03-20T00:00:00"},  # older
]


def load(factory, prefix: str = "") -> dict:
    """Insert the book; returns {short id: decision id}. `prefix` keeps ids unique when loaded twice."""
    ids = {short: (prefix + short).ljust(32, "0")[:32] for short, *_ in DECISIONS}
    with transaction(factory) as s:
        for (short, flow, version, segment, status, created, signal, newest, trigger, latency, cpu, offers, adjustments,
             blocked) in DECISIONS:
            result = {"flow": flow, "status": status, "ruleset_version": version, "offers": offers,
                      "adjustments": adjustments, "blocked": blocked, "actions": [], "escalations": [],
                      "approval": {"required": status == "approval_required", "queues": [], "reasons": []}}
            s.add(Decision(id=ids[short], created_at=at(created), flow=flow, ruleset_version=version,
                           account_id=f"acct-{short}", status=status, api_key_id="k", request_hash="0" * 64,
                           facts={}, context={}, result=result, segment=segment, trigger=trigger,
                           signal_at=at(signal) if signal else None, newest_event_at=at(newest) if newest else None,
                           latency_ms=latency, cpu_ms=cpu))
        s.flush()
        for short, state, decided in APPROVALS:
            created = at(next(d[5] for d in DECISIONS if d[0] == short))
            s.add(Approval(id=(prefix + "a" + short).ljust(32, "0")[:32], decision_id=ids[short], state=state,
                           queues=["csm"], reasons=[], proposed={}, requested_by="k", created_at=created,
                           expires_at=created + timedelta(hours=72), decided_by="desk", decided_at=at(decided)))
        for short, rows in OUTBOX.items():
            for step, (action, state) in enumerate(rows, start=1):
                s.add(Outbox(decision_id=ids[short], step=step, action_type=action, params={},
                             idempotency_key=f"{ids[short]}:{step}", state=state,
                             created_at=at(next(d[5] for d in DECISIONS if d[0] == short)), attempts=1))
    items = [{**o, "id": prefix + o["id"], "decision_id": ids[o["decision_id"]],
              "occurred_at": at(o.get("occurred_at", "2026-04-01T00:00:00"))} for o in OUTCOMES]
    OutcomeStore(factory).record(items, [f"$.outcomes[{n}]" for n in range(len(items))], "k")
    return ids
