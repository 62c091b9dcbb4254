"""`make demo` end to end: examples/demo.py run as a user runs it, in its own process.

Each run is a subprocess on its own SQLite database; the JSON document (--json) says what
happened to each account. A second run on the same database finds every event stored already.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.py"
TIMEOUT = 60


def run_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)


def demo_json(*args: str) -> dict:
    done = run_demo("--json", *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module", autouse=True)
def choice(tmp_path_factory):
    """The demo serves hand-made response models (tests/choice_models.py): each renewal offer goes
    out at its ceiling with the upsell, so the story's quotes are there whatever the shipped models
    would choose."""
    from tests.choice_models import CEILING, models_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSTSALE_MODELS_DIR", str(models_dir(tmp_path_factory.mktemp("demo-models") / "models", **CEILING)))
        yield


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"


@pytest.fixture(scope="module")
def first(db) -> dict:
    return demo_json("--database-url", db)


@pytest.fixture(scope="module")
def again(first, db) -> dict:
    return demo_json("--database-url", db)


@pytest.fixture(scope="module")
def http(tmp_path_factory) -> dict:
    return demo_json("--tools", "http", "--database-url", f"sqlite:///{tmp_path_factory.mktemp('http') / 'demo.db'}")


def actions(account: dict) -> dict:
    return {a["type"]: a for a in account["actions"]}


def records(account: dict) -> dict:
    return {r["kind"]: r for r in account["tool_records"]}


# --------------------------------------------------------------------------- the story



def test_events_settle_into_one_evaluation_per_account(first):
    for name, account in first["accounts"].items():
        assert account["events"]["accepted"] == account["events"]["sent"] > 1, name
        assert account["events"]["duplicates"] == 0, name
        assert account["evaluations"] == 1, name
    assert first["history"]["accepted"] == first["history"]["events"] > 400
    assert first["rerun"] is False


def test_mid_market_expansion_is_quoted_and_outreach_scheduled_automatically(first):
    northwind = first["accounts"]["northwind"]
    decision = northwind["decision"]
    assert decision["status"] == "automatic"
    assert decision["context"]["source"] == "trigger"
    offers = {o["offer"]: o for o in decision["offers"]}
    assert offers["addon_seats"]["kind"] == "upsell"
    assert offers["renewal_36m"]["kind"] == "renewal"
    assert {"addon-seats-size", "addon-seats-offer", "extended-term-offer"} <= set(decision["rules_fired"])
    assert decision["scores"]["churn_risk"]["model"] == "churn-gbm@1.0.0"
    assert northwind["features"]["seat_utilisation"] >= 0.9
    assert northwind["features"]["usage_growth_90d"] >= 0.2
    assert actions(northwind)["create_quote"]["state"] == "done"
    assert actions(northwind)["schedule_outreach"]["state"] == "done"
    quote = records(northwind)["quote"]
    assert (quote["tool"], quote["status"], quote["data"]["offer"]) == ("crm", "open", "renewal_36m")
    assert records(northwind)["outreach_task"]["status"] == "scheduled"
    assert northwind["approval"] is None


def test_high_risk_enterprise_alert_waits_for_the_csm_then_runs(first):
    globex = first["accounts"]["globex"]
    decision = globex["decision"]
    assert decision["status"] == "approval_required"
    assert decision["scores"]["churn_risk"]["value"] >= 0.7
    assert "csm-review-high-risk" in decision["rules_fired"]
    assert globex["features"]["sev1_incidents_30d"] >= 1 and globex["features"]["open_tickets"] >= 1
    approval = globex["approval"]
    assert approval["states"] == ["pending", "approved"]
    assert approval["queues"] == ["csm"]
    assert {a["state"] for a in approval["held_actions"]} == {"awaiting_approval"}
    assert "alert_csm" in {a["type"] for a in approval["held_actions"]}
    assert {a["state"] for a in globex["actions"]} == {"done"}
    assert records(globex)["alert"]["status"] == "sent"
    events = globex["audit"]["decision_events"]
    assert events[0] == "decided" and "approval.approved" in events
    assert events.index("approval.approved") < events.index("action.done")
    assert "approval.approved" in {e["kind"] for e in globex["audit"]["audit_log"]}


def test_overdue_invoice_blocks_the_discount_and_opens_a_finance_case(first):
    initech = first["accounts"]["initech"]
    decision = initech["decision"]
    assert initech["features"]["days_overdue"] > 30
    clamp = [a for a in decision["adjustments"] if a["guardrail"] == "overdue-no-discount"]
    assert clamp and clamp[0]["to"] == 0 and clamp[0]["from"] > 0
    assert all(o["discount"] == 0 for o in decision["offers"])
    assert "finance" in {e["queue"] for e in decision["escalations"]}
    assert actions(initech)["open_case"]["state"] == "done"
    assert records(initech)["case"]["data"]["team"] == "finance"
    assert records(initech)["quote"]["data"]["discount"] == 0


def test_healthy_account_needs_nothing(first):
    vandelay = first["accounts"]["vandelay"]
    assert vandelay["evaluation"] == {"unchanged": 1}
    assert vandelay["decision"]["status"] == "no_action"
    assert vandelay["actions"] == [] and vandelay["tool_records"] == []


def test_audit_trail_and_kpis(first):
    kinds = first["audit_kinds"]
    for kind in ("ruleset.activated", "approval.approved", "tool.call", "outcome.recorded"):
        assert kinds.get(kind, 0) >= 1, kind
    # northwind: quote, outreach; globex (approved): alert, quote, outreach; initech: case, quote, outreach
    assert kinds["tool.call"] == 8
    assert first["kpis_status"] == 200
    kpis = first["kpis"]["groups"][0]["kpis"]
    assert kpis["renewal_rate"]["renewed"] == 3
    assert kpis["expansion_revenue"]["value"] > 0
    assert kpis["actions"]["human_approved"] == 3  # globex's held alert, quote and outreach
    assert kpis["action_success_rate"]["value"] == 1.0


def test_a_second_run_finds_every_event_stored_and_decides_nothing(first, again):
    assert again["rerun"] is True
    assert again["events"]["accepted"] == 0
    assert again["events"]["duplicates"] == first["events"]["accepted"]
    assert again["new_decisions"] == []
    for name, account in again["accounts"].items():
        assert account["evaluations"] == 0, name
        assert account["decision"]["id"] == first["accounts"][name]["decision"]["id"], name
    assert again["accounts"]["globex"]["approval"]["states"] == ["approved"]
    assert again["outcomes_replayed"] is True
    assert again["audit_kinds"] == first["audit_kinds"]


# --------------------------------------------------------------------------- the HTTP adapters

def test_the_same_story_through_the_http_adapters(http):
    keys = {}
    for name in ("northwind", "globex", "initech"):
        account = http["accounts"][name]
        assert {a["state"] for a in account["actions"]} == {"done"}, name
        for a in account["actions"]:
            keys[a["idempotency_key"]] = (name, a["type"])
    received = http["http_requests"]
    assert len(received) == len(keys) == 8
    assert all(r["authorised"] and r["status"] == 201 for r in received)
    assert {r["idempotency_key"] for r in received} == set(keys)
    by_key = {r["idempotency_key"]: r for r in received}
    paths = {keys[k]: (r["tool"], r["method"], r["path"]) for k, r in by_key.items()}
    assert paths[("northwind", "create_quote")] == ("crm", "POST", "/quotes")
    assert paths[("northwind", "schedule_outreach")] == ("marketing", "POST", "/outreach-tasks")
    assert paths[("globex", "alert_csm")] == ("notifications", "POST", "/alerts")
    assert paths[("globex", "create_quote")] == ("crm", "POST", "/quotes")
    assert paths[("initech", "open_case")] == ("cases", "POST", "/cases")
    assert http["accounts"]["globex"]["approval"]["states"] == ["pending", "approved"]


# --------------------------------------------------------------------------- as printed

def test_the_story_as_printed(tmp_path):
    done = run_demo("--database-url", f"sqlite:///{tmp_path / 'demo.db'}")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for phrase in ("5 events in 2 deliveries → 1 evaluation", "pending in the csm queue", "approve as the CSM",
                   "overdue-no-discount", "CRM quote", "What it earned (GET /v1/kpis)", "renewal rate"):
        assert phrase in text, phrase


def test_an_unusable_database_is_one_line(tmp_path):
    done = run_demo("--database-url", "nosuchdriver://x")
    assert done.returncode == 1
    assert done.stderr.startswith("demo: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
