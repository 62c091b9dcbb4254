"""The API with an ingest key, on SQLite and PostgreSQL (the app fixtures are tests/api's)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import app, client, rules_dir, settings  # noqa: F401 - fixtures (db_url: tests/conftest.py)

KEYS = {"k-ingest": ["ingest"], "k-read": ["read"], "k-admin": ["admin", "read"], "k-decide": ["decide", "read"]}


@pytest.fixture()
def api_keys() -> dict:
    return KEYS


def auth(key: str = "k-ingest") -> dict:
    return {"Authorization": f"Bearer {key}"}


def at(days_ago: float = 0, now: datetime | None = None) -> str:
    t = (now or datetime.now(timezone.utc)) - timedelta(days=days_ago)
    return t.isoformat().replace("+00:00", "Z")


def renewal_story(account: str, *, segment="mid_market", arr=84000, seats=120, seats_used=115, growth=True,
                  incidents=0, renewal_in_days=60, prefix=None) -> list[dict]:
    """A CRM profile, a renewal window and 180 days of usage: enough for every renewal fact."""
    p = prefix or account
    today = datetime.now(timezone.utc)
    renewal = (today + timedelta(days=renewal_in_days)).date().isoformat()
    events = [
        {"id": f"{p}-profile", "type": "crm.account_updated", "account_id": account, "occurred_at": at(120),
         "data": {"segment": segment, "arr": arr, "plan": "pro", "seats": seats, "seat_price": 700, "nps": 9,
                  "last_contact_at": at(30)}},
        {"id": f"{p}-renewal", "type": "crm.renewal_window_opened", "account_id": account, "occurred_at": at(1),
         "data": {"renewal_date": renewal, "term_months": 12, "requested_discount": 10}},
        {"id": f"{p}-seats", "type": "product.seats_used", "account_id": account, "occurred_at": at(1),
         "data": {"seats_used": seats_used}},
    ]
    for d in range(0, 180, 3):
        count = (200 if d < 90 else 140) if growth else 150
        events.append({"id": f"{p}-u{d}", "type": "product.usage", "account_id": account, "occurred_at": at(d),
                       "data": {"count": count}})
        events.append({"id": f"{p}-l{d}", "type": "product.logins", "account_id": account, "occurred_at": at(d),
                       "data": {"count": 60}})
    for i in range(incidents):
        events.append({"id": f"{p}-inc{i}", "type": "support.incident", "account_id": account, "occurred_at": at(2 + i),
                       "data": {"incident_id": f"INC-{p}-{i}", "severity": "sev2"}})
    return events
