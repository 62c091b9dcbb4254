"""Approvals: decisions held for a human, and the verdicts that release or cancel their actions.

An approval item is written with its decision (adapters/store/decisions.py); its outbox rows wait
in `awaiting_approval`. Every verdict here is one transaction holding:

- a conditional transition of the item (`UPDATE ... WHERE state = 'pending' AND expires_at > now`,
  exactly one row or nothing happens), so two approvers, an approver and the expiry sweep, or a
  retried request can never both win;
- the decision's outbox rows: `awaiting_approval` -> `ready` (approve; the dispatcher runs them,
  once) or -> `cancelled` (reject, expiry); an approver's discount edit is written into the
  params of the actions that name the offer;
- a `decision_events` row (`approval.approved` / `approval.rejected` / `approval.expired`, plus
  `approval.escalated` on expiry) and an `audit_log` entry.

A pending item past its `expires_at` counts as expired everywhere (listing, reading, approving)
even before `postsale approvals expire` (or the worker's sweep) records it.

    store = ApprovalStore(factory, flows=RecordedFlows(factory, live=lambda name: ...))
    store.list(state="pending", queue="deal_desk", limit=50)
    store.approve(approval_id, actor="k1", comment="ok", edits={"offers": {"renewal_36m": {"discount": 18}}})
    store.reject(approval_id, actor="k1", comment="not this quarter")
    store.expire_due()
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import String, and_, cast, func, or_, select, update

from .db import now as utcnow
from .db import aware, iso, transaction
from .decisions import action_key
from .models import Approval, AuditEntry, Decision, DecisionEvent, Outbox

log = logging.getLogger("postsale.approvals")

STATES = ("pending", "approved", "rejected", "expired")
DEFAULT_ESCALATE_TO = "csm_lead"  # Settings.approval_escalate_to's default
ESCALATION_STEP = 0  # the escalation's notify action: before the plan's steps (1..n), after none


# ---- errors: one root, each verdict's refusal a subclass (the API maps them to problems) ----
class ApprovalError(Exception):
    """Root of every refusal from this module."""


class ApprovalNotFound(ApprovalError):
    pass


class SelfApproval(ApprovalError):
    """The key that asked for the decision may not approve or reject it."""


class NotPending(ApprovalError):
    """Already decided or expired: nothing changed."""

    def __init__(self, message: str, state: str):
        super().__init__(message)
        self.state = state


class CommentRequired(ApprovalError):
    pass


class EditRefused(ApprovalError):
    """An edit the guardrails do not allow; `errors` lists each by path, with its limit."""

    def __init__(self, message: str, errors: list[dict]):
        super().__init__(message)
        self.errors = errors


def escalation_target(settings=None, environ=None) -> str | None:
    """Where an expired item escalates: `settings.approval_escalate_to`
    (POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO, default csm_lead; without settings, read from
    `environ` or the environment through config/settings.py); empty or `none` turns escalation off."""
    if settings is None:
        from config.settings import from_env
        settings = from_env(environ)
    value = (settings.approval_escalate_to or "").strip()
    return None if value.lower() in ("", "none", "off") else value


def notify_available(settings=None) -> bool:
    """True when the tool catalog (`settings.tools_file`, else config/tools.yaml) routes the
    `notify` action to a tool."""
    try:
        from engine.catalog import ACTION_TYPES
        if "notify" not in ACTION_TYPES:
            return False
        from adapters.tools.catalog import load_catalog
        return "notify" in load_catalog(settings.tools_file if settings is not None else None).routes
    except Exception as exc:  # noqa: BLE001 - no catalog: the escalation is still recorded
        log.warning("the notify action is not available (%s): expired approvals escalate without a message",
                    type(exc).__name__)
        return False


class RecordedFlows:
    """The flow a decision was made with, rebuilt from the sources recorded for its version,
    and the live flow when another version is live now (an edit must satisfy both)."""

    def __init__(self, factory, live=None):
        self.factory = factory
        self.live = live or (lambda name: None)  # name -> the live Flow or None
        self._cache: dict = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, version: str) -> list:
        flows = []
        live = self.live(name)
        recorded = live if live is not None and live.version == version else self._recorded(name, version)
        if recorded is not None:
            flows.append(recorded)
        if live is not None and live is not recorded:
            flows.append(live)
        return flows

    def _recorded(self, name: str, version: str):
        key = (name, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        from .rulesets import sources_of
        with self.factory() as s:
            sources = sources_of(s, name, version)
        flow = None
        if sources is not None:
            from engine.errors import RulesetError
            from engine.language.flows import Sources, load_flow
            try:
                flow = load_flow(Sources(f"rules/{name}", sources))
            except RulesetError as exc:
                log.error("recorded version %s of flow %s does not load: %s", version, name, exc)
        with self._lock:
            self._cache[key] = flow
        return flow


def effective_state(a: Approval, at) -> str:
    return "expired" if a.state == "pending" and aware(a.expires_at) <= at else a.state


def _num(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


def explanation(result: dict) -> dict:
    """What the decision's response called its explanation, plus why it is held."""
    return {
        "fired": [f["id"] for f in result.get("trace", {}).get("fired", [])],
        "guardrails": [a["reason"] for a in result.get("adjustments", [])],
        "dropped": [f"{d.get('offer') or d.get('type')}: {d['reason']}"
                    for d in result.get("trace", {}).get("arbitration", [])],
        "escalations": result.get("escalations", []),
    }


class ApprovalStore:
    def __init__(self, factory, *, flows=None, escalate_to: str | None = DEFAULT_ESCALATE_TO, notify=None,
                 settings=None):
        """`flows(name, version)` gives the flows an edit is checked against (RecordedFlows);
        `escalate_to` the queue an expired item escalates to (None: no escalation); `notify`
        whether a `notify` action is planned for it (None: when the tool catalog of `settings`
        routes one, looked at on the first expiry)."""
        self.factory = factory
        self.flows = flows or RecordedFlows(factory)
        self.escalate_to = escalate_to
        self._notify = notify
        self._settings = settings

    @property
    def notify(self) -> bool:
        if self._notify is None:
            self._notify = notify_available(self._settings)
        return self._notify

    # ---- reading ----
    def list(self, state: str | None = "pending", queue: str | None = None, limit: int = 50,
             after: str | None = None, at=None, account: str | None = None) -> list[dict]:
        """Newest first; `state` is the effective state (overdue pending items are expired);
        None or 'all' lists every state. `after` is the last id of the previous page; `account`
        keeps the items of account ids that contain it."""
        at = at or utcnow()
        q = select(Approval)
        if account:
            q = q.join(Decision, Decision.id == Approval.decision_id).where(
                Decision.account_id.contains(account, autoescape=True))
        if state == "pending":
            q = q.where(Approval.state == "pending", Approval.expires_at > at)
        elif state == "expired":
            q = q.where(or_(Approval.state == "expired", and_(Approval.state == "pending", Approval.expires_at <= at)))
        elif state not in (None, "all"):
            q = q.where(Approval.state == state)
        if queue:
            q = q.where(cast(Approval.queues, String).contains(f'"{queue}"', autoescape=True))
        if after:
            q = q.where(Approval.id < after)
        with self.factory() as s:
            rows = s.scalars(q.order_by(Approval.id.desc()).limit(limit)).all()
            decisions = {d.id: d for d in s.scalars(select(Decision).where(
                Decision.id.in_([a.decision_id for a in rows])))} if rows else {}
            return [self._json(a, at, decisions.get(a.decision_id)) for a in rows]

    def get(self, approval_id: str, at=None, detail: bool = True) -> dict | None:
        """The item; with `detail`, also the decision's explanation, the actions' current outbox
        state, the discount limit of each proposed offer and the approval's events."""
        at = at or utcnow()
        with self.factory() as s:
            a = s.get(Approval, approval_id)
            if a is None:
                return None
            d = s.get(Decision, a.decision_id)
            out = self._json(a, at, d)
            if not detail:
                return out
            rows = s.scalars(select(Outbox).where(Outbox.decision_id == a.decision_id).order_by(Outbox.step)).all()
            events = s.scalars(select(DecisionEvent).where(DecisionEvent.decision_id == a.decision_id,
                                                           DecisionEvent.type.like("approval.%"))
                               .order_by(DecisionEvent.id)).all()
        out["decision"] = {"id": d.id, "flow": d.flow, "ruleset_version": d.ruleset_version, "status": d.status,
                           "created_at": iso(d.created_at), "account_id": d.account_id,
                           "adjustments": d.result.get("adjustments", []), "blocked": d.result.get("blocked", []),
                           "models": d.result.get("models", {}), "explanation": explanation(d.result)}
        out["outbox"] = [{"step": r.step, "type": r.action_type, "params": r.params, "state": r.state,
                          "idempotency_key": r.idempotency_key} for r in rows]
        limits = {o["offer"]: self._limit(d, o, o.get("discount") or 0) for o in a.proposed.get("offers", [])}
        out["discount_limits"] = {k: (None if v is _UNKNOWN else v) for k, v in limits.items()}
        out["events"] = [{"type": e.type, "at": iso(e.created_at), "actor": e.actor, "payload": e.payload}
                         for e in events]
        return out

    def _json(self, a: Approval, at, d: Decision | None = None) -> dict:
        return {"id": a.id, "decision_id": a.decision_id, "state": effective_state(a, at),
                "account_id": d.account_id if d is not None else None, "flow": d.flow if d is not None else None,
                "queues": a.queues, "reasons": a.reasons, "proposed": a.proposed, "requested_by": a.requested_by,
                "created_at": iso(a.created_at), "expires_at": iso(aware(a.expires_at)),
                "decided_by": a.decided_by, "decided_at": iso(a.decided_at) if a.decided_at else None,
                "comment": a.comment, "edits": a.edits}

    # ---- verdicts ----
    def approve(self, approval_id: str, actor: str, comment: str | None = None, edits: dict | None = None,
                at=None) -> dict:
        """Release the held actions (awaiting_approval -> ready), once; with `edits`
        ({"offers": {code: {"discount": x}}}) checked against the guardrails first."""
        at = at or utcnow()
        a, d = self._open(approval_id, actor, at)
        applied = self._check_edits(a, d, edits) if edits else None
        discounts = {code: e["discount"] for code, e in (applied or {}).get("offers", {}).items()}
        try:
            with transaction(self.factory) as s:
                self._transition(s, approval_id, "approved", actor, at, comment=comment, edits=applied)
                rows = self._held(s, a.decision_id)
                for r in rows:
                    code = r.params.get("offer") if isinstance(r.params, dict) else None
                    if code in discounts:
                        r.params = {**r.params, "discount": discounts[code]}
                    r.state, r.next_attempt_at, r.updated_at = "ready", at, at
                payload = {"approval": approval_id, "comment": comment, "edits": applied,
                           "actions": [self._action(r) for r in rows]}
                self._record(s, a.decision_id, "approval.approved", actor, at, payload)
        except _Lost:
            self._lost(approval_id, at)
        return self.get(approval_id, at=at)

    def reject(self, approval_id: str, actor: str, comment: str, at=None) -> dict:
        """Cancel the held actions; a comment saying why is required."""
        if not isinstance(comment, str) or not comment.strip():
            raise CommentRequired("a comment is required to reject")
        at = at or utcnow()
        a, _ = self._open(approval_id, actor, at)
        try:
            with transaction(self.factory) as s:
                self._transition(s, approval_id, "rejected", actor, at, comment=comment)
                rows = self._cancel_held(s, a.decision_id, at)
                self._record(s, a.decision_id, "approval.rejected", actor, at,
                             {"approval": approval_id, "comment": comment,
                              "actions": [self._action(r) for r in rows]})
        except _Lost:
            self._lost(approval_id, at)
        return self.get(approval_id, at=at)

    def expire_due(self, at=None, limit: int = 500, actor: str = "expiry") -> list[dict]:
        """Record every pending item past its expires_at as expired (cancelling its actions) and
        escalate it as configured. Safe to run from any number of workers at once."""
        at = at or utcnow()
        with self.factory() as s:
            ids = s.scalars(select(Approval.id).where(Approval.state == "pending", Approval.expires_at <= at)
                            .order_by(Approval.expires_at).limit(limit)).all()
        done = []
        for approval_id in ids:
            item = self._expire(approval_id, at, actor)
            if item is not None:
                done.append(item)
        return done

    def pending_queues(self, at=None) -> dict:
        """How many items wait in each queue (an item routed to two queues counts in both)."""
        at = at or utcnow()
        with self.factory() as s:
            rows = s.scalars(select(Approval.queues).where(Approval.state == "pending", Approval.expires_at > at))
            out: dict = {}
            for queues in rows:
                for name in queues or []:
                    out[name] = out.get(name, 0) + 1
        return dict(sorted(out.items()))

    def counts(self, at=None) -> dict:
        """Items per effective state (for the CLI and metrics)."""
        at = at or utcnow()
        with self.factory() as s:
            rows = s.execute(select(Approval.state, func.count()).group_by(Approval.state)).all()
            overdue = s.scalar(select(func.count()).select_from(Approval).where(
                Approval.state == "pending", Approval.expires_at <= at)) or 0
        out = {k: 0 for k in STATES}
        out.update({state: n for state, n in rows})
        out["pending"] -= overdue
        out["expired"] += overdue
        return out

    # ---- the parts ----
    def _open(self, approval_id: str, actor: str, at):
        """The item and its decision, when `actor` may act on it now; else the refusal."""
        with self.factory() as s:
            a = s.get(Approval, approval_id)
            d = s.get(Decision, a.decision_id) if a is not None else None
        if a is None:
            raise ApprovalNotFound(f"no approval {approval_id}")
        if a.requested_by is not None and a.requested_by == actor:
            raise SelfApproval("the key that asked for this decision cannot approve or reject it")
        self._refuse_unless_pending(a, at)
        return a, d

    def _refuse_unless_pending(self, a: Approval, at) -> None:
        state = effective_state(a, at)
        if state == "pending":
            return
        if a.state == "pending":  # overdue: record the expiry now, before answering
            self._expire(a.id, at, "expiry")
            raise NotPending(f"approval {a.id} expired at {iso(aware(a.expires_at))}", "expired")
        by = f" by {a.decided_by}" if a.decided_by else ""
        when = f" at {iso(a.decided_at)}" if a.decided_at else ""
        raise NotPending(f"approval {a.id} is already {state}{by}{when}", state)

    def _lost(self, approval_id: str, at) -> None:
        """Someone else decided between our read and our write: say what they decided."""
        with self.factory() as s:
            a = s.get(Approval, approval_id)
        self._refuse_unless_pending(a, at)
        raise NotPending(f"approval {approval_id} changed meanwhile; read it again", a.state)  # pragma: no cover

    def _transition(self, s, approval_id: str, state: str, actor, at, comment=None, edits=None) -> None:
        values = {"state": state, "decided_by": actor, "decided_at": at, "comment": comment}
        if edits is not None:
            values["edits"] = edits
        cond = [Approval.id == approval_id, Approval.state == "pending"]
        cond.append(Approval.expires_at <= at if state == "expired" else Approval.expires_at > at)
        res = s.execute(update(Approval).where(*cond).values(**values).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            raise _Lost()

    def _held(self, s, decision_id: str) -> list[Outbox]:
        return s.scalars(select(Outbox).where(Outbox.decision_id == decision_id, Outbox.state == "awaiting_approval")
                         .order_by(Outbox.step).with_for_update()).all()

    def _cancel_held(self, s, decision_id: str, at) -> list[Outbox]:
        rows = self._held(s, decision_id)
        for r in rows:
            r.state, r.updated_at = "cancelled", at
        return rows

    @staticmethod
    def _action(r: Outbox) -> dict:
        return {"step": r.step, "type": r.action_type, "idempotency_key": r.idempotency_key, "state": r.state}

    @staticmethod
    def _record(s, decision_id, kind, actor, at, payload) -> None:
        s.add(DecisionEvent(decision_id=decision_id, type=kind, created_at=at, actor=actor, payload=payload))
        s.add(AuditEntry(created_at=at, actor=actor, kind=kind, subject=payload.get("approval"),
                         detail={"decision_id": decision_id, **{k: v for k, v in payload.items() if k != "approval"}}))

    def _expire(self, approval_id: str, at, actor: str) -> dict | None:
        try:
            with transaction(self.factory) as s:
                self._transition(s, approval_id, "expired", actor, at)
                a = s.get(Approval, approval_id)
                d = s.get(Decision, a.decision_id)
                rows = self._cancel_held(s, a.decision_id, at)
                self._record(s, a.decision_id, "approval.expired", actor, at,
                             {"approval": approval_id, "expires_at": iso(aware(a.expires_at)), "queues": a.queues,
                              "actions": [self._action(r) for r in rows]})
                escalation = self._escalate(s, a, d, at, actor) if self.escalate_to else None
        except _Lost:
            return None  # approved, rejected or expired by someone else meanwhile
        log.info("approval expired", extra={"approval": approval_id, "escalated_to": self.escalate_to})
        return {"id": approval_id, "decision_id": a.decision_id, "queues": a.queues, "escalation": escalation}

    def _escalate(self, s, a: Approval, d: Decision, at, actor) -> dict:
        queue = self.escalate_to
        planned = None
        if self.notify:
            # step 0: outside the plan (whose steps start at 1 and are all cancelled now), so it
            # waits for none of them; one expiry per decision, so the key is used once
            step = ESCALATION_STEP
            key = action_key(a.decision_id, step, "notify")
            reasons = "; ".join(r.get("reason", "") for r in a.reasons if isinstance(r, dict))
            params = {"queue": queue, "account": d.account_id, "approval": a.id, "decision": a.decision_id,
                      "message": f"Approval {a.id} ({', '.join(a.queues)}) for account {d.account_id} expired "
                                 f"unanswered at {iso(aware(a.expires_at))}: {reasons}"}
            s.add(Outbox(decision_id=a.decision_id, step=step, action_type="notify", params=params,
                         idempotency_key=key, state="ready", created_at=at, attempts=0, next_attempt_at=at,
                         updated_at=at))
            planned = {"step": step, "type": "notify", "idempotency_key": key, "state": "ready"}
        payload = {"approval": a.id, "queue": queue, "from_queues": a.queues, "notify": planned}
        self._record(s, a.decision_id, "approval.escalated", actor, at, payload)
        return payload

    def _check_edits(self, a: Approval, d: Decision, edits: dict) -> dict:
        """The edits as recorded ({"offers": {code: {"discount", "from", "limit"}}}), or EditRefused."""
        proposed = {o["offer"]: o for o in a.proposed.get("offers", [])}
        errors, out = [], {}
        for code, change in sorted((edits.get("offers") or {}).items()):
            path = f"$.edits.offers.{code}"
            offer = proposed.get(code)
            if offer is None:
                known = ", ".join(sorted(proposed)) or "none"
                errors.append({"path": path, "message": f"the decision proposes no offer '{code}' (offers: {known})"})
                continue
            discount = _num(change["discount"])
            limit = self._limit(d, offer, discount)
            if limit is _UNKNOWN:
                errors.append({"path": path + ".discount", "message": "the discount limit for this offer cannot be "
                               f"computed (flow {d.flow} version {d.ruleset_version} is not available)"})
                continue
            if limit is not None and discount > limit:
                errors.append({"path": path + ".discount", "limit": limit,
                               "message": f"{discount}% is above the {limit}% the guardrails allow for {code}"})
                continue
            out[code] = {"discount": discount, "from": _num(offer.get("discount") or 0), "limit": limit}
        if errors:
            raise EditRefused("the edit is outside what the guardrails allow; nothing changed", errors)
        return {"offers": out}

    def _limit(self, d: Decision, offer: dict, discount):
        """The lowest cap over the decision's own flow version and the live one; None: no cap
        applies; _UNKNOWN: neither flow is available."""
        from engine.facts import flatten
        from engine.guardrails import discount_limit
        flows = self.flows(d.flow, d.ruleset_version)
        if not flows:
            return _UNKNOWN
        inputs = flatten(d.facts)
        limits = [discount_limit(f, inputs, {**offer, "discount": discount}) for f in flows]
        limits = [x for x in limits if x is not None]
        return _num(min(limits)) if limits else None


class _Lost(Exception):
    """The conditional UPDATE matched no row: someone else decided first."""


_UNKNOWN = object()
