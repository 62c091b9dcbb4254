"""Outcomes and KPIs on SQLite and PostgreSQL (the app fixtures are tests/api's)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.api.conftest import app, client, rules_dir, settings  # noqa: F401 - fixtures (db_url: tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"k-decide": ["decide", "read"], "k-read": ["read"], "k-approve": ["approve", "read"]}
EXAMPLE = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())


@pytest.fixture()
def api_keys() -> dict:
    return KEYS


@pytest.fixture()
def models_dir(ceiling_models_dir):
    """The renewal goes out at its ceiling with the upsell, whatever the shipped models would
    choose: outcomes and KPIs of offers made need those offers made."""
    return ceiling_models_dir


@pytest.fixture()
def factory(app):
    return app.extensions["postsale"].factory


def auth(key: str = "k-decide") -> dict:
    return {"Authorization": f"Bearer {key}"}


def facts(account_id: str = "acme-001") -> dict:
    """Mid-market, healthy: a renewal_36m (renewal) and an addon_seats (upsell) offer, automatic."""
    f = copy.deepcopy(EXAMPLE)
    f["account"]["id"] = account_id
    return f


def decide(client, account_id: str = "acme-001") -> dict:
    r = client.post("/v1/decisions", json={"facts": facts(account_id)}, headers=auth())
    assert r.status_code == 201, r.json
    return r.json
