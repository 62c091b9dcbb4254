"""Erasing a subject on SQLite and PostgreSQL: after decisions, events and an outcome through
the API, none of the subject's personal values is left in any table, another subject's are,
the audit chain verifies, and a change made after the erasure is still caught."""
from __future__ import annotations

import argparse
import io
import json

import pytest
import yaml
from sqlalchemy import text

from adapters.store.audit import verify
from adapters.store.db import transaction
from engine.pii import keyed_hash
from tests.api.conftest import app, auth, client, settings  # noqa: F401 - fixtures
from tests.governance.test_pii import _everything

KEY = b"test-pii-key"
SUBJECTS = {"acc-erase": ("erase.me@example.com", "+44 20 7946 0001"),
            "acc-stays": ("stay.here@example.com", "+44 20 7946 0002")}


@pytest.fixture()
def rules_dir(tmp_path, root):
    """The shipped rules with a hashed and a kept personal property on the account."""
    import shutil
    dst = tmp_path / "rules"
    shutil.copytree(root / "rules", dst)
    path = dst / "renewal" / "facts.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    schema["properties"]["account"]["properties"].update(
        contact_email={"type": "string", "x-pii": "hash"}, contact_phone={"type": "string", "x-pii": "keep"})
    path.write_text(yaml.safe_dump(schema))
    return dst


@pytest.fixture()
def api_keys():
    return {"k-decide": ["decide", "read"], "k-ingest": ["ingest"]}


@pytest.fixture()
def settings_overrides():
    return {"pii_key": KEY.decode()}


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
