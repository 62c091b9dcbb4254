"""`postsale evaluate-policy` on decisions logged through the API with exploration and a
holdout, and outcomes posted through /v1/outcomes: the holdout and the decisions without an
outcome are left out, the candidate is matched to the logged plans, and IPS, SNIPS and DR come
with intervals; on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
from argparse import Namespace

import pytest

from cli.learning import cmd_evaluate_policy, report_text
from engine.explore import Exploration
from simulator.book import book
from tests.learning.outcomes_loop import decide_and_report


@pytest.fixture()
def settings_overrides():
    return {"holdout_share": 0.1, "explore_share": 0.3, "experiment_salt": "ope", "inline_dispatch_ms": 0}


def test_the_running_policy_evaluated_on_its_own_log(app, client, root):
    accounts = book(accounts=120, seed=11)
    done = decide_and_report(client, accounts, seed=3, skip_every=10)
    held = sum(Exploration(0.1, 0.3, "ope").held_out(a.id) for a in accounts)
    out = io.StringIO()
    args = Namespace(candidate=str(app.extensions["postsale"].settings.rules_dir), models=str(root / "models"),
                     flow="renewal", since=None, json=True)
    assert cmd_evaluate_policy(args, out=out, factory=app.extensions["postsale"].factory) == 0
    report = json.loads(out.getvalue())
    c = report["counts"]
    assert c["logged"] == 120 and c["holdout"] == held and c["failed"] == 0
    skipped = [d for i, d in enumerate(done) if i % 10 == 9 and d["decision"]["policy"]["arm"] != "holdout"]
    assert c["no_outcome"] == len(skipped)
    assert c["evaluated"] == 120 - held - len(skipped)
    arms = [d["decision"]["policy"]["arm"] for i, d in enumerate(done) if i % 10 != 9]
    exploit = sum(a == "exploit" for a in arms)
    # the candidate is the running policy's exploitation: it takes every exploited plan again
    assert report["support"] >= exploit / c["evaluated"] - 1e-9
    for e in report["estimates"].values():
        assert e["ci95"][0] <= e["value"] <= e["ci95"][1] and e["rows"] == c["evaluated"]
    assert set(report["estimates"]) == {"ips", "snips", "dr"}
    assert "the candidate" in report_text(report)
