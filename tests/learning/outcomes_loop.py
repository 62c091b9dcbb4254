"""Shared by the learning tests: decide a simulated book through the API and post what the
simulator's hidden truth says happened through /v1/outcomes, as a customer's CRM would."""
from __future__ import annotations

import random

from simulator.actions import from_decision
from simulator.truth import expected, sample
from tests.api.conftest import auth


def follow_newest_models(rules_dir) -> None:
    """Make the renewal flow in `rules_dir` name its response models without a version, so it
    serves the newest in the models folder (the shipped flow pins its prior)."""
    flow = rules_dir / "renewal" / "flow.yaml"
    flow.write_text(flow.read_text().replace("-response@1.0.0", "-response"))


def expected_revenue(acct, action) -> float:
    """The expected first-year revenue an action brings (what the outcomes report): the renewal
    at its price and the upsell's value."""
    e = expected(acct, action)
    discount = action.renewal.discount if action.renewal else 0.0
    return e.p_renew * acct.facts["account"]["arr"] * (1 - discount / 100.0) + e.p_upsell * e.upsell_value


def decide_and_report(client, accounts, seed: int, skip_every: int = 0) -> list[dict]:
    """One decision per account, then its outcome (renewed with the price paid, or churned;
    expanded with the upsell's value when accepted). Every `skip_every`-th decision gets no
    outcome (not known yet). Returns what was done per account."""
    rng = random.Random(seed)
    done = []
    for i, acct in enumerate(accounts):
        r = client.post("/v1/decisions", json={"facts": acct.facts}, headers=auth())
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        action = from_decision(body, acct.facts)
        done.append({"account": acct, "decision": body, "action": action})
        if skip_every and i % skip_every == skip_every - 1:
            continue
        happened = sample(acct, action, rng)
        arr = acct.facts["account"]["arr"]
        items = []
        if happened["renewed"]:
            discount = action.renewal.discount if action.renewal else 0.0
            items.append({"id": f"o-{body['id']}-r", "decision_id": body["id"], "type": "renewed",
                          "amount": round(arr * (1 - discount / 100.0), 2)})
        else:
            items.append({"id": f"o-{body['id']}-c", "decision_id": body["id"], "type": "churned"})
        if happened["upsell_accepted"]:
            items.append({"id": f"o-{body['id']}-u", "decision_id": body["id"], "type": "expanded",
                          "amount": round(expected(acct, action).upsell_value, 2)})
        posted = client.post("/v1/outcomes", json={"outcomes": items}, headers=auth())
        assert posted.status_code == 201, posted.get_json()
    return done
