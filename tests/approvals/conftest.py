"""The API with approver keys, on SQLite and PostgreSQL (the database fixtures are tests/api's)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from api.auth import digest
from tests.api.conftest import app, client, rules_dir, settings  # noqa: F401 - fixtures (db_url: tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"k-decide": ["decide", "read"], "k-read": ["read"], "k-approve": ["approve", "read"],
        "k-approve-2": ["approve"], "k-decide-approve": ["decide", "approve", "read"]}
HIGH_RISK = json.loads((ROOT / "tests" / "golden" / "high-risk-enterprise.facts.json").read_text())
EXAMPLE = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())


def key_id(key: str) -> str:
    return digest(key)[:12]


def auth(key: str = "k-approve") -> dict:
    return {"Authorization": f"Bearer {key}"}


def high_risk(account_id: str = "acme-001") -> dict:
    f = copy.deepcopy(HIGH_RISK)
    f["account"]["id"] = account_id
    return f


def deal_desk(account_id: str = "acme-002", requested: float = 27) -> dict:
    """Mid-market, healthy: a 36-month offer whose request is 7 points over the cap of 20, so the
    discount-cap guardrail clamps it to 20 and the deal desk must approve."""
    f = copy.deepcopy(EXAMPLE)
    f["account"]["id"] = account_id
    f["contract"]["requested_discount"] = requested
    return f


@pytest.fixture()
def api_keys() -> dict:
    return KEYS


@pytest.fixture()
def models_dir(ceiling_models_dir):
    """The renewal goes out at its ceiling with the upsell, whatever the shipped models would
    choose: a deal-desk discount to edit, a quote beside the CSM's actions."""
    return ceiling_models_dir


@pytest.fixture()
def settings_overrides(db_url) -> dict:
    """On SQLite an approval runs what it releases inline: a budget no loaded machine spends on
    three fake tools, so that "released" means done there (PostgreSQL's default budget is 0)."""
    return {"inline_dispatch_ms": 60_000} if db_url.startswith("sqlite") else {}


@pytest.fixture()
def factory(app):
    return app.extensions["postsale"].factory


def decide(client, facts: dict, key: str = "k-decide") -> dict:
    r = client.post("/v1/decisions", json={"facts": facts}, headers=auth(key))
    assert r.status_code == 201, r.json
    return r.json


def held(client, facts: dict, key: str = "k-decide") -> tuple[dict, dict]:
    """Decide, and the approval item it created."""
    d = decide(client, facts, key)
    assert d["status"] == "approval_required", d
    items = client.get("/v1/approvals?status=all&limit=500", headers=auth()).json["items"]
    mine = [i for i in items if i["decision_id"] == d["id"]]
    assert len(mine) == 1
    return d, mine[0]
