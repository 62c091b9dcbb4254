"""Operating the outbox: list rows, count them by state, re-drive dead letters.

Re-drive puts a dead row back to `ready` (attempts reset, error cleared, due now) with an
`action.redriven` event; the later steps its saga cancelled come back with it. A dead row
whose saga already undid earlier steps (state compensated, or a compensation still pending)
is refused: the quote it depended on is void, so running it now would act on a plan that no
longer holds. Ask for a new decision instead.
"""
from __future__ import annotations

from sqlalchemy import func, select

from adapters.store.db import iso, now, transaction
from adapters.store.models import DecisionEvent, Outbox

from .claims import aware

STATES = ("awaiting_approval", "ready", "running", "retry", "done", "dead", "suppressed", "cancelled", "compensated")


def row_json(r: Outbox) -> dict:
    return {"id": r.id, "decision_id": r.decision_id, "step": r.step, "action": r.action_type, "state": r.state,
            "attempts": r.attempts or 0, "next_attempt_at": iso(r.next_attempt_at), "claimed_by": r.claimed_by,
            "lease_until": iso(r.lease_until), "last_error": r.last_error, "idempotency_key": r.idempotency_key,
            "reference": (r.result or {}).get("reference") if isinstance(r.result, dict) else None,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}


def list_rows(factory, state: str | None = None, decision_id: str | None = None, limit: int = 50) -> list[dict]:
    """Outbox rows, newest first."""
    q = select(Outbox)
    if state:
        q = q.where(Outbox.state == state)
    if decision_id:
        q = q.where(Outbox.decision_id == decision_id)
    with factory() as s:
        return [row_json(r) for r in s.scalars(q.order_by(Outbox.id.desc()).limit(limit)).all()]


def stats(factory) -> dict:
    """Rows by state, and how late the oldest due row is (a growing lag: add workers)."""
    at = now()
    with factory() as s:
        counts = dict(s.execute(select(Outbox.state, func.count()).group_by(Outbox.state)).all())
        oldest = s.scalar(select(func.min(Outbox.next_attempt_at)).where(Outbox.state.in_(("ready", "retry"))))
    lag = max(0.0, (at - aware(oldest)).total_seconds()) if oldest is not None else 0.0
    return {"states": {k: counts.get(k, 0) for k in STATES if counts.get(k)}, "total": sum(counts.values()),
            "oldest_due_lag_seconds": round(lag, 3)}


def redrive(factory, row_ids=None, all_dead: bool = False, actor: str | None = "cli") -> list[dict]:
    """Dead rows back to ready. Returns one entry per row asked for: redriven or refused (reason)."""
    out = []
    with transaction(factory) as s:
        q = select(Outbox)
        if all_dead:
            q = q.where(Outbox.state == "dead")
        else:
            q = q.where(Outbox.id.in_(list(row_ids or [])))
        if factory.kw["bind"].dialect.name == "postgresql":
            q = q.with_for_update()
        rows = s.scalars(q.order_by(Outbox.id)).all()
        found = {r.id for r in rows}
        for missing in sorted(set(row_ids or []) - found):
            out.append({"id": missing, "redriven": False, "reason": "no such outbox row"})
        at = now()
        for r in rows:
            entry = {"id": r.id, "decision_id": r.decision_id, "step": r.step, "action": r.action_type}
            if r.state != "dead":
                out.append({**entry, "redriven": False, "reason": f"state is {r.state}, not dead"})
                continue
            siblings = s.scalars(select(Outbox).where(Outbox.decision_id == r.decision_id, Outbox.id != r.id)
                                 .order_by(Outbox.step)).all()
            undone = [x.step for x in siblings if x.step < r.step and
                      (x.state == "compensated" or (x.state == "done" and x.next_attempt_at is not None))]
            if undone:
                out.append({**entry, "redriven": False,
                            "reason": f"its saga undid step(s) {', '.join(map(str, undone))}; ask for a new decision"})
                continue
            previous = r.last_error
            r.state, r.attempts, r.last_error = "ready", 0, None
            r.next_attempt_at, r.claimed_by, r.lease_until, r.updated_at = at, None, None, at
            s.add(DecisionEvent(decision_id=r.decision_id, type="action.redriven", created_at=at, actor=actor,
                                payload={"step": r.step, "action": r.action_type,
                                         "previous_error": (previous or "").split(":", 1)[0] or None}))
            marker = f"saga aborted: step {r.step} "
            resumed = []
            for x in siblings:
                if x.step > r.step and x.state == "cancelled" and (x.last_error or "").startswith(marker):
                    x.state, x.attempts, x.last_error = "ready", 0, None
                    x.next_attempt_at, x.claimed_by, x.lease_until, x.updated_at = at, None, None, at
                    resumed.append(x.step)
                    s.add(DecisionEvent(decision_id=r.decision_id, type="action.redriven", created_at=at,
                                        actor=actor, payload={"step": x.step, "action": x.action_type,
                                                              "reason": "saga_resumed"}))
            if resumed or siblings:
                s.add(DecisionEvent(decision_id=r.decision_id, type="saga.resumed", created_at=at, actor=actor,
                                    payload={"step": r.step, "resumed": resumed}))
            out.append({**entry, "redriven": True, "resumed": resumed})
    return out


__all__ = ["list_rows", "stats", "redrive", "row_json", "STATES"]
