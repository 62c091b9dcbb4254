"""The closed loop on the simulator: a period on book A decided through the API with a holdout
and exploration, outcomes posted through /v1/outcomes, `postsale models train-response
--from-outcomes`, then a period on book B (another seed of the same customer's population)
decided with the learned models and with the cold-start prior, each scored on the simulator's
expected values as a share of the oracle's uplift. Both books are the simulator's shifted
population (shift 1: a customer whose accounts are not the prior's synthetic book).

The holdout's interval from period 1 must contain the true uplift. The learned models must
reach a higher share of the oracle than the prior; while they do not, the test says so as an
expected failure with both figures (docs/decisioning.md, "Learning from your own outcomes")."""
from __future__ import annotations

import io
import json
import os
import shutil
from argparse import Namespace

import numpy as np
import pytest

from cli.models import cmd_train_response
from simulator.actions import NONE
from simulator.book import book
from simulator.oracle import oracle_actions
from simulator.policies import Shipped
from simulator.run import actions_of, score
from tests.api.conftest import auth
from tests.learning.outcomes_loop import decide_and_report, expected_revenue, follow_newest_models

SHIFT = 1
SIZES = {"sqlite": (900, 500), "postgresql": (400, 300)}  # accounts in period 1 and period 2
CAPACITY_SHARE = 0.05


@pytest.fixture()
def settings_overrides():
    return {"holdout_share": 0.08, "explore_share": 0.3, "experiment_salt": "loop", "inline_dispatch_ms": 0}


class _Recorded(Shipped):
    """The product in process, noting which renewal response model made each decision."""

    def __init__(self, environ, capacity):
        super().__init__(environ, capacity)
        self.refs: set = set()

    def decision(self, facts: dict) -> dict:
        body = super().decision(facts)
        self.refs.add(body["models"]["renewal_response"])
        return body


def period_two(rules, models, accounts) -> tuple[float, set]:
    """(share of the oracle's uplift, the renewal models that decided) of the product deciding
    `accounts` with the flow in `rules` and the models in `models`, no holdout, no exploration."""
    capacity = int(CAPACITY_SHARE * len(accounts))
    env = {**os.environ, "POSTSALE_RULES": str(rules), "POSTSALE_MODELS_DIR": str(models),
           "POSTSALE_HOLDOUT_SHARE": "0", "POSTSALE_EXPLORE_SHARE": "0"}
    policy = _Recorded(env, capacity)
    try:
        actions, _ = actions_of(policy, accounts)
    finally:
        policy.close()
    none = score("none", accounts, [NONE] * len(accounts), capacity).net
    best = score("oracle", accounts, oracle_actions(accounts, capacity), capacity).net
    return (score("product", accounts, actions, capacity).net - none) / (best - none), policy.refs


def test_learned_models_against_the_cold_start_prior(app, client, db_url, root, tmp_path, monkeypatch):
    n1, n2 = SIZES["sqlite" if db_url.startswith("sqlite") else "postgresql"]
    done = decide_and_report(client, book(accounts=n1, seed=51, shift=SHIFT), seed=5)

    report = client.get("/v1/kpis/holdout?flow=renewal", headers=auth("k-read")).get_json()
    truth = float(np.mean([expected_revenue(d["account"], d["action"]) - expected_revenue(d["account"], NONE)
                           for d in done]))
    kpi = report["kpis"]["net_revenue_per_account"]
    assert report["accounts"]["holdout"] >= 0.04 * n1
    assert kpi["ci95"][0] <= truth <= kpi["ci95"][1], (kpi, truth)

    rt = app.extensions["postsale"]
    rules = tmp_path / "rules-following"
    shutil.copytree(rt.settings.rules_dir, rules)
    follow_newest_models(rules)
    learned = tmp_path / "learned"
    shutil.copytree(root / "models", learned)  # the served folder: the prior, where the new versions go
    monkeypatch.setenv("POSTSALE_RULES", str(rules))
    monkeypatch.setenv("POSTSALE_MODELS_DIR", str(root / "models"))
    out = io.StringIO()
    args = Namespace(data=None, from_outcomes=True, since=None, version=None, out=str(learned / "response"),
                     rules=None, flow="renewal", prior=None, effects=False, c=None, weighted=False, json=True)
    assert cmd_train_response(args, out=out, factory=rt.factory) == 0
    trained = json.loads(out.getvalue())
    assert trained["counts"]["by_arm"]["holdout"] == report["accounts"]["holdout"]

    accounts = book(accounts=n2, seed=52, shift=SHIFT)
    prior, prior_refs = period_two(rules, root / "models", accounts)
    ours, our_refs = period_two(rules, learned, accounts)
    assert prior_refs == {"renewal-response@1.0.0"} and our_refs == {"renewal-response@1.1.0"}
    figures = {"period_1": n1, "period_2": n2, "holdout_uplift": kpi, "true_uplift": round(truth, 2),
               "prior_share": round(prior, 4), "learned_share": round(ours, 4),
               "models": [{k: m.get(k) for k in ("ref", "rows", "skipped")} for m in trained["models"]]}
    print(json.dumps(figures))
    if ours <= prior:
        pytest.xfail(f"the learned models reach {ours:.1%} of the oracle's uplift, the prior {prior:.1%}")
