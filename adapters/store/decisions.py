"""Decision records: a decision, its first event and its planned actions in one transaction."""
from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import JSON, bindparam, literal_column, select

from engine.decision import Decision as DecisionView

from .capacity import apply_claims
from .db import dumps, iso, new_id, now, transaction
from .models import Approval, AuditEntry, Decision, DecisionEvent, Outbox


def action_key(decision_id: str, step: int, action_type: str) -> str:
    """The idempotency key every adapter call for this planned action carries."""
    return hashlib.sha256(f"{decision_id}:{step}:{action_type}".encode()).hexdigest()[:40]


class DecisionStore:
    def __init__(self, factory, approval_ttl_seconds: int = 72 * 3600):
        self.factory = factory
        self.approval_ttl = approval_ttl_seconds
        self._statements: dict = {}

    def record(self, *, flow, version, facts, context, result, request_hash, api_key_id,
               complete=None, signals: dict | None = None, cost: dict | None = None,
               extra=None, claims=(), shadow: dict | None = None) -> tuple[str, object, dict]:
        """Write the decision, its `decided` event, its outbox rows (and approval) atomically;
        (decision id, time, the result with its planned actions).

        `extra(decision_id, at, planned)` gives more rows [(table, row)] for the same write (the
        idempotency key and its stored response). Without `complete` the write is one statement
        on PostgreSQL (data-modifying CTEs, autocommit: one round trip, atomic). `complete` (a
        callable taking the session, decision id, time and result) lets the caller finish its
        own records in the same transaction (the debounced evaluation), so a retry can never see
        half of it. `signals` (trigger, signal_at, newest_event_at, features) says which events
        and features a triggered decision used; `cost` (latency_ms, cpu_ms) what deciding took.
        `claims` are the capacity slots the decision takes (adapters/store/capacity.py), taken
        first in the same transaction: SlotsTaken when one is gone, and nothing is written.
        `shadow` (shadow_version, shadow_changed, shadow_plan): a shadow candidate's verdict,
        written in the decision's own row.
        """
        decision_id = new_id()
        at = now()
        planned = []
        for step, action in enumerate(result.get("actions", []), start=1):
            planned.append({**action, "step": step, "idempotency_key": action_key(decision_id, step, action["type"])})
        result = {**result, "actions": planned}
        account_id = (facts.get("account") or {}).get("id") if isinstance(facts.get("account"), dict) else None
        decision = dict.fromkeys(_SIGNALS + _COST + _SHADOW)
        decision.update(id=decision_id, created_at=at, flow=flow, ruleset_version=version, account_id=account_id,
                        status=result["status"], api_key_id=api_key_id, request_hash=request_hash, facts=facts,
                        context=context or {}, result=result, segment=_segment(facts), **(signals or {}), **(cost or {}),
                        **(shadow or {}), **_policy(result))
        rows = [(Decision.__table__, [decision]),
                (DecisionEvent.__table__, [dict(decision_id=decision_id, type="decided", created_at=at, actor=api_key_id,
                                                payload={"status": result["status"], "ruleset_version": version})])]
        if planned:
            rows.append((Outbox.__table__, [dict(
                decision_id=decision_id, step=a["step"], action_type=a["type"], params=a["params"],
                idempotency_key=a["idempotency_key"],
                state="awaiting_approval" if a["status"] == "awaiting_approval" else "ready",
                created_at=at, attempts=0, next_attempt_at=at, updated_at=at) for a in planned]))
        if result["approval"]["required"]:
            rows.append((Approval.__table__, [dict(
                id=new_id(), decision_id=decision_id, state="pending", queues=result["approval"]["queues"],
                reasons=result["approval"]["reasons"], proposed={"offers": result["offers"], "actions": planned},
                requested_by=api_key_id, created_at=at, expires_at=at + timedelta(seconds=self.approval_ttl))]))
        for table, row in (extra(decision_id, at, result) if extra is not None else []):
            rows.append((table, [row]))
        engine = self.factory.kw["bind"]
        if complete is None and engine.dialect.name == "postgresql":
            if claims:
                with engine.begin() as conn:
                    apply_claims(conn, claims)
                    conn.exec_driver_sql(*self._one_statement(engine, rows))
            else:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(*self._one_statement(engine, rows))
            return decision_id, at, result
        if complete is None:  # SQLite: one transaction on a connection, no ORM session to set up
            with engine.begin() as conn:
                apply_claims(conn, claims)
                for table, values in rows:
                    conn.execute(_insert(table), values)
            return decision_id, at, result
        with transaction(self.factory) as s:
            apply_claims(s, claims)
            for table, values in rows:
                s.execute(_insert(table), values)
            complete(s, decision_id, at, result)
        return decision_id, at, result

    def _one_statement(self, engine, rows) -> tuple:
        """One INSERT per table as data-modifying CTEs of one SELECT, compiled once per shape
        (tables, rows, columns) into the driver's SQL; JSON values are serialised here."""
        shape = tuple((t.name, len(v), tuple(v[0])) for t, v in rows)
        compiled = self._statements.get(shape)
        if compiled is None:
            stmt, as_json = select(literal_column("1")), set()
            for i, (table, values) in enumerate(rows):
                binds = []
                for j, row in enumerate(values):
                    binds.append({c: bindparam(f"p{i}_{j}_{c}", type_=table.c[c].type) for c in row})
                    as_json |= {f"p{i}_{j}_{c}" for c in row if isinstance(table.c[c].type, JSON)}
                stmt = stmt.add_cte(table.insert().values(binds).cte(f"w{i}"))
            compiled = self._statements[shape] = (str(stmt.compile(dialect=engine.dialect)), frozenset(as_json))
        sql, as_json = compiled
        params = {}
        for i, (_, values) in enumerate(rows):
            for j, row in enumerate(values):
                for c, v in row.items():
                    name = f"p{i}_{j}_{c}"
                    params[name] = dumps(v) if name in as_json and v is not None else v
        return sql, params

    def get(self, decision_id: str) -> dict | None:
        with self.factory() as s:
            d = s.get(Decision, decision_id)
            if d is None:
                return None
            events = s.scalars(select(DecisionEvent).where(DecisionEvent.decision_id == decision_id)
                               .order_by(DecisionEvent.id)).all()
            return record_json(d, events)

    def history(self, account_id: str, limit: int, after: str | None = None) -> list[dict]:
        with self.factory() as s:
            q = select(Decision).where(Decision.account_id == account_id)
            if after:
                q = q.where(Decision.id < after)
            rows = s.scalars(q.order_by(Decision.id.desc()).limit(limit)).all()
            return [summary_json(d) for d in rows]


    def recorded(self, flow: str, since=None, limit: int = 1000):
        """The flow's newest recorded decisions (id, account, version, facts, result), newest first."""
        with self.factory() as s:
            q = select(Decision.id, Decision.account_id, Decision.ruleset_version, Decision.facts, Decision.result) \
                .where(Decision.flow == flow)
            if since is not None:
                q = q.where(Decision.created_at >= since)
            return [tuple(r) for r in s.execute(q.order_by(Decision.id.desc()).limit(limit))]

    def last(self, account_id: str, flow: str) -> dict | None:
        """The account's newest decision of the flow (its result), or None."""
        with self.factory() as s:
            return s.scalars(select(Decision.result).where(Decision.account_id == account_id, Decision.flow == flow)
                             .order_by(Decision.id.desc()).limit(1)).first()


_SIGNALS = ("trigger", "signal_at", "newest_event_at", "features")
_COST = ("latency_ms", "cpu_ms")
_SHADOW = ("shadow_version", "shadow_changed", "shadow_plan")


_INSERTS: dict = {}


def _insert(table):
    """The table's INSERT, built once: SQLAlchemy caches its compiled form by the statement's
    key, which a statement built anew has to compute again on every write."""
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = table.insert()
    return stmt


def _policy(result: dict) -> dict:
    policy = result.get("policy") or {}
    return {"arm": policy.get("arm"), "propensity": policy.get("propensity")}


def _segment(facts: dict):
    account = facts.get("account")
    value = account.get("segment") if isinstance(account, dict) else None
    return value if isinstance(value, str) else None


def audit(session, actor, kind, subject, detail) -> None:
    session.add(AuditEntry(created_at=now(), actor=actor, kind=kind, subject=subject, detail=detail))


def summary_json(d: Decision) -> dict:
    r = d.result
    return {"id": d.id, "created_at": iso(d.created_at), "flow": d.flow, "ruleset_version": d.ruleset_version,
            "account_id": d.account_id, "status": d.status,
            "offers": [{"offer": o["offer"], "kind": o["kind"], "discount": o["discount"]} for o in r.get("offers", [])]}


def signals_json(d: Decision) -> dict | None:
    if d.features is None and d.trigger is None:
        return None
    return {"trigger": d.trigger, "signal_at": iso(d.signal_at) if d.signal_at else None,
            "newest_event_at": iso(d.newest_event_at) if d.newest_event_at else None, "features": d.features}


def record_json(d: Decision, events) -> dict:
    """The decision as POST answered it (engine/decision.py), with what was recorded around it."""
    view = DecisionView.from_result(d.result, id=d.id, created_at=iso(d.created_at)).to_json()
    return {**view, "account_id": d.account_id, "facts": d.facts, "context": d.context, "decision": d.result,
            "signals": signals_json(d),
            "events": [{"type": e.type, "at": iso(e.created_at), "actor": e.actor, "payload": e.payload}
                       for e in events]}
