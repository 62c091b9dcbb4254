"""Treated vs holdout through the API, the CLI and /metrics: the KPIs of each arm are the means
of what the outcomes say, and the uplift's interval contains the true uplift the simulator's
hidden truth gives for the same accounts and actions; on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
from argparse import Namespace

import numpy as np
import pytest

from cli.learning import cmd_holdout
from simulator.actions import NONE
from simulator.book import book
from tests.api.conftest import auth
from tests.learning.outcomes_loop import decide_and_report, expected_revenue


@pytest.fixture()
def settings_overrides():
    return {"holdout_share": 0.3, "explore_share": 0.0, "experiment_salt": "kpi", "inline_dispatch_ms": 0}


def test_holdout_kpis_and_the_true_uplift(app, client):
    accounts = book(accounts=240, seed=21)
    done = decide_and_report(client, accounts, seed=8)
    r = client.get("/v1/kpis/holdout?flow=renewal", headers=auth("k-read"))
    assert r.status_code == 200, r.get_json()
    report = r.get_json()
    held = [d for d in done if d["decision"]["policy"]["arm"] == "holdout"]
    assert report["accounts"] == {"treated": len(done) - len(held), "holdout": len(held)}
    assert all(d["decision"]["offers"] == [] for d in held)
    # the true uplift of the policy on these accounts: what its actions bring over doing nothing
    truth = float(np.mean([expected_revenue(d["account"], d["action"]) - expected_revenue(d["account"], NONE)
                           for d in done]))
    kpi = report["kpis"]["net_revenue_per_account"]
    assert kpi["ci95"][0] <= truth <= kpi["ci95"][1], (kpi, truth)
    assert kpi["ci95"][0] < kpi["uplift"] < kpi["ci95"][1]
    rate = report["kpis"]["renewal_rate"]
    assert 0 <= rate["holdout"] <= 1 and rate["ci95"][0] <= rate["uplift"] <= rate["ci95"][1]
    assert report["kpis"]["discount_given_per_account"]["holdout"] == 0.0

    out = io.StringIO()
    assert cmd_holdout(Namespace(flow="renewal", since=None, json=True), out=out,
                       factory=app.extensions["postsale"].factory) == 0
    assert json.loads(out.getvalue())["kpis"] == report["kpis"]

    metrics = client.get("/metrics").get_data(as_text=True)
    line = next(x for x in metrics.splitlines()
                if x.startswith('postsale_kpi_holdout_uplift{') and 'kpi="net_revenue_per_account"' in x
                and 'bound="value"' in x)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(kpi["uplift"], rel=1e-6)
