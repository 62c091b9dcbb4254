"""The tables. Decisions, their events and planned actions are append-only: a state change is
a new event row, never an UPDATE or DELETE of what was recorded."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # time-ordered: sorts by creation
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    flow: Mapped[str] = mapped_column(String(64))
    ruleset_version: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    request_hash: Mapped[str] = mapped_column(String(64))
    facts: Mapped[dict] = mapped_column(JSON)
    context: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict] = mapped_column(JSON)
    # for KPIs by segment and signal: the decision's segment, the trigger that asked for it, the
    # first and newest event behind it, the feature snapshot it used, and what it cost
    segment: Mapped[str | None] = mapped_column(String(32))
    trigger: Mapped[str | None] = mapped_column(String(64))
    signal_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    newest_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    features: Mapped[dict | None] = mapped_column(JSON)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    cpu_ms: Mapped[float | None] = mapped_column(Float)
    # how the plan was chosen (engine/explore.py): holdout, explore or exploit, with what probability
    arm: Mapped[str | None] = mapped_column(String(16))
    propensity: Mapped[float | None] = mapped_column(Float)
    # a shadow candidate's verdict on the same facts (service/rollout.py): its version, whether
    # its plan differs from the one acted on, and that plan
    shadow_version: Mapped[str | None] = mapped_column(String(32))
    shadow_changed: Mapped[bool | None] = mapped_column(Boolean)
    shadow_plan: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_decisions_account", "account_id", "id"), Index("ix_decisions_created", "created_at"),
                      Index("ix_decisions_arm", "flow", "arm", "created_at"))


class DecisionEvent(Base):
    __tablename__ = "decision_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)


class Outbox(Base):
    """Planned actions, written in the decision's transaction; the dispatcher works from here.

    This is a work queue, so its `state` changes; every change is also appended to
    decision_events, which is the audit trail. States: awaiting_approval, ready, running, done,
    retry (waiting for next_attempt_at), dead (retry budget spent), suppressed (contact policy),
    cancelled (approval rejected or expired, or a saga aborted), compensated (undone)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    action_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)


class Approval(Base):
    """A decision held for a human: what it proposes, why, until when, and the verdict."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | approved | rejected | expired
    queues: Mapped[list] = mapped_column(JSON)
    reasons: Mapped[list] = mapped_column(JSON)
    proposed: Mapped[dict] = mapped_column(JSON)  # offers and actions as decided
    requested_by: Mapped[str | None] = mapped_column(String(32))  # the API key that asked for the decision
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str | None] = mapped_column(Text)
    edits: Mapped[dict | None] = mapped_column(JSON)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(api key id, header value)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | done
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RulesetVersion(Base):
    """Every ruleset version ever activated, with its sources: the newest row per flow is live."""

    __tablename__ = "ruleset_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(32))
    sources: Mapped[dict] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Rollout(Base):
    """The steps of a flow's rollouts, append-only: `start` (mode shadow or canary, share, the
    candidate's version and sources), then `promote`, `rollback` or `abort`. The newest row per
    flow says whether a candidate runs: it does while that row is a start."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str | None] = mapped_column(String(16))
    share: Mapped[float | None] = mapped_column(Float)
    version: Mapped[str | None] = mapped_column(String(32))
    sources: Mapped[dict | None] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_rollouts_flow", "flow", "id"),)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_subject", "subject", "id"),)


class Event(Base):
    """The event store: every accepted signal, once (event_id is unique), never changed."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_events_account", "account_id", "seq"),)


class FeatureState(Base):
    """An account's events folded into rolling aggregates (engine/signals/features.py); a cache
    of the event store: replaying the account's events rebuilds it exactly."""

    __tablename__ = "feature_state"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)  # events folded
    last_seq: Mapped[int] = mapped_column(BigInteger)
    newest_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DueEvaluation(Base):
    """A flow to re-evaluate for an account once its signals settle (debounce): each event
    pushes due_at back, never past the deadline; `generation` counts events so an evaluation
    that raced a new event leaves the row for another pass."""

    __tablename__ = "due_evaluations"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(64))
    first_signal_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    newest_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    events: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims of this burst; given up after a few
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    trace_context: Mapped[str | None] = mapped_column(String(128))  # traceparent of the burst's first event

    __table_args__ = (Index("ix_due_evaluations_due", "due_at"),)


class Outcome(Base):
    """What happened after a decision (renewed, expanded, churned, offer accepted / declined)."""

    __tablename__ = "outcomes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"))
    type: Mapped[str] = mapped_column(String(32))
    amount: Mapped[float | None] = mapped_column(Float)
    offer: Mapped[str | None] = mapped_column(String(64))
    offer_kind: Mapped[str | None] = mapped_column(String(32))  # copied from the decision's offer
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    request_hash: Mapped[str | None] = mapped_column(String(64))  # idempotency: same id, same body
    detail: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_outcomes_decision", "decision_id"), Index("ix_outcomes_occurred", "occurred_at"))


class Instance(Base):
    """One row: this database's random id (migration 0008), the namespace of its Redis caches."""

    __tablename__ = "instance"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DecisionKpis(Base):
    """Per decision, counted from its result by a database trigger in the decision's own INSERT
    (migration 0006): offers made, guardrail adjustments (violations caught), offers blocked."""

    __tablename__ = "decision_kpis"

    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), primary_key=True)
    offers: Mapped[int] = mapped_column(Integer)
    violations: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[int] = mapped_column(Integer)


class CapacitySlot(Base):
    """Human touches taken per queue and capacity period (migration 0011): `used` counts the
    optional touches the choose stage admitted, `mandatory` the policy reviews, which always go."""

    __tablename__ = "capacity_slots"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
    mandatory: Mapped[int] = mapped_column(Integer)


__all__ = ["CapacitySlot", "Instance", "DecisionKpis", "Event", "FeatureState", "DueEvaluation", "Outcome", "Base", "Decision", "DecisionEvent", "Outbox", "IdempotencyKey", "RulesetVersion", "AuditEntry",
           "Text", "UniqueConstraint"]
