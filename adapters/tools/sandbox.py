"""The sandbox twin of every tool: a simulated CRM / billing / marketing / cases / notifications
state kept in the service's own database, so the whole workflow runs on a fresh machine and
in demos, and what "happened" can be inspected (`postsale sandbox show`).

It behaves like a well-made idempotent API:
- the same (tool, idempotency key) again answers with the first result (`replayed=True`) and
  makes no second record; the same key with different params is refused (422), as the IETF
  Idempotency-Key draft says;
- a write creates a record (quote, outreach_task, alert, notification, case,
  opportunity_update; any other granted action makes a record of its own name);
- a compensation (an action named as another action's `compensation` in the catalog) changes
  the referenced record's status (void_quote -> void, cancel_outreach -> cancelled);
- reads answer from the state: fetch_contract / fetch_terms give the account's contract
  (materialised on first read, deterministic from the account id), search finds articles;
- faults asked for with `add_fault` (or `postsale sandbox fail`) make calls fail on purpose:
  unavailable / rate_limited / rejected before anything happens, timeout AFTER the record
  is written (the response is lost), which is exactly the case idempotency keys exist for.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.store.db import iso, new_id, now, transaction

from .base import (Adapter, ToolError, ToolRateLimited, ToolRejected, ToolResult, ToolTimeout, ToolUnavailable)
from .sandbox_models import SandboxCall, SandboxFault, SandboxRecord

KINDS = {
    "create_quote": "quote",
    "schedule_outreach": "outreach_task",
    "alert_csm": "alert",
    "notify": "notification",
    "open_case": "case",
    "update_opportunity": "opportunity_update",
}
INITIAL_STATUS = {"quote": "open", "outreach_task": "scheduled", "alert": "sent", "notification": "sent",
                  "case": "open", "opportunity_update": "applied"}
COMPENSATED_STATUS = {"void_quote": "void", "cancel_outreach": "cancelled", "close_case": "closed"}
PREFIX = {"quote": "Q", "outreach_task": "T", "alert": "A", "notification": "N", "case": "C",
          "opportunity_update": "O", "contract": "K", "article": "D"}
READS = {"fetch_contract", "fetch_terms", "search"}
FAULTS = ("timeout", "unavailable", "rate_limited", "rejected")


def _hash(params: dict, reference: str | None) -> str:
    body = json.dumps({"params": params, "ref": reference}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _account(params: dict) -> str | None:
    v = params.get("account", params.get("account_id"))
    return None if v is None else str(v)


def record_json(r: SandboxRecord) -> dict:
    return {"reference": r.reference, "tool": r.tool, "kind": r.kind, "account": r.account_id,
            "status": r.status, "data": r.data, "idempotency_key": r.idempotency_key,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}


def call_json(c: SandboxCall) -> dict:
    return {"tool": c.tool, "action": c.action, "idempotency_key": c.idempotency_key, "reference": c.reference,
            "status": c.status, "created_at": iso(c.created_at)}


class SandboxAdapter(Adapter):
    kind = "sandbox"

    def __init__(self, spec, session_factory, audit=None):
        super().__init__(spec, audit)
        self.factory = session_factory
        self._compensations = {a.compensation for a in spec.actions.values() if a.compensation}

    def _call(self, spec_action, params, key, reference) -> ToolResult:
        action = spec_action.name
        digest = _hash(params, reference)
        try:
            fault, result = self._once(action, params, key, reference, digest)
        except IntegrityError:
            # a concurrent call with the same key committed first: answer with its result
            fault, result = None, self._replay(action, key, digest)
            if result is None:  # pragma: no cover - the unique violation was something else
                raise
        if fault is not None and fault.error != "timeout":
            raise _fault_error(fault, self.tool, action)
        if fault is not None:
            raise ToolTimeout(f"{self.tool}.{action}: sandbox fault: the response was lost (the action "
                              "happened; retry with the same key)", phase="read", tool=self.tool, action=action)
        return result

    # -- the ledger
    def _replay(self, action, key, digest) -> ToolResult | None:
        with self.factory() as s:
            call = s.scalars(select(SandboxCall).where(SandboxCall.tool == self.tool,
                                                       SandboxCall.idempotency_key == key)).first()
            return self._answer(call, action, key, digest) if call else None

    def _answer(self, call: SandboxCall, action, key, digest) -> ToolResult:
        if call.request_hash != digest or call.action != action:
            raise ToolRejected(f"{self.tool}.{action}: idempotency key {key} was used for a different request",
                               status=422, reason="idempotency key reused with different parameters")
        return ToolResult(tool=self.tool, action=action, idempotency_key=key, reference=call.reference,
                          data=call.response, replayed=True, status=call.status)

    def _once(self, action, params, key, reference, digest) -> tuple[SandboxFault | None, ToolResult | None]:
        """The fault this call consumes, if any, and the call's result (None when the fault
        fails it before anything happens), in one transaction."""
        with transaction(self.factory) as s:
            fault = take_fault(s, self.tool, action)
            if fault is not None and fault.error != "timeout":
                return fault, None
            call = s.scalars(select(SandboxCall).where(SandboxCall.tool == self.tool,
                                                       SandboxCall.idempotency_key == key)).first()
            if call is not None:
                return fault, self._answer(call, action, key, digest)
            call = SandboxCall(tool=self.tool, action=action, idempotency_key=key, request_hash=digest,
                               reference=None, status=0, response={}, created_at=now())
            s.add(call)
            s.flush()  # takes the (tool, key) slot first: a concurrent twin waits here, then fails
            if action in self._compensations:
                ref, status, data = self._compensate(s, action, reference)
            elif action in READS:
                ref, status, data = self._read(s, action, params)
            else:
                ref, status, data = self._write(s, action, params, key)
            call.reference, call.status, call.response = ref, status, data
        return fault, ToolResult(tool=self.tool, action=action, idempotency_key=key, reference=ref, data=data,
                                 replayed=False, status=status)

    # -- the simulated tools
    def _write(self, s, action, params, key):
        kind = KINDS.get(action, action)[:32]
        ref = f"{PREFIX.get(kind, 'R')}-{new_id()}"
        status = INITIAL_STATUS.get(kind, "done")
        at = now()
        s.add(SandboxRecord(reference=ref, tool=self.tool, kind=kind, account_id=_account(params), status=status,
                            data=dict(params), idempotency_key=key, created_at=at, updated_at=at))
        return ref, 201, {"id": ref, "kind": kind, "status": status, **params}

    def _compensate(self, s, action, reference):
        if not reference:
            raise ToolRejected(f"{self.tool}.{action} needs the reference of the object to undo", status=400,
                               reason="missing reference")
        rec = s.scalars(select(SandboxRecord).where(SandboxRecord.reference == reference,
                                                    SandboxRecord.tool == self.tool)).first()
        if rec is None:
            raise ToolRejected(f"{self.tool}.{action}: no object {reference}", status=404, reason="not found")
        target = COMPENSATED_STATUS.get(action, "compensated")
        if rec.status != target:
            rec.status = target
            rec.data = {**rec.data, "compensated_by": action}
            rec.updated_at = now()
        return rec.reference, 200, {"id": rec.reference, "kind": rec.kind, "status": rec.status}

    def _read(self, s, action, params):
        if action == "search":
            q = str(params.get("q", "")).strip().lower()
            limit = int(params.get("limit", 5) or 5)
            rows = s.scalars(select(SandboxRecord).where(SandboxRecord.kind == "article")
                             .order_by(SandboxRecord.id)).all()
            hits = [r for r in rows if q and q in json.dumps(r.data).lower()][:limit]
            return None, 200, {"results": [{"id": r.reference, "title": r.data.get("title", ""),
                                            "snippet": str(r.data.get("body", ""))[:280]} for r in hits]}
        account = _account(params)
        if not account:
            raise ToolRejected(f"{self.tool}.{action} needs params.account", status=400, reason="missing account")
        rec = ensure_contract(s, account)
        if action == "fetch_terms":
            return rec.reference, 200, {"id": rec.reference, "account": account,
                                        "terms": rec.data.get("terms", [])}
        return rec.reference, 200, {"id": rec.reference, "account": account, **rec.data}


def ensure_contract(s, account: str) -> SandboxRecord:
    """The account's contract in the simulated billing system, made up on first read from a hash
    of the account id (the same account always gets the same seats and prices)."""
    rec = s.scalars(select(SandboxRecord).where(SandboxRecord.kind == "contract",
                                                SandboxRecord.account_id == account)
                    .order_by(SandboxRecord.id.desc())).first()
    if rec is not None:
        return rec
    h = int(hashlib.sha256(account.encode()).hexdigest(), 16)
    at = now()
    seats = 10 + h % 491
    unit = (30, 45, 60, 90)[h // 491 % 4]
    term = (12, 12, 24, 36)[h // 1964 % 4]
    renews = (at + timedelta(days=30 + h // 7856 % 300)).date().isoformat()
    data = {"plan": ("standard", "professional", "enterprise")[h // 9 % 3], "seats": seats,
            "unit_price": unit, "currency": "USD", "term_months": term, "annual_value": seats * unit * 12,
            "renewal_date": renews, "auto_renew": bool(h & 1),
            "terms": [{"clause": "renewal", "text": f"Renews for {term} months unless cancelled 30 days before "
                                                     f"{renews}."},
                      {"clause": "price", "text": f"{seats} seats at USD {unit} per seat per month."}]}
    rec = SandboxRecord(reference=f"K-{new_id()}", tool="billing", kind="contract", account_id=account,
                        status="active", data=data, idempotency_key=None, created_at=at, updated_at=at)
    s.add(rec)
    s.flush()
    return rec


# --------------------------------------------------------------------------- faults

def take_fault(s, tool: str, action: str) -> SandboxFault | None:
    """Consume one matching fault (action-specific first) in the session's transaction, so a
    call and the fault it spends commit together; atomic across workers."""
    rows = s.scalars(select(SandboxFault).where(
        SandboxFault.tool == tool, or_(SandboxFault.action == action, SandboxFault.action.is_(None)),
        or_(SandboxFault.remaining.is_(None), SandboxFault.remaining > 0))
        .order_by(SandboxFault.action.is_(None), SandboxFault.id)).all()
    for f in rows:
        if f.remaining is None:
            s.expunge(f)
            return f
        taken = s.execute(update(SandboxFault).where(SandboxFault.id == f.id, SandboxFault.remaining > 0)
                          .values(remaining=SandboxFault.remaining - 1))
        if taken.rowcount:
            s.expunge(f)
            return f
    return None


def _fault_error(fault: SandboxFault, tool: str, action: str) -> ToolError:
    msg = f"{tool}.{action}: sandbox fault '{fault.error}'"
    if fault.error == "rate_limited":
        return ToolRateLimited(msg, retry_after=fault.retry_after, tool=tool, action=action)
    if fault.error == "rejected":
        return ToolRejected(msg, status=422, reason="sandbox fault", tool=tool, action=action)
    return ToolUnavailable(msg, status=503, retry_after=fault.retry_after, tool=tool, action=action)


def add_fault(factory, tool: str, error: str, action: str | None = None, times: int | None = 1,
              retry_after: float | None = None) -> dict:
    """Make the next `times` calls of tool(.action) fail with `error` (None: until cleared)."""
    if error not in FAULTS:
        raise ValueError(f"error must be one of {', '.join(FAULTS)}")
    with transaction(factory) as s:
        f = SandboxFault(tool=tool, action=action, error=error, remaining=times, retry_after=retry_after,
                         created_at=now())
        s.add(f)
        s.flush()
        return {"id": f.id, "tool": tool, "action": action, "error": error, "remaining": times,
                "retry_after": retry_after}


# --------------------------------------------------------------------------- inspection

def list_records(factory, kind: str | None = None, account: str | None = None, tool: str | None = None,
                 status: str | None = None, limit: int = 100) -> list[dict]:
    """What happened in the sandbox, newest first."""
    q = select(SandboxRecord)
    if kind:
        q = q.where(SandboxRecord.kind == kind)
    if account:
        q = q.where(SandboxRecord.account_id == account)
    if tool:
        q = q.where(SandboxRecord.tool == tool)
    if status:
        q = q.where(SandboxRecord.status == status)
    with factory() as s:
        return [record_json(r) for r in s.scalars(q.order_by(SandboxRecord.id.desc()).limit(limit)).all()]


def list_calls(factory, tool: str | None = None, key: str | None = None, limit: int = 100) -> list[dict]:
    """The idempotency ledger, newest first: one row per distinct (tool, key)."""
    q = select(SandboxCall)
    if tool:
        q = q.where(SandboxCall.tool == tool)
    if key:
        q = q.where(SandboxCall.idempotency_key == key)
    with factory() as s:
        return [call_json(c) for c in s.scalars(q.order_by(SandboxCall.id.desc()).limit(limit)).all()]


def list_faults(factory) -> list[dict]:
    with factory() as s:
        return [{"id": f.id, "tool": f.tool, "action": f.action, "error": f.error, "remaining": f.remaining,
                 "retry_after": f.retry_after} for f in s.scalars(select(SandboxFault).order_by(SandboxFault.id))]


def add_record(factory, tool: str, kind: str, account: str | None, data: dict, status: str = "active") -> dict:
    """Seed the simulated state (a contract with known prices, a knowledge article)."""
    at = now()
    rec = SandboxRecord(reference=f"{PREFIX.get(kind, 'R')}-{new_id()}", tool=tool, kind=kind, account_id=account,
                        status=status, data=data, idempotency_key=None, created_at=at, updated_at=at)
    with transaction(factory) as s:
        s.add(rec)
    return record_json(rec)


def reset(factory, faults_only: bool = False) -> None:
    """Forget the simulated state (records, ledger and faults), or only the faults."""
    with transaction(factory) as s:
        s.execute(delete(SandboxFault))
        if not faults_only:
            s.execute(delete(SandboxCall))
            s.execute(delete(SandboxRecord))


__all__ = ["SandboxAdapter", "list_records", "list_calls", "list_faults", "add_record", "add_fault", "reset",
           "take_fault", "FAULTS"]
