"""`postsale replay`: recorded decisions decided again on changed rules, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from cli.replay import CHANGED, OK, cmd_replay
from tests.api.conftest import app, client, rules_dir, settings  # noqa: F401 - fixtures

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = ["healthy-mid-market", "high-risk-enterprise", "low-confidence", "outside-window", "overdue-smb",
         "recently-contacted"]


@pytest.fixture()
def api_keys() -> dict:
    return {"k-decide": ["decide", "read"]}


@pytest.fixture()
def recorded(client):
    for name in CASES:
        facts = json.loads((GOLDEN / f"{name}.facts.json").read_text())
        r = client.post("/v1/decisions", json={"flow": "renewal", "facts": facts},
                        headers={"Authorization": "Bearer k-decide"})
        assert r.status_code == 201, r.get_json()


def run(app, rules, capsys, **over):
    args = Namespace(**{"flow": "renewal", "rules": str(rules), "since": None, "limit": 1000, "examples": 10,
                        "json": True, "fail_on_change": False, **over})
    code = cmd_replay(args, factory=app.extensions["postsale"].factory)
    out = capsys.readouterr().out
    return code, (json.loads(out) if args.json else out)


def test_the_same_rules_decide_the_same(app, recorded, rules_dir, capsys):
    code, report = run(app, rules_dir, capsys)
    assert code == OK
    assert report["replayed"] == len(CASES) and report["changed"] == 0 and report["failed"] == 0


def test_a_rule_change_shows_what_it_does_to_real_decisions(app, recorded, rules_dir, capsys):
    flow = rules_dir / "renewal" / "flow.yaml"  # a stricter confidence floor: more decisions for a human
    flow.write_text(flow.read_text().replace("    minimum: 0.6\n", "    minimum: 0.99\n"))
    code, report = run(app, rules_dir, capsys)
    assert code == OK and report["changed"] >= 1
    assert "approval now required" in report["changes"], report["changes"]
    assert report["version"] not in report["recorded_versions"]
    code, _ = run(app, rules_dir, capsys, fail_on_change=True)
    assert code == CHANGED
    code, text = run(app, rules_dir, capsys, json=False)
    assert "changed" in text and "approval now required" in text


def test_rules_that_do_not_load_are_reported(app, recorded, rules_dir, capsys):
    (rules_dir / "renewal" / "flow.yaml").write_text("name: [\n")
    args = Namespace(flow="renewal", rules=str(rules_dir), since=None, limit=1000, examples=10, json=True,
                     fail_on_change=False)
    assert cmd_replay(args, factory=app.extensions["postsale"].factory) == 1
    assert "flow.yaml" in capsys.readouterr().err


def test_action_parameters_count_and_undecidable_decisions_fail_the_gate(app, recorded, rules_dir, capsys):
    from engine.replay import differences
    before = {"status": "automatic", "offers": [], "actions": [{"type": "schedule_outreach", "params": {"channel": "call"}}],
              "escalations": [], "approval": {"required": False}}
    after = {**before, "actions": [{"type": "schedule_outreach", "params": {"channel": "email"}}]}
    assert differences(before, after) == ["action schedule_outreach channel call → email"]
    schema = rules_dir / "renewal" / "facts.schema.yaml"
    schema.write_text(schema.read_text().replace("required: [account, contract]", "required: [account, contract, survey]")
                      .replace("properties:\n  account:", "properties:\n  survey: {type: object}\n  account:", 1))
    code, report = run(app, rules_dir, capsys, fail_on_change=True)
    assert report["failed"] == len(CASES) and code == CHANGED


class TestHeldOut:
    """Accounts held out when they were decided are held out again on replay, whatever share
    the replaying command reads (here the default 5%, where the service held out every account)."""

    @pytest.fixture()
    def settings_overrides(self):
        return {"holdout_share": 1.0}

    def test_held_out_decisions_replay_unchanged(self, app, recorded, rules_dir, capsys, monkeypatch):
        monkeypatch.delenv("POSTSALE_HOLDOUT_SHARE", raising=False)
        code, report = run(app, rules_dir, capsys, fail_on_change=True)
        assert code == OK, report
        assert report["replayed"] == len(CASES) and report["changed"] == 0
