"""The audit chain on SQLite and PostgreSQL: an untouched database verifies, and each kind of
tampering (a row updated, deleted, inserted; entries removed, inserted, reordered; a checkpoint
forged) fails verification naming the entry."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from adapters.store.audit import checkpoint, verify
from adapters.store.db import transaction
from adapters.store.decisions import DecisionStore, audit
from adapters.store.models import DecisionEvent

KEY = b"test-audit-key"
RESULT = {"status": "automatic", "actions": [], "approval": {"required": False}, "offers": []}


def _decide(factory, account, complete=None):
    facts = {"account": {"id": account, "segment": "smb"}}
    decision_id, _, _ = DecisionStore(factory).record(
        flow="renewal", version="v1", facts=facts, context={}, result=RESULT, request_hash="h" * 64,
        api_key_id="k1", complete=complete)
    return decision_id


@pytest.fixture()
def recorded(factory):
    """Three decisions (both write paths), an approval-like event and a ruleset change."""
    ids = [_decide(factory, "acc-1"), _decide(factory, "acc-2", complete=lambda *a: None), _decide(factory, "acc-3")]
    with transaction(factory) as s:
        s.add(DecisionEvent(decision_id=ids[0], type="approval.approved", created_at=ids and _now(), actor="k2",
                            payload={"approval": "a1"}))
        audit(s, "k2", "ruleset.activated", "renewal", {"version": "v2", "previous": "v1"})
    return ids


def _now():
    from adapters.store.db import now
    return now()


def _sql(factory, statement, **params):
    with transaction(factory) as s:
        s.execute(text(statement), params)


def _unguard(factory, table):
    """What someone with the database's password could do: lift the append-only triggers."""
    pg = factory.kw["bind"].dialect.name == "postgresql"
    if pg:
        _sql(factory, f"ALTER TABLE {table} DISABLE TRIGGER USER")
    else:
        for verb in ("update", "delete"):
            _sql(factory, f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        if table != "audit_chain":
            _sql(factory, f"DROP TRIGGER IF EXISTS {table}_audit")


def _problems(factory):
    result = verify(factory, KEY)
    assert not result.ok
    return [str(p) for p in result.problems]


def test_an_untouched_database_verifies(factory, recorded):
    checkpoint(factory, KEY)
    _decide(factory, "acc-4")
    checkpoint(factory, KEY)
    result = verify(factory, KEY)
    assert result.ok, result.problems
    # 4 decisions, their 4 decided events, one more event and one audit entry
    assert result.entries == 10 and result.checkpoints == 2


def test_an_updated_row_is_named(factory, recorded):
    _unguard(factory, "decisions")
    _sql(factory, "UPDATE decisions SET status = 'escalated' WHERE id = :id", id=recorded[1])
    problems = _problems(factory)
    assert any(p.startswith("altered:") and f"decisions {recorded[1]}" in p for p in problems), problems


def test_a_deleted_row_is_named(factory, recorded):
    _unguard(factory, "audit_log")
    ref = _one(factory, "SELECT CAST(id AS TEXT) FROM audit_log")
    _sql(factory, "DELETE FROM audit_log")
    problems = _problems(factory)
    assert problems == [p for p in problems if p.startswith("removed:") and f"audit_log {ref}" in p] and problems


def test_an_inserted_row_is_named(factory, recorded):
    _unguard(factory, "decisions")
    _sql(factory, "INSERT INTO decisions (id, created_at, flow, ruleset_version, status, request_hash, facts, "
                  "context, result) VALUES ('forged', '2026-01-01 00:00:00', 'renewal', 'v1', 'automatic', 'h', "
                  "'{}', '{}', '{}')")
    assert _problems(factory) == ["inserted: decisions forged: the row has no audit entry"]


def test_a_removed_entry_is_named(factory, recorded):
    _unguard(factory, "audit_chain")
    lane, seq = _middle(factory)
    _sql(factory, "DELETE FROM audit_chain WHERE lane = :l AND seq = :s", l=lane, s=seq)
    problems = _problems(factory)
    assert f"removed: lane {lane} seq {seq}: missing before lane {lane} seq {seq + 1}" in " ".join(problems), problems


def test_an_inserted_entry_is_named(factory, recorded):
    _unguard(factory, "audit_chain")
    lane, seq = _middle(factory)
    _sql(factory, "INSERT INTO audit_chain (lane, seq, tbl, ref, digest, prev_hash, hash, created_at) "
                  "SELECT lane, seq, tbl, ref, digest, prev_hash, hash, created_at FROM audit_chain "
                  "WHERE lane = :l AND seq = :s", l=lane, s=seq)
    problems = _problems(factory)
    assert any(p.startswith(f"inserted: lane {lane} seq {seq} ") for p in problems), problems


def test_reordered_entries_are_named(factory, recorded):
    _unguard(factory, "audit_chain")
    lane, seq = _middle(factory)
    _sql(factory, "UPDATE audit_chain SET seq = -1 WHERE lane = :l AND seq = :s", l=lane, s=seq)
    _sql(factory, "UPDATE audit_chain SET seq = :s WHERE lane = :l AND seq = :n", l=lane, s=seq, n=seq + 1)
    _sql(factory, "UPDATE audit_chain SET seq = :n WHERE lane = :l AND seq = -1", l=lane, n=seq + 1)
    problems = _problems(factory)
    assert any(p.startswith(f"reordered: lane {lane} seq {seq} ") for p in problems), problems


def test_a_rewritten_chain_fails_its_checkpoint(factory, recorded):
    """Recomputing every hash after a change needs no key; the signed heads still disagree."""
    checkpoint(factory, KEY)
    _unguard(factory, "audit_chain")
    _sql(factory, "UPDATE audit_chain SET hash = :h WHERE id = (SELECT MAX(id) FROM audit_chain)", h="f" * 64)
    assert any(p.startswith("altered: lane") and "signed" in p for p in _problems(factory))
    assert not verify(factory, b"another key").ok


def _one(factory, statement):
    with factory() as s:
        return s.execute(text(statement)).scalar()


def _middle(factory):
    """A lane with at least three entries and one of its middle entries."""
    with factory() as s:
        lane, top = s.execute(text("SELECT lane, MAX(seq) FROM audit_chain GROUP BY lane HAVING MAX(seq) >= 3 "
                                   "ORDER BY lane LIMIT 1")).one()
    return lane, 2


def test_the_cli_names_the_entry_and_exits_2(factory, recorded, monkeypatch):
    import argparse
    import io

    from cli.audit import cmd_checkpoint, cmd_verify
    monkeypatch.setenv("POSTSALE_AUDIT_KEY", KEY.decode())
    out = io.StringIO()
    assert cmd_checkpoint(argparse.Namespace(json=False), out, factory) == 0
    assert cmd_verify(argparse.Namespace(json=False), out, factory) == 0
    assert "audit chain intact: 8 entries" in out.getvalue()
    _unguard(factory, "decisions")
    _sql(factory, "UPDATE decisions SET facts = '{}' WHERE id = :id", id=recorded[0])
    out = io.StringIO()
    assert cmd_verify(argparse.Namespace(json=True), out, factory) == 2
    import json
    report = json.loads(out.getvalue())
    assert [p["kind"] for p in report["problems"]] == ["altered"] and recorded[0] in report["problems"][0]["entry"]


def test_a_decision_stays_one_statement_on_postgresql(factory):
    """The chain is written by triggers inside the decision's own statement: no round trip more."""
    from sqlalchemy import event
    engine = factory.kw["bind"]
    seen = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        _decide(factory, "acc-9")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    writes = [s for s in seen if s.lstrip().upper().startswith(("WITH", "INSERT"))]
    assert len(writes) == (1 if engine.dialect.name == "postgresql" else 2), seen
    assert verify(factory, None).entries == 2
