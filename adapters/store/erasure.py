"""Erasing a subject's personal data from rows the append-only guards protect, without breaking
the audit chain.

A chained row (decisions, decision_events) that is rewritten no longer matches the digest its
chain entry holds. The rewrite therefore goes with an audit_log entry (itself chained) that
names every rewritten row and the digest it has afterwards; `verify` accepts a row whose digest
is the one the newest such entry names, and nothing else. A later change to the row, or to the
entry, is still seen. The guards are passed only inside `sanctioned()` (migration 0015).
"""
from __future__ import annotations

import json
from contextlib import contextmanager

from sqlalchemy import bindparam, text

from engine.pii import PREFIX, keyed_hash

from .db import transaction
from .decisions import audit

ERASED = "erased"
REWRITE_KINDS = ("subject.erased", "retention.redacted")


@contextmanager
def sanctioned(session, reason: str):
    """Let this transaction update and delete decisions, their events, events and outcomes."""
    session.execute(text("INSERT INTO sanctioned_rewrites (reason) VALUES (:r)"), {"r": reason})
    yield
    session.execute(text("DELETE FROM sanctioned_rewrites"))


def scrub(node, personal):
    """`node` with every string `personal(s)` holds for replaced by ERASED (a copy)."""
    if isinstance(node, dict):
        return {k: scrub(v, personal) for k, v in node.items()}
    if isinstance(node, list):
        return [scrub(v, personal) for v in node]
    if isinstance(node, str) and personal(node):
        return ERASED
    return node


def personal_test(values: frozenset, key: bytes):
    """A value is personal when recorded as is (x-pii keep) or when its keyed hash is (x-pii
    hash: events and feature state hold the value the decision's facts hold hashed)."""
    hashed = any(v.startswith(PREFIX) for v in values)
    return lambda s: s in values or (hashed and keyed_hash(s, key) in values)


def values_at(facts, paths) -> set:
    """The string values of `facts` at each property path (a tuple of names)."""
    out = set()
    for path in paths:
        node = facts
        for name in path:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, str) and node != ERASED:
            out.add(node)
    return out


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


# table, key column, JSON columns, the rows of the subject (bound :ids decision ids, :account)
SUBJECT_ROWS = (
    ("decisions", "id", ("facts", "context", "result", "features", "shadow_plan"), "id IN :ids"),
    ("decision_events", "id", ("payload",), "decision_id IN :ids"),
    ("outcomes", "id", ("detail",), "decision_id IN :ids"),
    ("approvals", "id", ("proposed", "edits"), "decision_id IN :ids"),
    ("outbox", "id", ("params", "result"), "decision_id IN :ids"),
    ("events", "seq", ("data",), "account_id = :account"),
    ("feature_state", "account_id", ("state",), "account_id = :account"),
)
CHAINED = ("decisions", "decision_events")


def rewrite(session, table, key, columns, where, params, fix) -> list[str]:
    """Apply `fix(column, value)` to each JSON column of the matching rows; the keys of rows changed."""
    stmt = text(f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {where}")
    used = {k: v for k, v in params.items() if f":{k}" in where}
    if "ids" in used:
        stmt = stmt.bindparams(bindparam("ids", expanding=True))
    changed = []
    for row in session.execute(stmt, used).all():
        new = {}
        for col, value in zip(columns, row[1:]):
            before = _json(value)
            after = fix(col, before)
            if after != before:
                new[col] = json.dumps(after)
        if new:
            session.execute(text(f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in new)} WHERE {key} = :k"),
                            {**new, "k": row[0]})
            changed.append(str(row[0]))
    return changed


def redact(session, personal, params) -> tuple[dict, list]:
    """Scrub the personal values from each kind of row `params` selects (decision ids, and the
    account's own rows when it names one): the rows changed per table, and the chained ones'
    new digests."""
    counts, rewritten = {}, []
    for table, key, columns, where in SUBJECT_ROWS:
        if all(f":{k}" not in where for k in params):
            continue
        changed = rewrite(session, table, key, columns, where, params,
                          lambda _col, v: scrub(v, personal) if v is not None else v)
        counts[table] = len(changed)
        if table in CHAINED:
            rewritten += digests(session, table, changed)
    return counts, rewritten


def digests(session, table, refs) -> list[list[str]]:
    """[table, ref, digest] of each row as it is now (the audit_digests view of migration 0012)."""
    out = []
    for ref in refs:
        d = session.execute(text("SELECT digest FROM audit_digests WHERE tbl = :t AND ref = :r"),
                            {"t": table, "r": ref}).scalar()
        out.append([table, ref, d])
    return out


def erase_subject(factory, account: str, marks_of, key: bytes, actor: str | None) -> dict:
    """Remove the personal values of `account` (what its decisions' facts hold at the paths
    `marks_of(flow)` gives) from every row of the account; one audited `subject.erased` entry."""
    with transaction(factory) as s:
        decisions = s.execute(text("SELECT id, flow, facts FROM decisions WHERE account_id = :a"),
                              {"a": account}).all()
        ids = [d.id for d in decisions]
        found: set = set()
        for d in decisions:
            found |= values_at(_json(d.facts), marks_of(d.flow))
        values = frozenset(found)
        personal = personal_test(values, key)
        counts, rewritten = {}, []
        if values:
            with sanctioned(s, "erase"):
                counts, rewritten = redact(s, personal, {"ids": ids or ["-"], "account": account})
        detail = {"account": account, "values": len(values), "rows": counts, "rewritten": rewritten}
        audit(s, actor, "subject.erased", account, detail)
    return {"account": account, "values": len(values), "rows": counts, "decisions": len(ids)}


def sanctioned_digests(session) -> dict:
    """(table, ref) → the digest the newest sanctioned rewrite left the row with."""
    out = {}
    for (detail,) in session.execute(text("SELECT detail FROM audit_log WHERE kind IN :k ORDER BY id")
                                     .bindparams(bindparam("k", expanding=True)),
                                     {"k": list(REWRITE_KINDS)}):
        for table, ref, digest in (_json(detail) or {}).get("rewritten", []):
            out[(table, ref)] = digest
    return out


def retain(factory, events_before, facts_before, marks_of, key: bytes, actor: str | None,
           dry_run: bool = False) -> dict:
    """Delete events that occurred before `events_before`; redact the personal values of
    decisions created before `facts_before`. One audited `retention.redacted` entry; with
    `dry_run` the same work is done and rolled back, so the counts are exact."""
    with factory() as s, s.begin() as tx:
        counts, rewritten = {}, []
        with sanctioned(s, "retention"):
            counts["events_deleted"] = s.execute(text("DELETE FROM events WHERE occurred_at < :t"),
                                                 {"t": events_before}).rowcount
            old = s.execute(text("SELECT id, flow, facts FROM decisions WHERE created_at < :t"),
                            {"t": facts_before}).all()
            found: set = set()
            for d in old:
                found |= values_at(_json(d.facts), marks_of(d.flow))
            if found:
                done, rewritten = redact(s, personal_test(frozenset(found), key), {"ids": [d.id for d in old]})
                counts.update(done)
        counts["values"] = len(found)
        audit(s, actor, "retention.redacted", None,
              {"events_before": events_before.isoformat(), "facts_before": facts_before.isoformat(),
               "rows": counts, "rewritten": rewritten})
        if dry_run:
            tx.rollback()
    return {"dry_run": dry_run, "events_before": events_before.isoformat(),
            "facts_before": facts_before.isoformat(), "rows": counts}
