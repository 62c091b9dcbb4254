"""Outcomes: what happened after a decision (renewed, expanded, churned, an offer accepted or
declined), recorded once and never changed (the table is append-only).

A batch is all or nothing: every problem of every item is reported together and nothing is
written while any item is bad. An outcome id is an idempotency key: the same id with the same
body replays the stored record; the same id with another body is a conflict. Each new outcome
appends an `outcome.recorded` audit entry in the same transaction.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from .db import iso, new_id, now, transaction
from .decisions import audit
from .models import Decision, Outcome

TYPES = ("renewed", "expanded", "churned", "offer_accepted", "offer_declined")
NEEDS_AMOUNT = ("renewed", "expanded")
NEEDS_OFFER = ("offer_accepted", "offer_declined")

outcomes = Outcome.__table__


class OutcomeProblems(Exception):
    """Items that cannot be recorded (400): [{path, message}]."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))
        self.errors = errors


class OutcomeConflict(OutcomeProblems):
    """An id already recorded with another body (409)."""


def utc(dt: datetime | None) -> datetime | None:
    """Aware UTC; SQLite hands back naive datetimes, which are UTC by construction."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def body_hash(item: dict) -> str:
    """What the caller sent, normalised (an instant in UTC, numbers as floats); the id aside."""
    body = {"decision_id": item["decision_id"], "type": item["type"],
            "amount": None if item.get("amount") is None else float(item["amount"]),
            "offer": item.get("offer"), "occurred_at": iso(item.get("occurred_at")),
            "detail": item.get("detail") or {}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_json(row) -> dict:
    return {"id": row.id, "decision_id": row.decision_id, "type": row.type, "amount": row.amount,
            "offer": row.offer, "offer_kind": row.offer_kind, "occurred_at": iso(row.occurred_at),
            "recorded_at": iso(row.recorded_at), "recorded_by": row.api_key_id, "detail": row.detail}


class OutcomeStore:
    def __init__(self, factory):
        self.factory = factory

    def record(self, items: list[dict], paths: list[str], api_key_id: str | None) -> tuple[list[dict], bool]:
        """Record validated items (`paths[i]` is where item i is in the request: `$` or
        `$.outcomes[i]`). Returns the records in request order and whether anything new was
        written (False: every item was a replay). Raises OutcomeProblems / OutcomeConflict."""
        try:
            return self._record(items, paths, api_key_id)
        except IntegrityError:
            # a concurrent request recorded one of these ids first: answer as a replay or a conflict
            return self._record(items, paths, api_key_id)

    def _record(self, items, paths, api_key_id):
        hashes = [body_hash(i) for i in items]
        ids = [i.get("id") for i in items]
        problems, conflicts = [], []
        seen: dict[str, int] = {}
        for n, oid in enumerate(ids):
            if oid is None:
                continue
            if oid in seen:
                problems.append({"path": f"{paths[n]}.id",
                                 "message": f"'{oid}' is also the id of {paths[seen[oid]]}; ids are unique"})
            else:
                seen[oid] = n
        with transaction(self.factory) as s:
            given = sorted(seen)
            stored = {row.id: row for row in s.execute(select(outcomes).where(outcomes.c.id.in_(given)))} if given else {}
            found, kinds = _against_decisions(s, items, paths)
            problems += found
            for n, item in enumerate(items):
                prior = stored.get(ids[n])
                if prior is not None and prior.request_hash != hashes[n]:
                    conflicts.append({"path": f"{paths[n]}.id",
                                      "message": f"outcome '{ids[n]}' was recorded with another body"})
            if problems:
                raise OutcomeProblems(sorted(problems, key=lambda e: e["path"]))
            if conflicts:
                raise OutcomeConflict(conflicts)
            at = now()
            out, created = [], False
            for n, item in enumerate(items):
                prior = stored.get(ids[n])
                if prior is not None:
                    out.append(record_json(prior))
                    continue
                row = {"id": ids[n] or new_id(), "decision_id": item["decision_id"], "type": item["type"],
                       "amount": None if item.get("amount") is None else float(item["amount"]),
                       "offer": item.get("offer"), "offer_kind": kinds[n],
                       "occurred_at": utc(item.get("occurred_at")) or at, "recorded_at": at,
                       "api_key_id": api_key_id, "request_hash": hashes[n], "detail": item.get("detail") or {}}
                s.execute(insert(outcomes).values(**row))
                audit(s, api_key_id, "outcome.recorded", row["id"],
                      {"decision_id": row["decision_id"], "type": row["type"], "amount": row["amount"],
                       "offer": row["offer"], "occurred_at": iso(row["occurred_at"])})
                out.append(record_json(_Row(row)))
                created = True
            return out, created

    def check(self, items: list, paths: list[str]) -> list[dict]:
        """The decision and offer problems of items that may be otherwise invalid (raw JSON), so
        a 400 lists them beside the shape problems."""
        usable = [(i, p) for i, p in zip(items, paths)
                  if isinstance(i, dict) and isinstance(i.get("decision_id"), str) and len(i["decision_id"]) <= 64]
        if not usable:
            return []
        with self.factory() as s:
            items = [{"decision_id": i["decision_id"], "offer": i.get("offer") if isinstance(i.get("offer"), str) else None}
                     for i, _ in usable]
            return _against_decisions(s, items, [p for _, p in usable])[0]

    def for_decision(self, decision_id: str) -> list[dict] | None:
        """The decision's outcomes in the order they occurred; None when there is no such decision."""
        with self.factory() as s:
            if s.scalar(select(Decision.id).where(Decision.id == decision_id)) is None:
                return None
            rows = s.execute(select(outcomes).where(outcomes.c.decision_id == decision_id)
                             .order_by(outcomes.c.occurred_at, outcomes.c.recorded_at, outcomes.c.id)).all()
            return [record_json(r) for r in rows]


def _against_decisions(s, items, paths) -> tuple[list[dict], list]:
    """Each item's decision must exist and its offer (when named) be one of the decision's; the
    offers' kinds, by item."""
    wanted = sorted({i["decision_id"] for i in items})
    offers = {row.id: (row.result or {}).get("offers") or []
              for row in s.execute(select(Decision.id, Decision.result).where(Decision.id.in_(wanted)))}
    problems, kinds = [], []
    for n, item in enumerate(items):
        kinds.append(None)
        if item["decision_id"] not in offers:
            problems.append({"path": f"{paths[n]}.decision_id", "message": f"no decision {item['decision_id']}"})
            continue
        if item.get("offer") is not None:
            known = {o.get("offer"): o.get("kind") for o in offers[item["decision_id"]]}
            if item["offer"] not in known:
                listed = ", ".join(sorted(k for k in known if k)) or "none"
                problems.append({"path": f"{paths[n]}.offer",
                                 "message": f"'{item['offer']}' is not one of the decision's offers ({listed})"})
            else:
                kinds[n] = known[item["offer"]]
    return problems, kinds


class _Row:
    def __init__(self, values: dict):
        self.__dict__.update(values)
