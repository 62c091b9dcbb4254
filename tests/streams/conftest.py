"""A real Redis (tests/servers.py) and a fresh stream per test; the event store on the
`factory` fixture (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone

import pytest

BASE = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture()
def redis_env():
    """(url, client) of the test Redis."""
    from tests.servers import redis_client
    url, client = redis_client()
    yield url, client
    client.close()


@pytest.fixture()
def rds(redis_env):
    return redis_env[1]


@pytest.fixture()
def stream(rds):
    """A stream and group of this test's own; deleted afterwards."""
    name = f"test:events:{secrets.token_hex(5)}"
    yield name
    rds.delete(name, name + ":dead")


@pytest.fixture()
def store(factory):
    from adapters.store.events import EventStore
    return EventStore(factory)


def event(i: int, account: str | None = None, **over) -> dict:
    """A valid event envelope; the kind varies with i so the fold has work to do."""
    account = account or f"acc{i % 7}"
    at = (BASE + timedelta(hours=i)).isoformat().replace("+00:00", "Z")
    kinds = [
        ("product.usage", {"count": i % 11}),
        ("product.logins", {"count": 1 + i % 3}),
        ("support.ticket_opened", {"ticket_id": f"T{i // 4}", "severity": "high"}),
        ("support.ticket_closed", {"ticket_id": f"T{i // 4 - 1}"}),
        ("crm.account_updated", {"nps": i % 10, "seats": 10 + i % 50}),
        ("billing.invoice_overdue", {"invoice_id": f"I{i // 7}", "due_date": "2026-05-01"}),
        ("billing.invoice_paid", {"invoice_id": f"I{i // 7 - 1}"}),
        ("product.seats_used", {"seats_used": i % 40}),
    ]
    type_, data = kinds[i % len(kinds)]
    out = {"id": f"ev-{i}", "type": type_, "account_id": account, "occurred_at": at, "data": data}
    out.update(over)
    return out


def add(rds, stream: str, obj) -> str:
    """XADD one entry holding obj as JSON (or a raw string) in field `event`."""
    raw = obj if isinstance(obj, str) else json.dumps(obj)
    return rds.xadd(stream, {"event": raw}).decode()


def stored_ids(factory) -> list[str]:
    from sqlalchemy import select

    from adapters.store.models import Event as EventRow
    with factory() as s:
        return list(s.scalars(select(EventRow.event_id)))
