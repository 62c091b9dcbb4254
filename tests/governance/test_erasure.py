"""Erasing a subject and retention on SQLite and PostgreSQL: after decisions, events and an
outcome through the API, none of the subject's personal values is left in any table, another
subject's are, the audit chain verifies, and a change made afterwards is still caught; retention
deletes only the events and redacts only the decisions its policy names."""
from __future__ import annotations

import argparse
import io
import json

import pytest
from sqlalchemy import text

from adapters.store.audit import verify
from adapters.store.db import transaction
from engine.pii import keyed_hash
from tests.api.conftest import app, auth, client, settings  # noqa: F401 - fixtures
from tests.governance.test_pii import _everything, rules_with

KEY = b"test-pii-key"
SUBJECTS = {"acc-erase": ("erase.me@example.com", "+44 20 7946 0001"),
            "acc-stays": ("stay.here@example.com", "+44 20 7946 0002")}


@pytest.fixture()
def rules_dir(tmp_path, root):
    """The shipped rules with a hashed and a kept personal property on the account."""
    return rules_with(tmp_path, root, contact_email={"type": "string", "x-pii": "hash"},
                      contact_phone={"type": "string", "x-pii": "keep"})


@pytest.fixture()
def api_keys():
    return {"k-decide": ["decide", "read"], "k-ingest": ["ingest"]}


@pytest.fixture()
def settings_overrides(tmp_path):
    policy = tmp_path / "retention.yaml"
    policy.write_text("events_days: 1000\ndecision_facts_days: 730\n")
    return {"pii_key": KEY.decode(), "retention_file": policy}


@pytest.fixture()
def recorded(app, client, example_facts):
    """Two subjects, each with a decision, an event carrying its email and an outcome."""
    for account, (email, phone) in SUBJECTS.items():
        facts = json.loads(json.dumps(example_facts))
        facts["account"].update(id=account, contact_email=email, contact_phone=phone)
        r = client.post("/v1/decisions", json={"facts": facts}, headers=auth())
        assert r.status_code == 201, r.get_json()
        decision = r.get_json()["id"]
        event = {"id": f"{account}-crm", "type": "crm.account_updated", "account_id": account,
                 "occurred_at": "2026-01-05T00:00:00Z", "data": {"segment": "mid_market", "nps": 9}}
        r = client.post("/v1/events", json=[event], headers=auth("k-ingest"))
        assert r.status_code in (200, 202), r.get_json()
        _event_with(app, account, {"contact_email": email, "contact_phone": phone})
        r = client.post("/v1/outcomes", json={"id": f"{account}-won", "decision_id": decision, "type": "renewed",
                                              "amount": 100, "occurred_at": "2026-01-06T00:00:00Z"}, headers=auth())
        assert r.status_code in (200, 201), r.get_json()


def _event_with(app, account, data):
    """An event as a source whose schema carries contact details would record it."""
    from adapters.store.db import now
    from adapters.store.models import Event
    with transaction(app.extensions["postsale"].factory) as s:
        s.add(Event(event_id=f"{account}-contact", account_id=account, type="crm.contact_updated",
                    occurred_at=now(), received_at=now(), source="crm", data=data))


def _erase(app, account):
    from cli.privacy import cmd_erase
    out = io.StringIO()
    code = cmd_erase(argparse.Namespace(account=account, actor="dpo", json=True), out, app.extensions["postsale"])
    assert code == 0
    return json.loads(out.getvalue())


def test_an_erased_subject_is_gone_from_every_table_and_the_chain_verifies(app, recorded):
    rt = app.extensions["postsale"]
    email, phone = SUBJECTS["acc-erase"]
    before = _everything(rt.db)
    assert phone in before and email in before and keyed_hash(email, KEY) in before
    done = _erase(app, "acc-erase")
    assert done["values"] == 2 and done["rows"]["decisions"] == 1 and done["rows"]["events"] == 1, done
    after = _everything(rt.db)
    for value in (email, phone, keyed_hash(email, KEY), "erase.me"):
        assert value not in after
    other_email, other_phone = SUBJECTS["acc-stays"]
    assert other_phone in after and other_email in after and keyed_hash(other_email, KEY) in after
    result = verify(rt.factory, None)
    assert result.ok, result.problems
    with rt.factory() as s:
        entry = s.execute(text("SELECT actor, subject, detail FROM audit_log WHERE kind = 'subject.erased'")).one()
    detail = entry.detail if isinstance(entry.detail, dict) else json.loads(entry.detail)
    assert (entry.actor, entry.subject, detail["rows"]["decisions"]) == ("dpo", "acc-erase", 1)


def test_a_change_after_the_erasure_is_still_caught(app, recorded):
    rt = app.extensions["postsale"]
    _erase(app, "acc-erase")
    with transaction(rt.factory) as s:
        decision = s.execute(text("SELECT id FROM decisions WHERE account_id = 'acc-erase'")).scalar()
        s.execute(text("INSERT INTO sanctioned_rewrites (reason) VALUES ('forged')"))
        s.execute(text("UPDATE decisions SET status = 'escalated' WHERE id = :id"), {"id": decision})
        s.execute(text("DELETE FROM sanctioned_rewrites"))
    problems = [str(p) for p in verify(rt.factory, None).problems]
    assert problems and all(p.startswith("altered:") and f"decisions {decision}" in p for p in problems), problems


def test_the_guards_hold_outside_an_erasure(app, recorded):
    rt = app.extensions["postsale"]
    with pytest.raises(Exception, match="append-only"):
        with transaction(rt.factory) as s:
            s.execute(text("UPDATE events SET data = '{}' WHERE account_id = 'acc-erase'"))


def _retention(app, dry_run, days_from_now=731):
    from datetime import timedelta

    from adapters.store.db import now
    from service import privacy
    rt = app.extensions["postsale"]
    return privacy.run_retention(rt, actor="ops", dry_run=dry_run, at=now() + timedelta(days=days_from_now))


def _table(app, statement):
    with app.extensions["postsale"].factory() as s:
        return [tuple(r) for r in s.execute(text(statement))]


def test_retention_deletes_old_events_and_redacts_old_decisions(app, recorded):
    rt = app.extensions["postsale"]
    before = sorted(_everything(rt.db).splitlines())
    dry = _retention(app, dry_run=True)
    assert sorted(_everything(rt.db).splitlines()) == before
    assert dry["rows"]["events_deleted"] == 2 and dry["rows"]["decisions"] == 2 and dry["rows"]["values"] == 4, dry
    done = _retention(app, dry_run=False)
    assert done["rows"] == dry["rows"]
    # the API's events occurred in January 2026, more than 1000 days before; the contact events today
    assert sorted(e for (e,) in _table(app, "SELECT event_id FROM events")) == ["acc-erase-contact", "acc-stays-contact"]
    decisions = repr(_table(app, "SELECT facts, result, context FROM decisions"))
    for email, phone in SUBJECTS.values():
        assert phone not in decisions and keyed_hash(email, KEY) not in decisions
    result = verify(rt.factory, None)
    assert result.ok, result.problems
    assert _table(app, "SELECT actor FROM audit_log WHERE kind = 'retention.redacted'") == [("ops",)]
    with transaction(rt.factory) as s:
        s.execute(text("INSERT INTO sanctioned_rewrites (reason) VALUES ('forged')"))
        s.execute(text("DELETE FROM decision_events WHERE id = (SELECT MIN(id) FROM decision_events)"))
        s.execute(text("DELETE FROM sanctioned_rewrites"))
    assert [p.kind for p in verify(rt.factory, None).problems] == ["removed"]


def test_retention_within_the_policy_changes_nothing(app, recorded):
    done = _retention(app, dry_run=False, days_from_now=0)
    assert done["rows"] == {"events_deleted": 0, "values": 0}, done
    assert verify(app.extensions["postsale"].factory, None).ok


def test_a_bad_policy_is_named(app, tmp_path):
    from service import privacy
    bad = tmp_path / "bad.yaml"
    bad.write_text("events_days: soon\n")
    with pytest.raises(privacy.PolicyError, match=r"bad.yaml: events_days: 'soon'.*decision_facts_days: None"):
        privacy.retention_policy(bad)
