"""The console under test: the approvals suite's app (SQLite and PostgreSQL, the ceiling models so
a held decision proposes a discount to edit) with console keys, and a signed-in client."""
from __future__ import annotations

import re

import pytest

from tests.approvals.conftest import (app, client, deal_desk, factory, high_risk, models_dir,  # noqa: F401
                                      rules_dir, settings, settings_overrides)

KEYS = {"c-decide": ["decide", "read"], "c-approve": ["approve", "read"], "c-read": ["read"],
        "c-admin": ["admin", "read"]}
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture()
def api_keys() -> dict:
    return KEYS


def token(page) -> str:
    return TOKEN.search(page.get_data(as_text=True)).group(1)


def sign_in(client, key: str, next_: str = ""):
    form = client.get("/console/signin")
    return client.post("/console/signin", data={"csrf_token": token(form), "api_key": key, "next": next_})


def held(client, facts: dict) -> tuple[dict, str]:
    """A decision held for approval (asked with c-decide over the API) and its approval id."""
    r = client.post("/v1/decisions", json={"facts": facts}, headers={"Authorization": "Bearer c-decide"})
    assert r.status_code == 201 and r.json["status"] == "approval_required", r.json
    items = client.get("/v1/approvals?status=all&limit=500", headers={"Authorization": "Bearer c-approve"}).json["items"]
    return r.json, next(i["id"] for i in items if i["decision_id"] == r.json["id"])
