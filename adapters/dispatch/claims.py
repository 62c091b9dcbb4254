"""Claiming outbox rows: which rows are due, and taking them so no other worker runs them.

A row is due when
    state in (ready, retry) and next_attempt_at <= now        (NULL counts as now)
    or state = running and lease_until < now                   (its worker died mid-call)
and it is the lowest unfinished step of its decision: every earlier step is done or
suppressed (so an outreach never runs before its quote).

PostgreSQL: `SELECT ... FOR UPDATE OF outbox SKIP LOCKED` then an UPDATE in the same
transaction: a row another worker is claiming is skipped, not waited for, and the WHERE
clause is re-checked on the locked row's newest version, so a row claimed and committed a
moment ago is not taken twice. SQLite: the same SELECT and UPDATE inside one
`BEGIN IMMEDIATE` transaction (adapters/store/db.py): one writer at a time, so the select
and the update cannot interleave with another claim.

The claim sets state running, claimed_by and lease_until. Every later write by the worker is
fenced on (id, claimed_by, state running): a worker whose lease expired and whose row was
taken over writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, bindparam, exists, or_, select
from sqlalchemy.orm import aliased

from adapters.store.db import aware, now, transaction
from adapters.store.models import Outbox

DUE_STATES = ("ready", "retry")
FINISHED = ("done", "suppressed")  # a later step may run after these
TERMINAL = ("done", "suppressed", "dead", "cancelled", "compensated")


@dataclass(frozen=True)
class Claimed:
    id: int
    decision_id: str
    step: int
    action_type: str
    params: dict
    idempotency_key: str
    attempts: int
    previous_state: str  # ready | retry | running (a lease taken over)
    previous_worker: str | None
    result: dict | None

    @property
    def reclaimed(self) -> bool:
        return self.previous_state == "running"


def due_query(at: datetime, *, decision_id: str | None = None, exclude_actions=(), limit: int = 1):
    """The ids of the rows due at `at` (see the module's docstring), oldest due first."""
    return _due_statement(decision_id is not None, tuple(exclude_actions), limit).params(
        **_due_params(at, decision_id))


def _due_params(at: datetime, decision_id: str | None) -> dict:
    return {"at": at} if decision_id is None else {"at": at, "decision_id": decision_id}


@lru_cache(maxsize=64)
def _due_statement(for_decision: bool, exclude_actions: tuple, limit: int, locking: bool = False,
                   whole_rows: bool = False):
    """Built once per shape, with `at` and `decision_id` as bound parameters: building the
    expression is most of a claim's cost, and the dispatcher claims once per step."""
    at = bindparam("at", type_=Outbox.__table__.c.next_attempt_at.type)
    prior = aliased(Outbox, name="prior")
    due = or_(and_(Outbox.state.in_(DUE_STATES),
                   or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= at)),
              and_(Outbox.state == "running", Outbox.lease_until < at))
    blocked = exists().where(prior.decision_id == Outbox.decision_id, prior.step < Outbox.step,
                             prior.state.notin_(FINISHED))
    q = select(Outbox if whole_rows else Outbox.id).where(due, ~blocked)
    if for_decision:
        q = q.where(Outbox.decision_id == bindparam("decision_id", type_=Outbox.__table__.c.decision_id.type))
    if exclude_actions:
        q = q.where(Outbox.action_type.notin_(list(exclude_actions)))
    q = q.order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
    return q.with_for_update(skip_locked=True, of=Outbox) if locking else q


def claim(factory, dialect: str, worker: str, lease_seconds: float, limit: int = 1, *,
          decision_id: str | None = None, exclude_actions=()) -> list[Claimed]:
    """Take up to `limit` due rows for `worker`; the rows are running when this returns."""
    at = now()
    q = _due_statement(decision_id is not None, tuple(exclude_actions), limit, dialect == "postgresql", True)
    out: list[Claimed] = []
    with transaction(factory) as s:
        rows = sorted(s.scalars(q, _due_params(at, decision_id)).all(), key=lambda r: r.id)
        for r in rows:
            out.append(Claimed(id=r.id, decision_id=r.decision_id, step=r.step, action_type=r.action_type,
                               params=dict(r.params or {}), idempotency_key=r.idempotency_key,
                               attempts=r.attempts or 0, previous_state=r.state, previous_worker=r.claimed_by,
                               result=r.result if isinstance(r.result, dict) else None))
            r.state = "running"
            r.claimed_by = worker
            r.lease_until = at + timedelta(seconds=lease_seconds)
            r.updated_at = at
    return out


__all__ = ["Claimed", "claim", "due_query", "aware", "DUE_STATES", "FINISHED", "TERMINAL"]
