"""The sandbox's tables: a simulated CRM / billing / marketing / cases / notifications state in
the service's own database (same declarative Base as adapters/store/models.py; migration 0002).

- sandbox_calls    the idempotency ledger: one row per (tool, idempotency key) with the first
                   answer, so the same key again replays it and never makes a second record
- sandbox_records  what "happened": quotes, outreach tasks, alerts, notifications, cases,
                   opportunity updates, contracts; a compensation changes a record's status
- sandbox_faults   failures an operator or a test asked for (`postsale sandbox fail`), consumed
                   one per call, so retries, dead letters and compensation can be demonstrated
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adapters.store.models import Base, BigId


class SandboxCall(Base):
    __tablename__ = "sandbox_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tool: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (UniqueConstraint("tool", "idempotency_key", name="uq_sandbox_calls_tool_key"),)


class SandboxRecord(Base):
    __tablename__ = "sandbox_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    tool: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_sandbox_records_kind_account", "kind", "account_id"),
                      Index("ix_sandbox_records_account", "account_id"))


class SandboxFault(Base):
    __tablename__ = "sandbox_faults"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tool: Mapped[str] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(64))  # None: every action of the tool
    error: Mapped[str] = mapped_column(String(32))  # timeout | unavailable | rate_limited | rejected
    remaining: Mapped[int | None] = mapped_column(Integer)  # None: until cleared
    retry_after: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_sandbox_faults_tool", "tool"),)


__all__ = ["SandboxCall", "SandboxRecord", "SandboxFault"]
